#include "util/progress.h"

#include <unistd.h>

#include <algorithm>

#include "util/status.h"

namespace dflash::util {

Progress::Progress(std::string label, uint64_t total, std::string unit, FILE* out,
                   double interval_s)
    : label_(std::move(label)),
      unit_(std::move(unit)),
      total_(total),
      out_(out),
      tty_(isatty(fileno(out)) != 0),
      interval_s_(interval_s) {}

Progress::~Progress() {
  if (!finished_) finish();
}

void Progress::update(uint64_t done, const std::string& detail) {
  done_ = std::min(done, total_ ? total_ : done);
  double t = timer_.seconds();
  double min_gap = tty_ ? 0.1 : interval_s_;
  if (t - last_draw_s_ < min_gap) return;
  last_draw_s_ = t;
  draw(false, detail);
}

void Progress::finish(const std::string& detail) {
  if (finished_) return;
  finished_ = true;
  if (total_) done_ = total_;
  draw(true, detail);
}

void Progress::cancel() {
  if (finished_) return;
  finished_ = true;
  if (tty_ && last_draw_s_ >= 0) {  // something was drawn
    std::fputc('\n', out_);
    std::fflush(out_);
  }
}

void Progress::draw(bool final_line, const std::string& detail) {
  double t = timer_.seconds();
  double frac = total_ ? double(done_) / double(total_) : 0.0;
  double rate = t > 0 ? double(done_ - std::min(start_, done_)) / t : 0.0;
  std::string rate_s = unit_ == "B" ? human_bytes(rate) + "/s" : strfmt("%.1f %s/s", rate, unit_.c_str());
  std::string eta = (!final_line && rate > 0 && total_)
                        ? strfmt(" eta %.0fs", double(total_ - done_) / rate)
                        : strfmt(" %.1fs", t);
  if (tty_) {
    const int width = 30;
    int filled = static_cast<int>(frac * width);
    std::string bar(filled, '#');
    bar.resize(width, '.');
    std::fprintf(out_, "\r\033[K%s [%s] %5.1f%% %s%s %s", label_.c_str(), bar.c_str(), frac * 100,
                 rate_s.c_str(), eta.c_str(), detail.c_str());
    if (final_line) std::fputc('\n', out_);
  } else {
    std::fprintf(out_, "%s: %llu/%llu (%.1f%%) %s%s %s\n", label_.c_str(),
                 (unsigned long long)done_, (unsigned long long)total_, frac * 100, rate_s.c_str(),
                 eta.c_str(), detail.c_str());
  }
  std::fflush(out_);
}

std::string human_bytes(double b) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (b >= 1024 && u < 4) {
    b /= 1024;
    ++u;
  }
  return u == 0 ? strfmt("%.0f %s", b, units[u]) : strfmt("%.2f %s", b, units[u]);
}

}  // namespace dflash::util
