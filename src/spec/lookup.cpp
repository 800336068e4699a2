#include "spec/lookup.h"

#include <algorithm>

namespace dflash::spec {

std::vector<int32_t> lookup_draft(std::span<const int32_t> history, int max_ngram, int n, int* matched) {
  const int64_t len = static_cast<int64_t>(history.size());
  if (matched) *matched = 0;
  if (n <= 0 || len < 2) return {};
  for (int64_t g = std::min<int64_t>(max_ngram, len - 1); g >= 1; --g) {
    const int32_t* key = history.data() + len - g;
    // Matches ending at u (history[u-g .. u) == key) with u < len, latest first.
    for (int64_t u = len - 1; u >= g; --u) {
      if (history[static_cast<size_t>(u - 1)] != key[g - 1]) continue;
      if (!std::equal(key, key + g, history.data() + u - g)) continue;
      const int64_t end = std::min<int64_t>(len, u + n);
      if (matched) *matched = static_cast<int>(g);
      return std::vector<int32_t>(history.begin() + u, history.begin() + end);
    }
  }
  return {};
}

}  // namespace dflash::spec
