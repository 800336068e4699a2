#include "spec/decoder.h"

#include <algorithm>
#include <array>
#include <optional>

#include "kernels/activation.h"
#include "spec/lookup.h"
#include "util/log.h"
#include "util/profile.h"
#include "util/timer.h"

namespace dflash::spec {

using util::Status;

const char* finish_reason_name(FinishReason r) {
  switch (r) {
    case FinishReason::kLength: return "length";
    case FinishReason::kStop: return "stop";
    case FinishReason::kContext: return "context";
    case FinishReason::kCallback: return "callback";
  }
  return "?";
}

double DecodeStats::tau() const {
  if (accept_lengths.empty()) return 0.0;
  double s = 0;
  for (int a : accept_lengths) s += a;
  return s / static_cast<double>(accept_lengths.size());
}

double drafting_loss(std::span<const int> block_sizes, std::span<const int> committed,
                     std::span<const double> round_seconds) {
  const size_t n = std::min({block_sizes.size(), committed.size(), round_seconds.size()});
  std::vector<double> plain;
  double total = 0, draft_time = 0, draft_tokens = 0;
  for (size_t i = 0; i < n; ++i) {
    total += round_seconds[i];
    if (block_sizes[i] <= 1) {
      plain.push_back(round_seconds[i]);
    } else {
      draft_time += round_seconds[i];
      draft_tokens += committed[i];
    }
  }
  if (plain.empty() || total <= 0) return 0.0;
  const auto mid = plain.begin() + static_cast<std::ptrdiff_t>(plain.size() / 2);
  std::nth_element(plain.begin(), mid, plain.end());
  double median = *mid;
  if (plain.size() % 2 == 0) median = 0.5 * (median + *std::max_element(plain.begin(), mid));
  return (draft_time - draft_tokens * median) / total;
}

double DecodeStats::acceptance() const {
  return n_drafted ? static_cast<double>(n_accepted) / static_cast<double>(n_drafted) : 0.0;
}

int max_block_size(const DecodeOptions& opts, const Drafter* drafter) {
  // DFlash + lookup: the drafter drafts some rounds, so its block is the cap.
  if (opts.lookup_ngram > 0 && !(opts.lookup_hybrid && drafter))
    return opts.block_size > 0 ? opts.block_size : kLookupBlock;
  if (!drafter) return 1;
  return std::min(opts.block_size > 0 ? opts.block_size : drafter->block_size(), drafter->block_size());
}

Decoder::Decoder(TargetModel& target, Drafter* drafter) : target_(target), drafter_(drafter) {}

namespace {

// Rows of a verify's logits a round is expected to read (TargetModel::set_logits_hint): the 90th
// percentile of the tokens committed by the last 32 drafting rounds (each read one row per accepted draft
// plus the row of the target's own token), at least 2; 0 (all rows) before there are 8 such rounds.
int64_t expected_rows(const DecodeStats& st, int verify_size) {
  std::array<int, 32> recent{};
  int n = 0;
  for (size_t i = st.accept_lengths.size(); i-- > 0 && n < 32;)
    if (st.verify_sizes[i] > 1) recent[static_cast<size_t>(n++)] = st.accept_lengths[i];
  if (n < 8) return 0;
  std::sort(recent.begin(), recent.begin() + n);
  const int p90 = recent[static_cast<size_t>((9 * n + 9) / 10 - 1)];
  return std::min(verify_size, std::max(2, p90));
}

constexpr int64_t kMaxPendingTokens = 512;  // committed tokens' features held back from the drafter, at most
}  // namespace

Status Decoder::flush_drafter_context() {
  if (pending_features_.empty() || !drafter_) return Status::ok();
  const auto n = static_cast<int64_t>(pending_features_.size()) / target_.feature_dim();
  DFLASH_RETURN_IF_ERROR(drafter_->add_context(pending_features_.data(), n));
  pending_features_.clear();
  return Status::ok();
}

util::Result<std::vector<int32_t>> Decoder::generate(std::span<const int32_t> prompt,
                                                      const DecodeOptions& opts,
                                                      const TokenCallback& cb,
                                                      DecodeStats* stats_out) {
  DecodeStats local;
  DecodeStats& st = stats_out ? *stats_out : local;
  st = DecodeStats{};
  std::vector<int32_t> out;
  if (prompt.empty()) return util::invalid_argument("empty prompt: at least one token is needed");
  if (opts.max_new_tokens <= 0) return out;
  const int64_t n_ctx = target_.n_ctx();
  if (static_cast<int64_t>(prompt.size()) >= n_ctx)
    return util::out_of_range(util::strfmt(
        "prompt has %zu tokens but the context holds %lld: shorten the prompt or raise --ctx-size",
        prompt.size(), static_cast<long long>(n_ctx)));
  const bool lookup = opts.lookup_ngram > 0;
  const bool hybrid = lookup && opts.lookup_hybrid && drafter_ != nullptr;
  Drafter* const drafter = lookup && !hybrid ? nullptr : drafter_;
  if (drafter && drafter->n_vocab() != target_.n_vocab())
    return util::invalid_argument("drafter and target vocabularies differ");

  const int max_block = max_block_size(opts, drafter);
  const bool use_features = drafter != nullptr && max_block > 1;

  Sampler sampler(opts.sampling, target_.n_vocab());
  const int64_t n_vocab = target_.n_vocab();
  target_.reset();
  if (drafter) drafter->reset();
  pending_features_.clear();
  // Lookup drafting reads the prompt and everything emitted so far.
  history_.clear();
  if (lookup) history_.assign(prompt.begin(), prompt.end());

  // Positions run to max_length - 1; generation may also end at the context limit.
  const int64_t n_prompt = static_cast<int64_t>(prompt.size());
  const int64_t want_length = n_prompt + opts.max_new_tokens;
  const int64_t max_length = std::min(want_length, n_ctx);
  st.n_prompt = n_prompt;

  auto is_stop = [&](int32_t t) {
    return std::find(opts.stop_tokens.begin(), opts.stop_tokens.end(), t) != opts.stop_tokens.end();
  };
  bool stopped = false;
  auto emit = [&](int32_t t) {
    out.push_back(t);
    if (lookup) history_.push_back(t);
    ++st.n_generated;
    if (is_stop(t)) {
      st.finish = FinishReason::kStop;
      stopped = true;
    }
    if (cb && !cb(t) && !stopped) {
      st.finish = FinishReason::kCallback;
      stopped = true;
    }
  };

  // Prefill: features of every prompt token become the drafter's first context.
  util::Timer t;
  std::optional<util::profile::Envelope> prof_prefill(std::in_place, "[prefill]", n_prompt);
  DFLASH_RETURN_IF_ERROR(target_.forward(prompt, /*all_logits=*/false));
  int32_t last = sampler.sample_logits(target_.logits(0));
  if (use_features) {
    DFLASH_RETURN_IF_ERROR(drafter->add_context(target_.features(0), n_prompt));
  }
  st.t_prefill_s = t.seconds();
  prof_prefill.reset();
  emit(last);

  // Lookup with two policies: each round first looks up, then asks the policy of its kind.
  BlockPolicy* const lookup_policy = lookup && opts.policy && max_block > 1 ? opts.lookup_policy : nullptr;
  if (opts.policy && max_block > 1) opts.policy->start_sequence();
  if (lookup_policy) lookup_policy->start_sequence();
  util::Timer decode_timer;
  int64_t start = n_prompt;  // position of `last`, which is not yet in the target state
  while (start + 1 < max_length && !stopped) {
    util::Timer round_timer;
    int block = max_block;
    // The round's lookup, at most once and only when needed: the longest proposal this round could verify
    // (a shorter block takes its prefix: the match does not depend on the length asked for).
    std::vector<int32_t> proposal;
    int matched = 0;
    bool looked_up = false;
    double t_lookup = 0.0;
    auto look_up = [&] {
      if (looked_up) return;
      looked_up = true;
      util::Timer t;
      const int64_t room = std::min<int64_t>(max_block, max_length - start) - 1;
      if (room > 0) proposal = lookup_draft(history_, opts.lookup_ngram, static_cast<int>(room), &matched);
      t_lookup = t.seconds();
    };
    BlockPolicy* policy = max_block > 1 ? opts.policy : nullptr;
    if (lookup_policy) {
      look_up();
      if (!proposal.empty() && matched >= opts.lookup_ngram) policy = lookup_policy;
    }
    if (policy) block = std::clamp(policy->next_block_size(max_block), 1, max_block);
    int verify_size = static_cast<int>(std::min<int64_t>(block, max_length - start));
    int n_draft = verify_size - 1;

    block_.assign(1, last);
    bool drafted_by_lookup = false;
    if (n_draft > 0 && lookup) {
      look_up();
      if (proposal.size() > static_cast<size_t>(n_draft)) proposal.resize(static_cast<size_t>(n_draft));
      // Hybrid: only a full-length n-gram match is trusted over the drafter.
      if (hybrid && matched < opts.lookup_ngram) proposal.clear();
      drafted_by_lookup = !hybrid || !proposal.empty();
    }
    if (drafted_by_lookup) {
      // A deterministic proposal, possibly shorter than asked (or empty: a plain round). For
      // sampling, its draft distribution is one-hot, which the residual rule handles losslessly.
      st.n_lookup_rounds += proposal.empty() ? 0 : 1;
      n_draft = static_cast<int>(proposal.size());
      verify_size = n_draft + 1;
      block_.insert(block_.end(), proposal.begin(), proposal.end());
      if (!sampler.params().greedy()) {
        q_.resize(static_cast<size_t>(n_draft));
        for (int i = 0; i < n_draft; ++i) {
          Distribution& q = q_[static_cast<size_t>(i)];
          q.ids.assign(1, proposal[static_cast<size_t>(i)]);
          q.probs.assign(1, 1.0f);
          q.dense.clear();
        }
      }
      st.t_draft_s += t_lookup;
    }
    const int asked = verify_size;  // before draft_min_confidence drops drafts (a lookup round: its proposal)
    // Profiled under that block (a lookup proposal may be shorter than the policy's; the confidence cut below
    // may verify fewer).
    util::profile::Envelope prof_round("[round]", verify_size);
    if (n_draft > 0 && drafter && !drafted_by_lookup) {
      util::Timer td;
      DFLASH_RETURN_IF_ERROR(flush_drafter_context());
      DFLASH_RETURN_IF_ERROR(drafter->draft(last, n_draft));
      // The confidence cut (draft_min_confidence): the draft ends where the product of the positions'
      // confidences falls below the bound. A position's confidence is the largest probability of its
      // distribution (greedy: the draft's own), read before its draft is drawn: a cut that depended on which
      // token a sampled draft drew would bias the verified prefix (the residual rule assumes every draft from
      // q reaches the verify). DFlash drafts all positions in one pass, so q_i does not depend on the drafts
      // before it. Positions past the cut are neither turned into distributions nor drawn.
      const bool greedy = sampler.params().greedy();
      if (!greedy) q_.resize(static_cast<size_t>(n_draft));
      double joint = 1.0;
      int kept = 0;
      for (; kept < n_draft; ++kept) {
        const float* row = drafter->logits(kept);
        Distribution* q = greedy ? nullptr : &q_[static_cast<size_t>(kept)];
        if (q) sampler.distribution(row, q);
        if (opts.draft_min_confidence > 0.0) {
          joint *= greedy ? kernels::softmax_max(row, n_vocab)
                          : (q->probs.empty() ? 0.0f : *std::max_element(q->probs.begin(), q->probs.end()));
          if (joint < opts.draft_min_confidence) break;
        }
        block_.push_back(greedy ? argmax(row, n_vocab) : sampler.sample(*q));
      }
      st.n_truncated += n_draft - kept;
      n_draft = kept;
      verify_size = n_draft + 1;
      st.t_draft_s += td.seconds();
    }

    util::Timer tv;
    if (n_draft > 0) {
      target_.checkpoint();
      target_.set_logits_hint(expected_rows(st, verify_size));
    }
    DFLASH_RETURN_IF_ERROR(target_.forward(block_, /*all_logits=*/true));

    std::span<const int32_t> drafted(block_.data() + 1, static_cast<size_t>(n_draft));
    // An envelope, not a leaf: a lazy LM head runs its (leaf) matmuls in here.
    std::optional<util::profile::Envelope> prof_accept(std::in_place, "[accept]", -1);
    Acceptance acc;
    if (sampler.params().greedy()) {
      acc = accept_greedy(drafted, [&](int64_t i) { return target_.logits(i); }, n_vocab);
    } else {
      // Target distributions on demand, in order: rows after the first rejection are never turned into
      // distributions (softmax, top-k/top-p over the whole vocabulary per row).
      p_.resize(static_cast<size_t>(verify_size));
      int64_t p_ready = 0;
      auto p_row = [&](int64_t i) -> const Distribution& {
        for (; p_ready <= i; ++p_ready) sampler.distribution(target_.logits(p_ready), &p_[static_cast<size_t>(p_ready)]);
        return p_[static_cast<size_t>(i)];
      };
      acc = accept_sampled(drafted, p_row,
                           std::span<const Distribution>(q_.data(), static_cast<size_t>(n_draft)), sampler,
                           opts.accept_rule);
    }

    // Tokens this round commits: accepted drafts, then the target's own next token.
    int produced = static_cast<int>(std::min<int64_t>(acc.n_accepted + 1, max_length - start - 1));
    std::vector<int32_t> fresh(block_.begin() + 1, block_.begin() + 1 + acc.n_accepted);
    fresh.push_back(acc.next);
    for (int i = 0; i < produced; ++i)
      if (is_stop(fresh[static_cast<size_t>(i)])) {
        produced = i + 1;
        break;
      }

    prof_accept.reset();
    st.t_verify_s += tv.seconds();  // with the acceptance: a lazy LM head computes its rows there
    util::Timer tr;
    if (n_draft > 0) DFLASH_RETURN_IF_ERROR(target_.keep(produced));
    st.t_rollback_s += tr.seconds();
    // The committed tokens' features extend the drafter's context (rows 0..produced-1 of the
    // verify are exactly the tokens now in the target state). They wait in pending_features_ until the
    // next draft: a drafting round pays the same either way, and a round followed by plain ones (an
    // adaptive probe) does not feed the drafter tokens it may not need for a while.
    if (use_features) {
      const float* f = target_.features(0);
      pending_features_.insert(pending_features_.end(), f, f + produced * target_.feature_dim());
      // A long stretch without drafting (plain or lookup rounds) flushes in batches, so the buffer stays
      // bounded (512 tokens: 4.5 MB of the shipped target's features, 6 MB of the 0.8B shape's).
      if (static_cast<int64_t>(pending_features_.size()) >= kMaxPendingTokens * target_.feature_dim())
        DFLASH_RETURN_IF_ERROR(flush_drafter_context());
    }

    st.n_rounds++;
    st.n_drafted += n_draft;
    st.n_accepted += acc.n_accepted;
    st.accept_lengths.push_back(produced);
    st.verify_sizes.push_back(verify_size);
    st.block_sizes.push_back(asked);
    const double secs = round_timer.seconds();
    st.round_seconds.push_back(secs);
    if (policy) {
      // The policy sees the block it chose: its cost with the confidence cut is what choosing it costs, and a
      // draft cut short counts as rejected where it was cut (the committed tokens are what matter).
      policy->observe(asked, acc.n_accepted, secs);
      LOG_DEBUG("policy round %lld: block %d, %d accepted, %.3f ms", static_cast<long long>(st.n_rounds), asked,
                acc.n_accepted, 1e3 * secs);
    }

    for (int i = 0; i < produced && !stopped; ++i) emit(fresh[static_cast<size_t>(i)]);
    last = fresh[static_cast<size_t>(produced - 1)];
    start += produced;
  }
  if (!stopped) st.finish = max_length < want_length ? FinishReason::kContext : FinishReason::kLength;
  st.t_decode_s = decode_timer.seconds();
  return out;
}

}  // namespace dflash::spec
