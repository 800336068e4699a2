// Token sampling and the speculative acceptance rule.
//
// Lossless speculative sampling (Leviathan et al. / Chen et al.): with p the target's sampling
// distribution and q the distribution the draft token d was drawn from, accept d with probability
// min(1, p(d)/q(d)); at the first rejection draw from normalise(max(p − q, 0)); if all drafts pass,
// draw a bonus token from the target's next distribution. Every committed token is then distributed
// exactly as p given the committed prefix. DFlash drafts all positions of a block in parallel, so q
// at position i does not depend on the drafted tokens before i; q is still a proper distribution
// fixed given the accepted prefix, which is all the proof needs.
#pragma once

#include <cstdint>
#include <random>
#include <span>
#include <vector>

namespace dflash::spec {

struct SamplingParams {
  float temperature = 0.0f;  // 0 → greedy (argmax, first index on ties)
  int top_k = 0;             // 0 → off
  float top_p = 1.0f;        // 1 → off
  float min_p = 0.0f;        // 0 → off
  uint64_t seed = 0;
  bool greedy() const { return temperature <= 0.0f; }
};

// A sampling distribution over the vocabulary, sparse after filtering: ids with probability > 0.
struct Distribution {
  std::vector<int32_t> ids;
  std::vector<float> probs;  // same length, sums to 1
  std::vector<float> dense;  // n_vocab entries (0 outside ids), for O(1) lookups
  // dense may be left empty for a few-entry distribution (a one-hot lookup draft): then ids are searched.
  float prob(int32_t id) const {
    if (!dense.empty()) return dense[static_cast<size_t>(id)];
    for (size_t i = 0; i < ids.size(); ++i)
      if (ids[i] == id) return probs[i];
    return 0.0f;
  }
};

int32_t argmax(const float* logits, int64_t n);

class Sampler {
 public:
  Sampler(SamplingParams params, int64_t n_vocab);
  const SamplingParams& params() const { return params_; }

  // Applies temperature, top-k, top-p and min-p to a logits row, in that order (the order of
  // transformers' logits warpers), and normalises.
  void distribution(const float* logits, Distribution* out) const;
  int32_t sample(const Distribution& d);
  // argmax when greedy, else a draw from distribution(logits).
  int32_t sample_logits(const float* logits);
  double uniform();  // [0, 1)

  // Samples from normalise(max(p − q, 0)); falls back to p if the residual is empty.
  int32_t sample_residual(const Distribution& p, const Distribution& q);

 private:
  SamplingParams params_;
  int64_t n_vocab_;
  std::mt19937_64 rng_;
  mutable std::vector<std::pair<float, int32_t>> scratch_;
  mutable std::vector<double> probs_scratch_;
  Distribution tmp_;
};

// Result of checking one drafted block against the target.
struct Acceptance {
  int n_accepted = 0;   // drafted tokens accepted (0 .. n_draft)
  int32_t next = -1;    // the target's token after them (correction or bonus)
};

// Greedy rule: accept while draft[i] == argmax(target row i); next = argmax(target row n_accepted).
// target_rows(i) must be the target logits after [last, draft[0..i-1]].
template <typename RowFn>
Acceptance accept_greedy(std::span<const int32_t> draft, RowFn target_rows, int64_t n_vocab) {
  Acceptance a;
  for (size_t i = 0; i < draft.size(); ++i) {
    int32_t t = argmax(target_rows(static_cast<int64_t>(i)), n_vocab);
    if (t != draft[i]) {
      a.next = t;
      return a;
    }
    ++a.n_accepted;
  }
  a.next = argmax(target_rows(static_cast<int64_t>(draft.size())), n_vocab);
  return a;
}

// Which rule to use when sampling. kResidual is the lossless one; kResampleTarget (on rejection,
// draw from p instead of the residual) is biased and exists so tests can show they detect it.
enum class AcceptRule { kResidual, kResampleTarget };

// Stochastic rule. p_rows(i): target distribution after [last, draft[0..i-1]], for i ≤ n_draft;
// q[i]: distribution draft[i] was drawn from.
template <typename PRowFn>
Acceptance accept_sampled(std::span<const int32_t> draft, PRowFn p_rows,
                          std::span<const Distribution> q, Sampler& sampler,
                          AcceptRule rule = AcceptRule::kResidual) {
  Acceptance a;
  for (size_t i = 0; i < draft.size(); ++i) {
    const Distribution& p = p_rows(static_cast<int64_t>(i));
    const float pd = p.prob(draft[i]);
    const float qd = q[i].prob(draft[i]);
    // qd > 0 always holds for a token drawn from q; guard anyway.
    if (qd > 0.0f && sampler.uniform() * qd < pd) {
      ++a.n_accepted;
      continue;
    }
    a.next = rule == AcceptRule::kResidual ? sampler.sample_residual(p, q[i]) : sampler.sample(p);
    return a;
  }
  a.next = sampler.sample(p_rows(static_cast<int64_t>(draft.size())));
  return a;
}

}  // namespace dflash::spec
