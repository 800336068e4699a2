// The dflash executable: one binary, git-style subcommands (dflash --help lists them).
#include <cstdio>
#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include "app/command.h"
#include "util/log.h"

namespace dflash::app {

namespace {
std::vector<Command>& registry() {
  static std::vector<Command> r;
  return r;
}
}  // namespace

int register_command(Command c) {
  registry().push_back(std::move(c));
  return static_cast<int>(registry().size());
}
const std::vector<Command>& commands() { return registry(); }

}  // namespace dflash::app

int main(int argc, char** argv) {
  using namespace dflash::app;
  CLI::App app{"dflash: fast LLM decoding with DFlash speculative decoding (CPU-first)"};
  app.set_version_flag("--version", "dflash 0.1.0");
  app.require_subcommand(1);
  bool verbose = false;
  app.add_flag("-v,--verbose", verbose, "Verbose logging (same as DFLASH_LOG=debug)");

  std::map<std::string, std::function<int()>> runners;
  for (const Command& c : commands()) {
    CLI::App* sub = app.add_subcommand(c.name, c.description);
    runners[c.name] = c.setup(sub);
  }
  // llama.cpp spellings with a multi-letter single dash, which CLI11 does not allow as short names.
  std::vector<std::string> args(argv + 1, argv + argc);
  for (auto& arg : args)
    if (arg == "-md") arg = "--model-draft";
  std::reverse(args.begin(), args.end());  // CLI11 takes the arguments in reverse order
  try {
    app.parse(args);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  if (verbose) dflash::util::set_log_level(dflash::util::LogLevel::kDebug);
  for (CLI::App* sub : app.get_subcommands()) {
    auto it = runners.find(sub->get_name());
    if (it != runners.end()) return it->second();
  }
  return 1;
}
