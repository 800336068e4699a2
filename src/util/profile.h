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
extern thread_local int64_t t_tokens;            // the innermost Envelope's token count on this thread
extern thread_local std::string_view t_prefix;   // and its label prefix ("draft/")
void record(std::string_view prefix, std::string_view label, int64_t tokens, int64_t ns);
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
// count it is grouped under the enclosing Envelope's.
class Scope {
 public:
  explicit Scope(std::string_view label, int64_t tokens = -1) {
    if (enabled()) {
      prefix_ = detail::t_prefix;
      label_ = label;
      tokens_ = tokens >= 0 ? tokens : detail::t_tokens;
      start_ = now();
    }
  }
  ~Scope() { stop(); }
  // Ends the scope early (once).
  void stop() {
    if (start_ >= 0) detail::record(prefix_, label_, tokens_, now() - start_);
    start_ = -1;
  }
  Scope(const Scope&) = delete;
  Scope& operator=(const Scope&) = delete;

 private:
  static int64_t now();
  std::string_view prefix_, label_;
  int64_t tokens_ = 0;
  int64_t start_ = -1;
};

// A bracketed scope ("[forward]") that also sets the token count of the Scopes inside it and,
// if given, a prefix for their labels; tokens < 0 keeps the enclosing count (the drafter's ops apart from the target's of the same name).
class Envelope {
 public:
  Envelope(std::string_view label, int64_t tokens, std::string_view prefix = {})
      : saved_tokens_(detail::t_tokens), saved_prefix_(detail::t_prefix), scope_(label, tokens) {
    if (tokens >= 0) detail::t_tokens = tokens;
    if (!prefix.empty()) detail::t_prefix = prefix;
  }
  ~Envelope() {
    detail::t_tokens = saved_tokens_;
    detail::t_prefix = saved_prefix_;
  }
  Envelope(const Envelope&) = delete;
  Envelope& operator=(const Envelope&) = delete;

 private:
  int64_t saved_tokens_;
  std::string_view saved_prefix_;
  Scope scope_;
};

}  // namespace dflash::util::profile
