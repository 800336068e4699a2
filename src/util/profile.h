// Per-operation wall-clock accounting for finding where a forward's time goes (`--profile` on
// run / bench, or DFLASH_PROFILE=1). Off by default: a disabled Scope costs one relaxed load.
// Entries are keyed by (label, tokens in the call), so a bench run separates decode (1 token),
// verify (B tokens) and prefill without extra bookkeeping. Leaf ops must not nest; a label in
// brackets ("[forward]") is an envelope around leaves: reported, but not summed with them, so
// envelope minus its leaves is the untimed glue. Scopes may be opened from any thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace dflash::util::profile {

namespace detail {
extern std::atomic<bool> g_enabled;
}  // namespace detail

inline bool enabled() { return detail::g_enabled.load(std::memory_order_relaxed); }
void set_enabled(bool on);
// Drops everything recorded so far (e.g. after a warm-up).
void reset();

struct Entry {
  std::string label;
  int64_t tokens = 0;
  int64_t calls = 0;
  int64_t ns = 0;
};
// Recorded entries, largest total time first.
std::vector<Entry> entries();
// A table of entries() grouped by token count: per group the calls, total and per-call time of
// each label and its share of the group's summed leaf time. Empty when nothing was recorded.
std::string report();

// Times one op. label must outlive the scope (string literals, tensor names). Without a token
// count it is grouped under the enclosing Envelope's. The thread-local bookkeeping lives in
// profile.cpp (extern thread_locals in inline code upset UBSan), so only an enabled scope calls out.
class Scope {
 public:
  explicit Scope(std::string_view label, int64_t tokens = -1) {
    if (enabled()) begin(label, tokens);
  }
  ~Scope() { stop(); }
  // Ends the scope early (once).
  void stop() {
    if (start_ >= 0) end();
  }
  Scope(const Scope&) = delete;
  Scope& operator=(const Scope&) = delete;

 private:
  void begin(std::string_view label, int64_t tokens);
  void end();
  std::string_view prefix_, label_;
  int64_t tokens_ = 0;
  int64_t start_ = -1;
};

// A bracketed scope ("[forward]") that also sets the token count of the Scopes inside it and,
// if given, a prefix for their labels; tokens < 0 keeps the enclosing count.
class Envelope {
 public:
  Envelope(std::string_view label, int64_t tokens, std::string_view prefix = {}) : scope_(label, tokens) {
    if (enabled()) enter(tokens, prefix);
  }
  ~Envelope() {
    if (active_) leave();
  }
  Envelope(const Envelope&) = delete;
  Envelope& operator=(const Envelope&) = delete;

 private:
  void enter(int64_t tokens, std::string_view prefix);
  void leave();
  bool active_ = false;
  int64_t saved_tokens_ = 0;
  std::string_view saved_prefix_;
  Scope scope_;
};

}  // namespace dflash::util::profile
