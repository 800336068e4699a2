#include "util/profile.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>

#include "util/timer.h"

namespace dflash::util::profile {

namespace {
struct Acc {
  int64_t calls = 0;
  int64_t ns = 0;
};
struct Registry {
  std::mutex mu;
  std::map<std::string, std::map<int64_t, Acc>, std::less<>> acc;  // label → tokens → totals
};
Registry& registry() {
  static Registry r;
  return r;
}
bool env_enabled() {
  const char* e = std::getenv("DFLASH_PROFILE");
  return e && *e && std::string_view(e) != "0";
}
}  // namespace

namespace detail {
std::atomic<bool> g_enabled{env_enabled()};
}  // namespace detail

namespace {
thread_local int64_t t_tokens = 0;           // the innermost Envelope's token count on this thread
thread_local std::string_view t_prefix;      // and its label prefix ("draft/")

void record(std::string_view prefix, std::string_view label, int64_t tokens, int64_t ns) {
  thread_local std::string key;
  key.assign(prefix);
  key.append(label);
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  auto it = r.acc.find(key);
  if (it == r.acc.end()) it = r.acc.emplace(key, std::map<int64_t, Acc>{}).first;
  Acc& a = it->second[tokens];
  a.calls++;
  a.ns += ns;
}
}  // namespace

void Scope::begin(std::string_view label, int64_t tokens) {
  prefix_ = t_prefix;
  label_ = label;
  tokens_ = tokens >= 0 ? tokens : t_tokens;
  start_ = now_ns();
}

void Scope::end() {
  record(prefix_, label_, tokens_, now_ns() - start_);
  start_ = -1;
}

void Envelope::enter(int64_t tokens, std::string_view prefix) {
  active_ = true;
  saved_tokens_ = t_tokens;
  saved_prefix_ = t_prefix;
  if (tokens >= 0) t_tokens = tokens;
  if (!prefix.empty()) t_prefix = prefix;
}

void Envelope::leave() {
  t_tokens = saved_tokens_;
  t_prefix = saved_prefix_;
}

void set_enabled(bool on) { detail::g_enabled.store(on, std::memory_order_relaxed); }

void reset() {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  r.acc.clear();
}

std::vector<Entry> entries() {
  Registry& r = registry();
  std::vector<Entry> out;
  {
    std::lock_guard<std::mutex> lock(r.mu);
    for (const auto& [label, by_tokens] : r.acc)
      for (const auto& [tokens, a] : by_tokens) out.push_back({label, tokens, a.calls, a.ns});
  }
  std::stable_sort(out.begin(), out.end(), [](const Entry& a, const Entry& b) { return a.ns > b.ns; });
  return out;
}

namespace {
bool is_envelope(const Entry& e) { return e.label.find('[') != std::string::npos; }
}  // namespace

std::string report() {
  std::vector<Entry> es = entries();
  if (es.empty()) return {};
  std::map<int64_t, std::vector<const Entry*>> groups;
  for (const Entry& e : es) groups[e.tokens].push_back(&e);
  std::string out;
  char line[256];
  for (const auto& [tokens, rows] : groups) {
    int64_t sum = 0;
    for (const Entry* e : rows)
      if (!is_envelope(*e)) sum += e->ns;
    std::snprintf(line, sizeof line, "profile: calls with %lld token%s: %.3f ms in the ops\n", (long long)tokens,
                  tokens == 1 ? "" : "s", sum * 1e-6);
    out += line;
    std::snprintf(line, sizeof line, "  %-34s %9s %11s %11s %7s\n", "op", "calls", "total ms", "us/call", "share");
    out += line;
    for (const Entry* e : rows) {
      std::snprintf(line, sizeof line, "  %-34s %9lld %11.3f %11.2f %6.1f%%\n", e->label.c_str(), (long long)e->calls,
                    e->ns * 1e-6, e->calls ? e->ns * 1e-3 / static_cast<double>(e->calls) : 0.0,
                    sum && !is_envelope(*e) ? 100.0 * static_cast<double>(e->ns) / static_cast<double>(sum) : 0.0);
      out += line;
    }
  }
  return out;
}

}  // namespace dflash::util::profile
