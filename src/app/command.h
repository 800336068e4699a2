// Git-style subcommands. Each src/app/cmd_*.cpp registers itself with DFLASH_COMMAND, so adding a
// subcommand never touches main.cpp.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <string>
#include <vector>

namespace dflash::app {

struct Command {
  std::string name;
  std::string description;
  // Declares the subcommand's options on `sub` and returns the function that runs it once the
  // command line is parsed (its return value is the process exit code).
  std::function<std::function<int()>(CLI::App* sub)> setup;
};

int register_command(Command c);
const std::vector<Command>& commands();

}  // namespace dflash::app

#define DFLASH_CMD_CONCAT_INNER(a, b) a##b
#define DFLASH_CMD_CONCAT(a, b) DFLASH_CMD_CONCAT_INNER(a, b)
#define DFLASH_COMMAND(...)                                                                  \
  [[maybe_unused]] static const int DFLASH_CMD_CONCAT(dflash_command_registered_, __LINE__) = \
      ::dflash::app::register_command(__VA_ARGS__)
