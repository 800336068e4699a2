// Adaptive block length. On a CPU, verifying B tokens costs c(B) decodes with c growing quickly in B
// (weights are reused across the block, but the arithmetic is not free), so the block that maximises
// tokens per second depends on the machine and on how well the drafter is doing right now.
//
// Each round the policy picks B from three estimates:
//   a_j(s)                              the running probability that draft j is accepted given j−1 were,
//                                       kept per *context state* s: what the last drafting round showed
//                                       (the run of accepted drafts: none, 1–3, 4–7, 8+; a block
//                                       accepted whole counts one more). Acceptance comes in runs — on the shipped
//                                       pair, after a round that rejected its first draft the next one
//                                       accepts 0.7 drafts on average, after one that accepted 8+ it
//                                       accepts 9–10 — so one profile for the whole text averages a
//                                       stretch where B = 16 pays with one where only B = 1 does;
//   E(B | s) = 1 + Σ_{k<B} Π_{j≤k} a_j(s)  expected tokens committed by a round of block B;
//   t(B)                                measured seconds per round of block B (an exponential moving
//                                       average; for B > 1 of its ratio to the one-token round, so
//                                       that machine-speed drift cancels), or for blocks not measured
//                                       yet a linear fit t0 + s·(B−1) through the measured ones.
// and it maximises tokens per second over the long run, not per round: a round also decides which state
// the next one starts from (a cheap B = 2 after a miss can find the next run, where B = 1 learns nothing),
// so the choice solves the semi-Markov decision process states × blocks by relative value iteration
// (Schweitzer's transformation to a discrete-time process; a few warm-started sweeps per round). A plain
// round (B = 1) leaves the state as it was. Each state also remembers whether the last round drafted: the
// plain rounds right after a drafting round run slow (the draft and the verify pushed the target's decode
// working set out of the caches; measured per block as the excess over the median one-token round, the
// aftermath), so going back to plain decoding pays that once, and those rounds do not set the one-token
// round's cost. The yardstick is also checked against the rounds that cannot be cheaper than it: a drafting
// round, or a plain one in a draft's aftermath, measured under 0.9 of it shows it is wrong (a slow first
// round, a slow phase of a shared machine that has passed); it is then re-measured from three plain rounds
// in a row and the ratios taken against it are rescaled (a slow first round had locked the policy into
// drafting for ~130 rounds on the shipped pair at Q4_K_M). Counts decay so the profiles follow the text
// (code vs prose); a state with little evidence borrows the whole text's profile. The one-token round's cost is the median
// of the last five, re-measured every 48 rounds even while drafting pays (it is every other size's
// yardstick). Blocks not yet measured are probed a few times on a fixed schedule: the policy is deterministic.
#pragma once

#include <array>
#include <vector>

#include "spec/decoder.h"

namespace dflash::spec {

class AdaptiveBlockPolicy final : public BlockPolicy {
 public:
  explicit AdaptiveBlockPolicy(int max_block);
  int next_block_size(int max_block) override;
  void observe(int block_size, int n_accepted, double seconds) override;
  void start_sequence() override;

  static constexpr int kStates = 5;     // context states; 0 = nothing drafted yet in this text
  // The state a drafting round of block b that accepted n drafts leaves behind.
  static int state_after(int b, int n_accepted);
  int state() const { return state_; }

  double acceptance(int k) const;       // a_k over the whole text (all states), k = 1 .. max_block-1
  double expected_tokens(int b) const;  // E(b) over the whole text
  double acceptance(int state, int k) const;       // a_k(state)
  double round_seconds(int b) const;    // t(b): measured, fitted, or 0 if nothing is known yet
  double aftermath(int b) const;        // excess one-token rounds the plain rounds after a round of b cost
  int rounds() const { return rounds_; }  // rounds observed so far (probing ends after a few)

 private:
  int max_block_;
  int rounds_ = 0;
  std::vector<double> tested_, accepted_;  // per draft position (decayed counts), whole text
  std::vector<double> s_tested_, s_accepted_;  // [state][position], decayed counts
  std::vector<double> h_;                  // relative values of the states × {after plain, after drafting}
  int state_ = 0;                          // the state the next round starts from
  int decided_state_ = 0;                  // the state the last chosen block was chosen in
  // The block maximising long-run tokens per second from the current state (value iteration).
  int plan(int cap);
  // a[1..n] = a_1(state) .. a_n(state), each position's estimate the prior of the next; a[0] = the
  // whole text's a_1, the prior of position 1.
  void state_profile(int state, int n, double* a) const;
  std::vector<double> t_ema_;              // per block size > 1; 0 = not measured
  std::vector<int> t_n_;                   // observations per block size (1 included)
  std::vector<double> c_ema_;              // B > 1: round time / one-token round time (EMA)
  std::vector<int> c_n_;
  double measured_seconds(int b) const;    // a measured size's current estimate
  static constexpr int kPlainWindow = 5;
  std::array<double, kPlainWindow> plain_recent_{};  // the last one-token rounds (ring)
  int last_plain_round_ = 0;
  double plain_seconds_ = 0.0;             // median of plain_recent_ (0: none yet)
  void add_plain_round(double seconds);
  // The aftermath of drafting: the plain rounds right after a drafting round run slow (the drafter and the
  // verify pushed the target's decode working set out of the caches), which the median plain round does not
  // show and the drafting round's own time does not include. Measured per block size as the excess of the
  // next kAftermathRounds plain rounds over the one-token round at the time of the draft (in one-token
  // rounds), and charged in plan() to a plain round chosen right after a drafting one.
  static constexpr int kAftermathRounds = 4;
  std::vector<double> aft_ema_;            // per block size: excess one-token rounds after it (EMA)
  std::vector<int> aft_n_;
  int aft_block_ = 0;                      // block of the drafting round being followed (0: none)
  int aft_rounds_ = 0;                     // plain rounds seen after it
  double aft_excess_ = 0.0;
  double aft_base_ = 0.0;                  // the one-token round when it was drafted
  int last_drafted_ = 0;                   // the last drafting round's block (0: none yet)
  int last_clean_plain_ = 0;               // the last plain round outside an aftermath
  static constexpr int kStaleYardstick = 192;
  // A drafting round contains a one-token round's work, and a plain round in a draft's aftermath is one
  // run slow; so either measured under the yardstick (below kContradiction of it) shows the yardstick is
  // wrong (a slow outlier, a slow phase of the machine that has passed): it is dropped and re-measured
  // from kResettle plain rounds in a row, and the ratios taken against it (the sizes observed since the
  // last clean plain round) are rescaled by old / new. contradicted_ holds the dropped yardstick until
  // then (0: none).
  static constexpr double kContradiction = 0.9;
  static constexpr int kResettle = 3;
  double contradicted_ = 0.0;
  int contradicted_since_ = 0;             // the last clean plain round before the drop
  std::vector<int> c_round_;               // per block size: the round of its last observation
  bool contradicts_yardstick(double seconds) const {
    return plain_seconds_ > 0.0 && seconds < kContradiction * plain_seconds_;
  }
  void drop_yardstick();
  void rescale_against_new_yardstick();
  void close_aftermath();
  // Neighbour probes after the initial schedule: the round of the next one, the gap to it, and the
  // choice at the last one.
  int next_explore_ = 64;
  int explore_gap_ = 32;
  int explored_best_ = 0;
  bool explore_up_ = false;
};

}  // namespace dflash::spec
