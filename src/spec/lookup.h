// N-gram lookup drafting ("prompt lookup decoding"): the draft is what followed the most recent
// earlier occurrence of the last few tokens in the prompt and output so far. It needs no model, costs
// microseconds, and on repetitive text (code being edited, a target that loops) proposes long
// correct runs; the verify keeps it lossless like any draft. The proposal is deterministic, so for
// sampling it is a one-hot draft distribution (see Decoder).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace dflash::spec {

// Up to n tokens following the latest earlier match of the last g tokens of `history`, trying
// g = max_ngram, ..., 1 (the first g with a match wins). Empty when nothing matches. *matched (if
// given) receives the g that matched (0: none): a longer match is a stronger prediction.
std::vector<int32_t> lookup_draft(std::span<const int32_t> history, int max_ngram, int n, int* matched = nullptr);

}  // namespace dflash::spec
