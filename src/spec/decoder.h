// The decode loop of DESIGN.md: draft → verify → accept → keep (rollback) → extend the drafter.
// Plain autoregressive decoding is the same loop with a block of 1 and no drafter; n-gram lookup
// drafting (spec/lookup.h) is the same loop with a model-free draft.
//
// The loop follows the DFlash authors' dflash_generate step for step (block sizes near the length
// limit, what counts as one round's acceptance length, where stop tokens cut a round), so that its
// trace on the same models is identical to the reference's.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "spec/model_api.h"
#include "spec/sampler.h"
#include "util/status.h"

namespace dflash::spec {

// Chooses the verify block size of each round (1 = plain decoding).
class BlockPolicy {
 public:
  virtual ~BlockPolicy() = default;
  virtual int next_block_size(int max_block) = 0;
  // Called after every round with the block size used and the drafted tokens accepted.
  virtual void observe(int block_size, int n_accepted, double seconds) = 0;
  // A new text begins (the decoder calls this once per generation, before its first round).
  virtual void start_sequence() {}
};

struct DecodeOptions {
  int max_new_tokens = 128;
  SamplingParams sampling;
  int block_size = 0;                // 0 → the drafter's trained block size; 1 → plain decoding
  std::vector<int32_t> stop_tokens;  // e.g. EOS ids; the stop token itself is emitted
  BlockPolicy* policy = nullptr;     // optional adaptive block size (bounded by block_size)
  // > 0: draft by n-gram lookup in the prompt and output (spec/lookup.h, n-grams of up to this many
  // tokens) instead of with the drafter; block_size (default kLookupBlock) caps each proposal.
  int lookup_ngram = 0;
  // With a drafter and lookup_ngram > 0 (DFlash + lookup): a round whose lookup matches a full
  // lookup_ngram-gram verifies the lookup proposal, any other round the drafter's. The drafter
  // keeps reading every committed token's features either way.
  bool lookup_hybrid = false;
  // Lookup drafting (alone or DFlash + lookup) with an adaptive policy: the rounds whose lookup matches a
  // full lookup_ngram-gram take their block from this policy, the others (a shorter match or none; in DFlash
  // + lookup the drafter's rounds) from `policy`. The kinds of round are accepted at very different rates,
  // so one profile for all picks a block that suits none: on the shipped pair DFlash + lookup went from
  // 0.97 to 1.23 × plain decoding on code. Null: `policy` decides every round.
  BlockPolicy* lookup_policy = nullptr;
  // > 0: a drafter round verifies only its first drafts while the product of their confidences stays at least
  // this; the rest are dropped before the verify. A draft's confidence is the largest probability of the
  // drafter's distribution at its position (greedy: the draft's own probability). On a CPU every verified token
  // costs (c(B) grows with B), and drafts the drafter itself doubts are rarely accepted. The cut depends on the
  // drafter's distributions only, never on the target nor on which token a sampled draft drew, so greedy and
  // sampled output stay exactly the target's. 0: verify all.
  double draft_min_confidence = 0.0;
  AcceptRule accept_rule = AcceptRule::kResidual;  // tests only
};

// The engine's default draft_min_confidence (`--draft-min-conf`): a verified token costs ~0.1 of a plain
// round on the shipped CPU target (c(16) ≈ 3), less on DRAM-bound models; 0.1 loses little τ either way.
constexpr double kDefaultDraftMinConfidence = 0.1;

constexpr int kLookupBlock = 16;  // lookup drafting's default block (proposal + 1)

class Drafter;
// The largest block a generation with these options verifies: lookup's cap (block_size, default
// kLookupBlock), the drafter's trained block (or a smaller block_size; also for DFlash + lookup),
// or 1 when nothing drafts (drafter null and no lookup). Also the cap to give an adaptive policy.
int max_block_size(const DecodeOptions& opts, const Drafter* drafter);

enum class FinishReason { kLength, kStop, kContext, kCallback };
const char* finish_reason_name(FinishReason r);

struct DecodeStats {
  int64_t n_prompt = 0;
  int64_t n_generated = 0;
  int64_t n_rounds = 0;       // target verify passes after prefill
  int64_t n_drafted = 0;      // draft tokens verified
  int64_t n_accepted = 0;     // draft tokens accepted
  int64_t n_truncated = 0;    // draft tokens dropped before the verify (DecodeOptions::draft_min_confidence)
  std::vector<int> accept_lengths;  // tokens committed per round (the paper's acceptance length)
  std::vector<int> verify_sizes;    // tokens verified per round (1 + drafts)
  // The block each round asked for: what an adaptive policy chose, before draft_min_confidence dropped drafts
  // (a round whose drafts were all dropped verifies 1 token but paid for a draft: it is not a plain round).
  std::vector<int> block_sizes;
  std::vector<double> round_seconds;  // wall time of each round, as the block policy saw it
  int64_t n_lookup_rounds = 0;      // rounds that verified an n-gram lookup proposal
  double t_prefill_s = 0, t_draft_s = 0, t_verify_s = 0, t_rollback_s = 0, t_decode_s = 0;
  FinishReason finish = FinishReason::kLength;

  double tau() const;         // mean committed tokens per round
  double acceptance() const;  // n_accepted / n_drafted
  double decode_tok_s() const { return t_decode_s > 0 ? (n_generated - 1) / t_decode_s : 0; }
};

// What drafting cost in a run (negative: what it saved), measured so that the machine's speed drifting
// between runs cancels out: the time of the rounds that drafted minus what plain decoding would have taken
// for the tokens they committed, at the median plain round of the same rounds, over all rounds' time. Per
// round: the block asked (DecodeStats::block_sizes; > 1: it drafted), tokens committed, seconds. 0 without a
// plain round to measure against.
// (The slow plain rounds right after a draft are left out: plain rounds all count as plain.)
double drafting_loss(std::span<const int> block_sizes, std::span<const int> committed,
                     std::span<const double> round_seconds);

// Receives each committed token in order; returning false stops generation after it.
using TokenCallback = std::function<bool(int32_t token)>;

class Decoder {
 public:
  // drafter may be null: then every round is plain decoding, unless DecodeOptions::lookup_ngram asks
  // for lookup drafting (which ignores the drafter).
  Decoder(TargetModel& target, Drafter* drafter);

  // Generates up to max_new_tokens after `prompt` (the state is reset first). Returns the
  // generated tokens (without the prompt).
  util::Result<std::vector<int32_t>> generate(std::span<const int32_t> prompt,
                                               const DecodeOptions& opts, const TokenCallback& cb,
                                               DecodeStats* stats);

  // Gives the drafter the features of committed tokens it has not seen yet (they wait for the next
  // draft). After it, the drafter's context is every token the target state holds.
  util::Status flush_drafter_context();

 private:
  TargetModel& target_;
  Drafter* drafter_;
  std::vector<int32_t> block_;
  // Features of committed tokens not yet given to the drafter ([tokens][feature_dim]); the next draft
  // flushes them: a policy that falls back to B = 1 pays nothing for the drafter until it drafts again
  // (then one batched add_context, which gives the drafter the same context as token-by-token calls).
  std::vector<float> pending_features_;
  std::vector<int32_t> history_;  // prompt + output, for lookup drafting
  std::vector<Distribution> q_;
  std::vector<Distribution> p_;
};

}  // namespace dflash::spec
