// Adaptive block length. On a CPU, verifying B tokens costs c(B) decodes with c growing quickly in B
// (weights are reused across the block, but the arithmetic is not free), so the block that maximises
// tokens per second depends on the machine and on how well the drafter is doing right now.
//
// Each round the policy picks B maximising E(B) / t(B):
//   E(B) = 1 + Σ_{k<B} Π_{j≤k} a_j      expected tokens committed by a round of block B, with a_j the
//                                       running probability that draft j is accepted given j−1 were;
//   t(B)                                measured seconds per round of block B (an exponential moving
//                                       average; for B > 1 of its ratio to the one-token round, so
//                                       that machine-speed drift cancels), or for blocks not measured
//                                       yet a linear fit t0 + s·(B−1) through the measured ones.
// Counts decay slowly so the profile follows the text (code vs prose). Blocks not yet measured are
// probed a few times on a fixed schedule: the policy is deterministic.
#pragma once

#include <vector>

#include "spec/decoder.h"

namespace dflash::spec {

class AdaptiveBlockPolicy final : public BlockPolicy {
 public:
  explicit AdaptiveBlockPolicy(int max_block);
  int next_block_size(int max_block) override;
  void observe(int block_size, int n_accepted, double seconds) override;

  double acceptance(int k) const;       // a_k, k = 1 .. max_block-1
  double expected_tokens(int b) const;  // E(b)
  double round_seconds(int b) const;    // t(b): measured, fitted, or 0 if nothing is known yet
  int rounds() const { return rounds_; }  // rounds observed so far (probing ends after a few)

 private:
  int max_block_;
  int rounds_ = 0;
  std::vector<double> tested_, accepted_;  // per draft position (decayed counts)
  std::vector<double> t_ema_;              // per block size; 0 = not measured
  std::vector<int> t_n_;                   // observations per block size
  std::vector<double> c_ema_;              // B > 1: round time / one-token round time (EMA)
  std::vector<int> c_n_;
  double measured_seconds(int b) const;    // a measured size's current estimate
  // Neighbour probes after the initial schedule: the round of the next one, the gap to it, and the
  // choice at the last one.
  int next_explore_ = 64;
  int explore_gap_ = 32;
  int explored_best_ = 0;
  bool explore_up_ = false;
};

}  // namespace dflash::spec
