// Runs the real dflash executable of this build and captures its output and exit code.
#pragma once

#include <sys/wait.h>

#include <cstdio>
#include <string>

namespace dflash::app::testing {

struct CmdResult {
  int code;
  std::string out;
};

// `args` is appended to the binary's path and run by the shell (so redirections like 2>&1 work).
inline CmdResult run_dflash(const std::string& args, const std::string& env = "") {
  std::string cmd = env + (env.empty() ? "" : " ") + std::string(DFLASH_BIN_DIR) + "/dflash " + args;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return {-1, ""};
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  int st = pclose(p);
  return {WIFEXITED(st) ? WEXITSTATUS(st) : -1, out};
}

}  // namespace dflash::app::testing
