#include "spec/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace dflash::spec {

int32_t argmax(const float* logits, int64_t n) {
  int64_t best = 0;
  float bv = logits[0];
  for (int64_t i = 1; i < n; ++i)
    if (logits[i] > bv) {  // strict: first index wins ties, like torch.argmax
      bv = logits[i];
      best = i;
    }
  return static_cast<int32_t>(best);
}

Sampler::Sampler(SamplingParams params, int64_t n_vocab)
    : params_(params), n_vocab_(n_vocab), rng_(params.seed) {}

double Sampler::uniform() {
  // 53 random bits → [0, 1)
  return static_cast<double>(rng_() >> 11) * (1.0 / 9007199254740992.0);
}

void Sampler::distribution(const float* logits, Distribution* out) const {
  out->ids.clear();
  out->probs.clear();
  out->dense.assign(static_cast<size_t>(n_vocab_), 0.0f);
  if (params_.greedy()) {
    int32_t a = argmax(logits, n_vocab_);
    out->ids.push_back(a);
    out->probs.push_back(1.0f);
    out->dense[static_cast<size_t>(a)] = 1.0f;
    return;
  }
  const float inv_t = 1.0f / params_.temperature;
  auto& c = scratch_;
  c.resize(static_cast<size_t>(n_vocab_));
  for (int64_t i = 0; i < n_vocab_; ++i) c[static_cast<size_t>(i)] = {logits[i] * inv_t, int32_t(i)};
  // Descending by score, ties by lower id, so results do not depend on sort stability.
  auto cmp = [](const std::pair<float, int32_t>& a, const std::pair<float, int32_t>& b) {
    return a.first > b.first || (a.first == b.first && a.second < b.second);
  };
  size_t k = c.size();
  if (params_.top_k > 0 && static_cast<size_t>(params_.top_k) < k) {
    k = static_cast<size_t>(params_.top_k);
    std::partial_sort(c.begin(), c.begin() + static_cast<std::ptrdiff_t>(k), c.end(), cmp);
  } else {
    std::sort(c.begin(), c.end(), cmp);
  }
  // softmax over the kept candidates
  const float mx = c[0].first;
  double sum = 0.0;
  std::vector<double>& p = probs_scratch_;
  p.resize(k);
  for (size_t i = 0; i < k; ++i) {
    p[i] = std::exp(static_cast<double>(c[i].first - mx));
    sum += p[i];
  }
  for (size_t i = 0; i < k; ++i) p[i] /= sum;
  size_t keep = k;
  if (params_.top_p < 1.0f) {
    // Keep a token while the mass before it is < top_p (the first token is always kept).
    double cum = 0.0;
    keep = 0;
    while (keep < k && cum < params_.top_p) cum += p[keep++];
  }
  if (params_.min_p > 0.0f) {
    const double floor = params_.min_p * p[0];
    size_t n = 1;
    while (n < keep && p[n] >= floor) ++n;
    keep = n;
  }
  double kept = 0.0;
  for (size_t i = 0; i < keep; ++i) kept += p[i];
  for (size_t i = 0; i < keep; ++i) {
    const float pi = static_cast<float>(p[i] / kept);
    out->ids.push_back(c[i].second);
    out->probs.push_back(pi);
    out->dense[static_cast<size_t>(c[i].second)] = pi;
  }
}

int32_t Sampler::sample(const Distribution& d) {
  double u = uniform();
  double cum = 0.0;
  for (size_t i = 0; i < d.ids.size(); ++i) {
    cum += d.probs[i];
    if (u < cum) return d.ids[i];
  }
  return d.ids.back();  // rounding: u beyond the accumulated mass
}

int32_t Sampler::sample_logits(const float* logits) {
  if (params_.greedy()) return argmax(logits, n_vocab_);
  distribution(logits, &tmp_);
  return sample(tmp_);
}

int32_t Sampler::sample_residual(const Distribution& p, const Distribution& q) {
  double total = 0.0;
  for (size_t i = 0; i < p.ids.size(); ++i)
    total += std::max(0.0f, p.probs[i] - q.prob(p.ids[i]));
  if (!(total > 0.0)) return sample(p);
  double u = uniform() * total;
  double cum = 0.0;
  int32_t last = p.ids.front();
  for (size_t i = 0; i < p.ids.size(); ++i) {
    const double r = std::max(0.0f, p.probs[i] - q.prob(p.ids[i]));
    if (r <= 0.0) continue;
    last = p.ids[i];
    cum += r;
    if (u < cum) return p.ids[i];
  }
  return last;
}

}  // namespace dflash::spec
