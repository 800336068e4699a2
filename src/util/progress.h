// Progress display for long work (convert, quantize, training data generation, load).
// On a terminal: one redrawn line with a bar, rate and ETA. Otherwise: a plain line every
// `interval` seconds, so logs of CI or `nohup` runs stay readable.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>

#include "util/timer.h"

namespace dflash::util {

class Progress {
 public:
  Progress(std::string label, uint64_t total, std::string unit = "", FILE* out = stderr,
           double interval_s = 5.0);
  ~Progress();  // finish() if not done
  void update(uint64_t done, const std::string& detail = "");
  void add(uint64_t n, const std::string& detail = "") { update(done_ + n, detail); }
  // A resumed job: `done` units were finished by an earlier run. Shown as progress, but the rate
  // and ETA count only what this run does.
  void resume_at(uint64_t done) { done_ = start_ = done; }
  void finish(const std::string& detail = "");
  // Ends the display without claiming completion (the work failed); a TTY line is terminated.
  void cancel();
  // Override TTY detection (tests).
  void set_tty(bool tty) { tty_ = tty; }

 private:
  void draw(bool final_line, const std::string& detail);
  std::string label_, unit_;
  uint64_t total_, done_ = 0, start_ = 0;
  FILE* out_;
  bool tty_;
  bool finished_ = false;
  double interval_s_;
  double last_draw_s_ = -1e9;
  Timer timer_;
};

// "1.5 GiB", "312 MiB"
std::string human_bytes(double bytes);

}  // namespace dflash::util
