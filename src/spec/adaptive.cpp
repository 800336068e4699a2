#include "spec/adaptive.h"

#include <algorithm>
#include <array>
#include <cmath>

namespace dflash::spec {

namespace {
constexpr double kDecay = 0.98;       // per round: the profile half-life is ~35 rounds
constexpr double kPriorAccept = 0.5;  // before evidence, a coin flip per draft position
constexpr double kPriorWeight = 2.0;
constexpr double kTimeEma = 0.2;
constexpr int kProbes = 1;            // measurements wanted per probed block size
constexpr int kMinExploreGap = 32;    // rounds between neighbour probes, doubling while the choice holds
constexpr int kMaxExploreGap = 96;
constexpr double kStateDecay = 0.99;  // per round decided in that state: a state keeps its last ~100 visits
constexpr double kStateWeight = 30.0;  // evidence a state needs to outweigh the profile it borrows
constexpr int kSweeps = 8;            // value-iteration sweeps per round (warm-started)
constexpr int kPlainRefresh = 48;     // a drafting policy still runs a plain round this often

// Exponential moving average x over n observations so far; the first one is taken as it is.
void ema_add(double& x, int& n, double v) {
  x = n == 0 ? v : (1.0 - kTimeEma) * x + kTimeEma * v;
  ++n;
}
}  // namespace

AdaptiveBlockPolicy::AdaptiveBlockPolicy(int max_block)
    : max_block_(std::max(1, max_block)),
      tested_(static_cast<size_t>(max_block_) + 1, 0.0),
      accepted_(static_cast<size_t>(max_block_) + 1, 0.0),
      s_tested_(static_cast<size_t>(kStates) * (static_cast<size_t>(max_block_) + 1), 0.0),
      s_accepted_(s_tested_.size(), 0.0),
      h_(2 * kStates, 0.0),
      t_ema_(static_cast<size_t>(max_block_) + 1, 0.0),
      t_n_(static_cast<size_t>(max_block_) + 1, 0),
      c_ema_(static_cast<size_t>(max_block_) + 1, 0.0),
      c_n_(static_cast<size_t>(max_block_) + 1, 0),
      aft_ema_(static_cast<size_t>(max_block_) + 1, 0.0),
      aft_n_(static_cast<size_t>(max_block_) + 1, 0),
      c_round_(static_cast<size_t>(max_block_) + 1, 0) {}

int AdaptiveBlockPolicy::state_after(int b, int n) {
  if (b <= 1) return 0;
  // A block accepted whole shows a run of at least n: it counts as one more.
  const int run = n >= b - 1 ? n + 1 : n;
  return run == 0 ? 1 : run <= 3 ? 2 : run <= 7 ? 3 : 4;
}

void AdaptiveBlockPolicy::start_sequence() { state_ = 0; }

double AdaptiveBlockPolicy::acceptance(int k) const {
  // A position with little evidence borrows the estimate of the one before it: deep positions are
  // only observed when long blocks are used, and a flat prior there would talk the policy out of ever
  // trying them again.
  double prior = kPriorAccept;
  for (int j = 1; j <= k; ++j) {
    const size_t i = static_cast<size_t>(j);
    prior = (accepted_[i] + prior * kPriorWeight) / (tested_[i] + kPriorWeight);
  }
  return prior;
}

double AdaptiveBlockPolicy::expected_tokens(int b) const {
  double e = 1.0, run = 1.0;
  for (int k = 1; k < b; ++k) {
    run *= acceptance(k);
    e += run;
  }
  return e;
}

void AdaptiveBlockPolicy::state_profile(int state, int n, double* a) const {
  // Position 1 starts from the whole text's estimate; deeper positions from the state's own estimate
  // one position up (after a run of hits the deep drafts tend to hit as well).
  const size_t row = static_cast<size_t>(std::clamp(state, 0, kStates - 1)) * (static_cast<size_t>(max_block_) + 1);
  double prior = a[0] = acceptance(1);
  for (int j = 1; j <= n; ++j) {
    const size_t i = row + static_cast<size_t>(j);
    a[j] = prior = (s_accepted_[i] + prior * kStateWeight) / (s_tested_[i] + kStateWeight);
  }
}

double AdaptiveBlockPolicy::acceptance(int state, int k) const {
  std::vector<double> a(static_cast<size_t>(std::max(k, 0)) + 1, 0.0);
  state_profile(state, k, a.data());
  return a[static_cast<size_t>(std::max(k, 0))];
}

int AdaptiveBlockPolicy::plan(int cap) {
  // Costs in one-token rounds; blocks with no estimate yet are left out.
  constexpr int kMaxCap = 64;
  cap = std::min(cap, kMaxCap);
  const double t1 = round_seconds(1);
  std::array<double, kMaxCap + 1> tau{};
  double eta = 1e300;
  for (int b = 1; b <= cap; ++b) {
    const double t = round_seconds(b);
    if (t <= 0.0 || t1 <= 0.0) continue;
    tau[static_cast<size_t>(b)] = t / t1;
    eta = std::min(eta, t / t1);
  }
  if (eta > 1e299) return 1;
  // Per (state, block): the expected tokens of the round and where it leaves the context, computed once
  // per round so that each value-iteration sweep costs O(states² × blocks) instead of O(states × blocks²).
  std::array<double, kMaxCap + 1> a{};
  std::array<std::array<double, kMaxCap + 1>, kStates> reward{};               // E(s, b) / τ_b
  std::array<std::array<std::array<double, kStates>, kMaxCap + 1>, kStates> move{};  // (η/τ_b)·P(s' | s, b)
  for (int s = 0; s < kStates; ++s) {
    state_profile(s, cap - 1, a.data());
    for (int b = 2; b <= cap; ++b) {
      const double tb = tau[static_cast<size_t>(b)];
      if (tb <= 0.0) continue;
      double e = 0.0, run = 1.0;
      auto& m = move[static_cast<size_t>(s)][static_cast<size_t>(b)];
      for (int k = 0; k < b; ++k) {  // k drafts accepted, then the first rejection (or the end of the block)
        const double ak = k + 1 < b ? a[static_cast<size_t>(k + 1)] : 0.0;
        const double p = run * (1.0 - ak);
        e += p * (k + 1);
        m[static_cast<size_t>(state_after(b, k))] += p * eta / tb;
        run *= ak;
      }
      reward[static_cast<size_t>(s)][static_cast<size_t>(b)] = e / tb;
    }
  }
  // Schweitzer: a round of block B (reward E, duration τ_B, next state s') becomes a step with reward E/τ_B
  // that moves to s' with probability η/τ_B and stays put otherwise; the average reward per step of that
  // chain is the semi-Markov process's tokens per one-token round, with the same optimal policy. A plain
  // round (B = 1) leaves the context state as it was. Each context state comes in two modes, after a plain
  // round (index s) and after a drafting round (s + kStates): a plain round right after drafting also pays
  // the aftermath (the slow plain rounds that follow, charged to it as a longer round), so hopping between
  // drafting and plain decoding costs what it costs, while staying in either mode does not.
  const double aft = aftermath(last_drafted_ > 1 ? last_drafted_ : 2);
  auto q_value = [&](int s, int b) {
    const int cs = s % kStates;
    const bool drafting = s >= kStates;
    const size_t si = static_cast<size_t>(s), ci = static_cast<size_t>(cs), bi = static_cast<size_t>(b);
    const double tb = tau[bi];
    if (b == 1) {
      if (!drafting) return 1.0 / tb + h_[si];
      const double t = tb + aft, to_plain = eta / t;
      return 1.0 / t + to_plain * h_[ci] + (1.0 - to_plain) * h_[si];
    }
    const auto& m = move[ci][bi];
    double next = 0.0, stay = 1.0;
    for (int s2 = 0; s2 < kStates; ++s2) {
      next += m[static_cast<size_t>(s2)] * h_[static_cast<size_t>(kStates + s2)];
      stay -= m[static_cast<size_t>(s2)];
    }
    return reward[ci][bi] + next + stay * h_[si];
  };
  std::array<double, 2 * kStates> h_new{};
  for (int sweep = 0; sweep < kSweeps; ++sweep) {
    for (int s = 0; s < 2 * kStates; ++s) {
      double best = -1e300;
      for (int b = 1; b <= cap; ++b)
        if (tau[static_cast<size_t>(b)] > 0.0) best = std::max(best, q_value(s, b));
      h_new[static_cast<size_t>(s)] = best;
    }
    // Relative to state 0 after a plain round, so the values stay bounded.
    for (int s = 0; s < 2 * kStates; ++s) h_[static_cast<size_t>(s)] = h_new[static_cast<size_t>(s)] - h_new[0];
  }
  const bool after_plain = last_plain_round_ == rounds_;  // every plain round stamps it, no drafting round does
  const int now = state_ + (after_plain ? 0 : kStates);
  int best = 1;
  double best_q = -1e300;
  for (int b = 1; b <= cap; ++b) {
    if (tau[static_cast<size_t>(b)] <= 0.0) continue;
    const double q = q_value(now, b);
    if (q > best_q + 1e-12) {
      best_q = q;
      best = b;
    }
  }
  return best;
}

void AdaptiveBlockPolicy::add_plain_round(double seconds) {
  // The one-token round is every other block's yardstick, so one slow outlier (the first round after a
  // prefill, a descheduled thread) must not set it: the median of the last five.
  plain_recent_[static_cast<size_t>(t_n_[1] % kPlainWindow)] = seconds;
  ++t_n_[1];
  last_plain_round_ = rounds_;
  const int n = std::min(t_n_[1], kPlainWindow);
  std::array<double, kPlainWindow> v{};
  for (int i = 0; i < n; ++i) {  // insertion sort of at most five
    int j = i;
    for (; j > 0 && v[static_cast<size_t>(j - 1)] > plain_recent_[static_cast<size_t>(i)]; --j)
      v[static_cast<size_t>(j)] = v[static_cast<size_t>(j - 1)];
    v[static_cast<size_t>(j)] = plain_recent_[static_cast<size_t>(i)];
  }
  const size_t m = static_cast<size_t>(n / 2);
  plain_seconds_ = n % 2 ? v[m] : 0.5 * (v[m - 1] + v[m]);
}

double AdaptiveBlockPolicy::measured_seconds(int b) const {
  const size_t i = static_cast<size_t>(b);
  // Blocks above 1 are kept as a ratio to the one-token round measured around the same time, so a
  // shared machine slowing down or speeding up between observations moves every estimate alike
  // instead of making whichever size was measured last look cheap or dear.
  if (b == 1) return plain_seconds_;
  if (c_n_[i] > 0 && t_n_[1] > 0) return c_ema_[i] * plain_seconds_;
  return t_n_[i] > 0 ? t_ema_[i] : 0.0;
}

double AdaptiveBlockPolicy::round_seconds(int b) const {
  if (t_n_[static_cast<size_t>(b)] > 0) return measured_seconds(b);
  // Least-squares line through the measured sizes (weights: observation counts, capped).
  double sw = 0, sx = 0, sy = 0, sxx = 0, sxy = 0;
  int distinct = 0;
  for (int i = 1; i <= max_block_; ++i) {
    if (t_n_[static_cast<size_t>(i)] == 0) continue;
    const double w = std::min(t_n_[static_cast<size_t>(i)], 8), x = i - 1, y = measured_seconds(i);
    sw += w;
    sx += w * x;
    sy += w * y;
    sxx += w * x * x;
    sxy += w * x * y;
    ++distinct;
  }
  if (distinct == 0) return 0.0;
  if (distinct == 1) {
    // One size measured: assume a verify of B costs like 1 + (B−1)/4 decodes until told otherwise.
    for (int i = 1; i <= max_block_; ++i)
      if (t_n_[static_cast<size_t>(i)] > 0)
        return measured_seconds(i) * (1.0 + 0.25 * (b - 1)) / (1.0 + 0.25 * (i - 1));
  }
  const double den = sw * sxx - sx * sx;
  const double slope = den > 0 ? std::max(0.0, (sw * sxy - sx * sy) / den) : 0.0;
  const double t0 = (sy - slope * sx) / sw;
  return std::max(1e-9, t0 + slope * (b - 1));
}

int AdaptiveBlockPolicy::next_block_size(int max_block) {
  const int cap = std::clamp(max_block, 1, max_block_);
  decided_state_ = state_;
  if (contradicted_ > 0.0) return 1;  // re-measuring the yardstick
  // Probe schedule: doubling sizes up to the trained block, each once. Every run pays its probes and
  // a short one (64 tokens) cannot afford expensive ones that have no chance: a size whose predicted
  // rate (current acceptance profile, cost line through the sizes measured so far) is under half the
  // best measured rate is skipped — which also ends the doubling.
  if (rounds_ < 64) {
    double best_measured = 0.0;
    for (int b = 1; b <= cap; ++b)
      if (t_n_[static_cast<size_t>(b)] > 0)
        best_measured = std::max(best_measured, expected_tokens(b) / measured_seconds(b));
    for (int b = 1; b <= cap; b = b * 2 > cap && b < cap ? cap : b * 2) {
      if (t_n_[static_cast<size_t>(b)] >= kProbes) continue;
      const double t = round_seconds(b);
      if (best_measured > 0.0 && t > 0.0 && expected_tokens(b) / t < 0.5 * best_measured) break;
      return b;
    }
  }
  int best = plan(cap);
  // Keep the estimates of the neighbours fresh: now and then try one size next to the choice (the one
  // above when the choice is 1). While the choice stays the same the gap grows, 32 → 64 → 96 rounds: a
  // settled policy (typically B = 1 when drafting does not pay) then spends ~1 % of its rounds on a
  // neighbour whose round costs a cold draft and a flush of the deferred drafter context, and still
  // notices within ~100 rounds when the text becomes draftable (a 256-round cap took ~570).
  if (rounds_ >= next_explore_) {
    explore_gap_ = best == explored_best_ ? std::min(2 * explore_gap_, kMaxExploreGap) : kMinExploreGap;
    explored_best_ = best;
    next_explore_ = rounds_ + explore_gap_;
    explore_up_ = !explore_up_;
    best = std::clamp(best == 1 || explore_up_ ? best + 1 : best - 1, 1, cap);
  }
  // A policy that keeps drafting never measures plain rounds, yet they are what every other size is
  // measured against: one now and then keeps the yardstick current (a policy that started from a slow
  // plain round could otherwise stay on B = 2–4 where plain decoding is faster).
  if (best > 1 && t_n_[1] > 0 && rounds_ - last_plain_round_ >= kPlainRefresh) best = 1;
  return best;
}

void AdaptiveBlockPolicy::observe(int block, int n_accepted, double seconds) {
  block = std::clamp(block, 1, max_block_);
  ++rounds_;
  for (size_t k = 1; k < tested_.size(); ++k) {
    tested_[k] *= kDecay;
    accepted_[k] *= kDecay;
  }
  // Draft k was tested if the k−1 before it were accepted and the block had room for it.
  const size_t row = static_cast<size_t>(decided_state_) * (static_cast<size_t>(max_block_) + 1);
  if (block > 1)
    for (size_t k = 1; k <= static_cast<size_t>(max_block_); ++k) {
      s_tested_[row + k] *= kStateDecay;
      s_accepted_[row + k] *= kStateDecay;
    }
  for (int k = 1; k < block && k <= n_accepted + 1; ++k) {
    tested_[static_cast<size_t>(k)] += 1.0;
    s_tested_[row + static_cast<size_t>(k)] += 1.0;
    if (k <= n_accepted) {
      accepted_[static_cast<size_t>(k)] += 1.0;
      s_accepted_[row + static_cast<size_t>(k)] += 1.0;
    }
  }
  // A plain round shows nothing about the drafter: the state stays.
  if (block > 1) state_ = state_after(block, n_accepted);
  const size_t i = static_cast<size_t>(block);
  if (block == 1) {
    // A plain round in a drafting round's aftermath measures that aftermath, not the one-token round: it
    // joins the yardstick only while the yardstick has fewer than five rounds (a slow first round must
    // not set it) or has had no clean round for a long time (machine drift).
    // Otherwise a policy that drafts, refreshing the yardstick with single plain rounds that are all
    // slow, would see plain decoding as slower than it is and keep drafting where it does not pay.
    const bool aftermath_round = aft_block_ > 0 && aft_base_ > 0.0;
    bool joins = !aftermath_round || t_n_[1] < kPlainWindow || rounds_ - last_clean_plain_ >= kStaleYardstick;
    if (!joins && contradicts_yardstick(seconds)) {
      drop_yardstick();  // even a slow plain round came in under it (the aftermath is dropped with it)
      joins = true;
    } else if (aftermath_round) {
      aft_excess_ += seconds / aft_base_ - 1.0;
      if (++aft_rounds_ == kAftermathRounds) close_aftermath();
    }
    if (joins) {
      add_plain_round(seconds);
      if (!aftermath_round) last_clean_plain_ = rounds_;
      if (contradicted_ > 0.0 && t_n_[1] >= kResettle) rescale_against_new_yardstick();
    } else {
      last_plain_round_ = rounds_;  // the refresh was run; its time went to the aftermath
    }
  } else {
    close_aftermath();
    aft_block_ = block;
    last_drafted_ = block;
    aft_base_ = plain_seconds_;  // the yardstick before the slow rounds join its median
    ema_add(t_ema_[i], t_n_[i], seconds);
    if (plain_seconds_ > 0.0) ema_add(c_ema_[i], c_n_[i], seconds / plain_seconds_);
    c_round_[i] = rounds_;
    if (contradicts_yardstick(seconds)) drop_yardstick();
  }
}

void AdaptiveBlockPolicy::drop_yardstick() {
  // The yardstick, not the round that contradicted it, is wrong: its window restarts, and the aftermath
  // being measured against it is dropped too.
  contradicted_ = plain_seconds_;
  contradicted_since_ = last_clean_plain_;
  plain_seconds_ = 0.0;
  t_n_[1] = 0;
  aft_block_ = 0;
  aft_rounds_ = 0;
  aft_excess_ = 0.0;
  aft_base_ = 0.0;
}

void AdaptiveBlockPolicy::rescale_against_new_yardstick() {
  // Ratios taken against the dropped yardstick (since the last clean plain round: older ones were taken
  // against a yardstick that clean rounds confirmed) are rescaled; the rounds' own times were right.
  const double f = contradicted_ / plain_seconds_;
  for (size_t b = 2; b < c_ema_.size(); ++b)
    if (c_n_[b] > 0 && c_round_[b] > contradicted_since_) c_ema_[b] *= f;
  contradicted_ = 0.0;
}

void AdaptiveBlockPolicy::close_aftermath() {
  // Only the plain rounds that followed count; a drafting round right after another leaves no aftermath
  // of its own to measure (it is charged to neither).
  if (aft_block_ > 0 && aft_rounds_ > 0) {
    const size_t b = static_cast<size_t>(aft_block_);
    ema_add(aft_ema_[b], aft_n_[b], aft_excess_);
  }
  aft_block_ = 0;
  aft_rounds_ = 0;
  aft_excess_ = 0.0;
}

double AdaptiveBlockPolicy::aftermath(int b) const {
  // A size not followed by plain rounds yet borrows the nearest measured one (the caches a draft and a
  // verify push out do not depend much on the block).
  for (int d = 0; d <= max_block_; ++d)
    for (int c : {b - d, b + d})
      if (c > 1 && c <= max_block_ && aft_n_[static_cast<size_t>(c)] > 0)
        return std::max(0.0, aft_ema_[static_cast<size_t>(c)]);
  return 0.0;
}

}  // namespace dflash::spec
