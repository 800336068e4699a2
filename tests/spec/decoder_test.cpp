#include "spec/decoder.h"

#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <random>

#include "mock_models.h"

namespace dflash::spec {
namespace {

using testing::MockDrafter;
using testing::MockTarget;

std::vector<int32_t> random_prompt(std::mt19937& rng, int64_t n_vocab, int len) {
  std::vector<int32_t> p(static_cast<size_t>(len));
  for (auto& t : p) t = static_cast<int32_t>(rng() % static_cast<uint32_t>(n_vocab));
  return p;
}

// Plain greedy decoding of the mock target: the reference every drafting mode must reproduce.
std::vector<int32_t> plain_greedy(MockTarget& target, const std::vector<int32_t>& prompt, int max_new_tokens) {
  Decoder ar(target, nullptr);
  DecodeOptions opts;
  opts.max_new_tokens = max_new_tokens;
  auto ref = ar.generate(prompt, opts, nullptr, nullptr);
  EXPECT_TRUE(ref.is_ok());
  return ref.is_ok() ? *ref : std::vector<int32_t>{};
}

// Also with the confidence cut (draft_min_confidence): each round verifies a prefix of its drafts, never more
// than the block, and the cuts here do drop drafts.
TEST(Decoder, GreedyDflashIsTokenIdenticalToArForEveryBlockSize) {
  constexpr int64_t kVocab = 50;
  std::mt19937 rng(7);
  for (int trial = 0; trial < 12; ++trial) {
    auto prompt = random_prompt(rng, kVocab, 1 + static_cast<int>(rng() % 20));
    MockTarget target(kVocab, 4096);
    DecodeOptions opts;
    opts.max_new_tokens = 40;
    const std::vector<int32_t> ref = plain_greedy(target, prompt, opts.max_new_tokens);
    ASSERT_EQ(ref.size(), 40u);
    for (double cut : {0.0, 0.2, 0.6, 0.95}) {
      int64_t dropped = 0;
      for (int b = 1; b <= 16; ++b) {
        MockDrafter drafter(16, kVocab, cut > 0 ? 3.0f : 6.0f, /*error_rate=*/0.25, /*seed=*/trial * 100 + b);
        Decoder dec(target, &drafter);
        opts.block_size = b;
        opts.draft_min_confidence = cut;
        DecodeStats st;
        auto got = dec.generate(prompt, opts, nullptr, &st);
        ASSERT_TRUE(got.is_ok()) << got.status().to_string();
        ASSERT_EQ(*got, ref) << "trial " << trial << " block " << b << " cut " << cut;
        for (int v : st.verify_sizes) EXPECT_LE(v, b);
        int64_t verified = 0;
        for (int v : st.verify_sizes) verified += v - 1;
        EXPECT_EQ(verified, st.n_drafted);
        dropped += st.n_truncated;
        // The target holds prompt + all generated tokens but the last (not yet fed).
        EXPECT_EQ(target.n_past(), static_cast<int64_t>(prompt.size() + got->size() - 1));
        if (b > 1) {
          // The last round's features wait for the next draft; flushed, the drafter holds the same tokens.
          ASSERT_TRUE(dec.flush_drafter_context().is_ok());
          EXPECT_EQ(drafter.context(), target.history()) << "drafter context out of sync";
        }
        int64_t committed = 0;
        for (int a : st.accept_lengths) {
          EXPECT_GE(a, 1);
          EXPECT_LE(a, b);
          committed += a;
        }
        EXPECT_EQ(committed + 1, static_cast<int64_t>(got->size()));
      }
      if (cut > 0) {
        EXPECT_GT(dropped, 0) << "trial " << trial << " cut " << cut;
      }
    }
  }
}

// The cut is where the product of the drafts' probabilities under the drafter falls below the bound: with
// per-position confidences 0.95, 0.9, 0.85, … (joint 0.95, 0.855, 0.727, 0.545, 0.354, …) a bound of 0.5 keeps
// 4 drafts, 0.8 keeps 2, 0.96 none; every kept draft is right here, so all are accepted.
TEST(Decoder, ConfidenceCutIsWhereTheJointProbabilityFallsBelowTheBound) {
  constexpr int64_t kVocab = 40;
  MockTarget target(kVocab, 4096);
  std::vector<double> conf;
  for (int i = 0; i < 15; ++i) conf.push_back(0.95 - 0.05 * i);
  struct Recorder final : BlockPolicy {  // asks for the whole block, records what it is told
    std::vector<int> sizes;
    int next_block_size(int max_block) override { return max_block; }
    void observe(int b, int, double) override { sizes.push_back(b); }
    void start_sequence() override {}
  };
  for (auto [cut, keep] : {std::pair{0.5, 4}, std::pair{0.8, 2}, std::pair{0.96, 0}}) {
    MockDrafter drafter(16, kVocab, 6.0f, 0.0, 1);
    drafter.set_confidence(conf);
    Decoder dec(target, &drafter);
    Recorder observed;
    DecodeOptions opts;
    opts.policy = &observed;
    opts.max_new_tokens = 1 + (keep + 1) * 4;  // 4 rounds; the last ones near the limit draft fewer
    opts.draft_min_confidence = cut;
    DecodeStats st;
    ASSERT_TRUE(dec.generate(std::vector<int32_t>{1, 2, 3}, opts, nullptr, &st).is_ok());
    EXPECT_EQ(st.verify_sizes, std::vector<int>(4, keep + 1)) << "cut " << cut;
    // Drafts asked per round: 15, or one less than the tokens left; all but `keep` of them dropped.
    int64_t asked = 0;
    for (int r = 0, left = opts.max_new_tokens; r < 4; ++r, left -= keep + 1) asked += std::min(15, left - 1);
    EXPECT_EQ(st.n_truncated, asked - 4 * keep) << "cut " << cut;
    EXPECT_EQ(st.n_accepted, 4 * keep) << "cut " << cut;
    // The rounds asked for the whole block (what a policy chose and is told about): even with every draft
    // dropped (cut 0.96) they drafted, so they are not plain rounds.
    ASSERT_EQ(st.block_sizes.size(), 4u);
    EXPECT_EQ(st.block_sizes, observed.sizes) << "cut " << cut;
    for (int r = 0, left = opts.max_new_tokens; r < 4; ++r, left -= keep + 1)
      EXPECT_EQ(st.block_sizes[static_cast<size_t>(r)], std::min(16, left)) << "cut " << cut << " round " << r;
  }
}

// Lookup drafting: same tokens as plain decoding for every block size, with or without a drafter
// present (it is ignored), and on a target that repeats itself the lookup does get accepted.
// DFlash + lookup (hybrid): same tokens; rounds with a full n-gram match verify the lookup proposal,
// the others the drafter's, and the drafter reads every committed token's features either way.
TEST(Decoder, GreedyLookupAndHybridAreTokenIdenticalToAr) {
  constexpr int64_t kVocab = 6;  // a small vocabulary: the mock target's output soon repeats n-grams
  std::mt19937 rng(11);
  int64_t accepted = 0, hybrid_lookup_rounds = 0, hybrid_drafter_rounds = 0;
  for (int trial = 0; trial < 8; ++trial) {
    auto prompt = random_prompt(rng, kVocab, 2 + static_cast<int>(rng() % 12));
    MockTarget target(kVocab, 4096);
    DecodeOptions opts;
    opts.max_new_tokens = 60;
    const std::vector<int32_t> ref = plain_greedy(target, prompt, opts.max_new_tokens);
    for (int b : {2, 3, 5, 8, 16}) {
      for (int mode = 0; mode < 3; ++mode) {  // lookup alone; with a drafter present; hybrid
        MockDrafter drafter(16, kVocab, 6.0f, 0.25, 5 + trial);
        Decoder dec(target, mode == 0 ? nullptr : &drafter);
        opts.block_size = b;
        opts.lookup_ngram = 3;
        opts.lookup_hybrid = mode == 2;
        DecodeStats st;
        auto got = dec.generate(prompt, opts, nullptr, &st);
        ASSERT_TRUE(got.is_ok()) << got.status().to_string();
        ASSERT_EQ(*got, ref) << "trial " << trial << " block " << b << " mode " << mode;
        EXPECT_EQ(target.n_past(), static_cast<int64_t>(prompt.size() + got->size() - 1));
        for (int a : st.accept_lengths) EXPECT_LE(a, b);
        // One verify size per round, never above the block; a round commits at most what it verified.
        ASSERT_EQ(st.verify_sizes.size(), st.accept_lengths.size());
        for (size_t i = 0; i < st.verify_sizes.size(); ++i) {
          EXPECT_LE(st.verify_sizes[i], b);
          EXPECT_LE(st.accept_lengths[i], st.verify_sizes[i]);
        }
        if (mode == 1) {
          EXPECT_EQ(drafter.context().size(), 0u) << "the drafter must not be used with lookup";
          accepted += st.n_accepted;
        }
        if (mode == 2) {
          ASSERT_TRUE(dec.flush_drafter_context().is_ok());
          EXPECT_EQ(drafter.context(), target.history()) << "hybrid: drafter context out of sync";
          hybrid_lookup_rounds += st.n_lookup_rounds;
          hybrid_drafter_rounds += st.n_rounds - st.n_lookup_rounds;
        }
      }
    }
  }
  EXPECT_GT(accepted, 0) << "lookup drafts were never accepted";
  EXPECT_GT(hybrid_lookup_rounds, 0) << "hybrid: no round used the lookup";
  EXPECT_GT(hybrid_drafter_rounds, 0) << "hybrid: no round used the drafter";
}

// Lookup with two policies (DFlash + lookup, and lookup alone): a round whose lookup matches a full n-gram
// asks the lookup policy, any other the main one, and each observes only its own rounds. Fixed answers
// (lookup 6, main 3) make the routing visible in the verify sizes; the output stays plain decoding's.
TEST(Decoder, LookupRoundsWithAFullMatchAskTheLookupPolicy) {
  struct Fixed final : BlockPolicy {
    explicit Fixed(int b) : block(b) {}
    int block, asked = 0, observed = 0, starts = 0;
    std::vector<int> sizes;
    int next_block_size(int) override { return ++asked, block; }
    void observe(int b, int, double) override { ++observed, sizes.push_back(b); }
    void start_sequence() override { ++starts; }
  };
  constexpr int64_t kVocab = 6;
  for (bool hybrid : {true, false}) {
    SCOPED_TRACE(hybrid ? "DFlash + lookup" : "lookup alone");
    std::mt19937 rng(12);
    int64_t lookup_rounds = 0, main_rounds = 0;
    for (int trial = 0; trial < 6; ++trial) {
      auto prompt = random_prompt(rng, kVocab, 2 + static_cast<int>(rng() % 12));
      MockTarget target(kVocab, 4096);
      const std::vector<int32_t> ref = plain_greedy(target, prompt, 60);
      MockDrafter drafter(16, kVocab, 6.0f, 0.25, 5 + trial);
      Decoder dec(target, hybrid ? &drafter : nullptr);
      Fixed by_main(3), by_lookup(6);
      DecodeOptions opts;
      opts.max_new_tokens = 60;
      opts.lookup_ngram = 3;
      opts.lookup_hybrid = hybrid;
      opts.policy = &by_main;
      opts.lookup_policy = &by_lookup;
      DecodeStats st;
      auto got = dec.generate(prompt, opts, nullptr, &st);
      ASSERT_TRUE(got.is_ok()) << got.status().to_string();
      ASSERT_EQ(*got, ref) << "trial " << trial;
      EXPECT_EQ(by_main.starts, 1);
      EXPECT_EQ(by_lookup.starts, 1);
      // Every round is asked of and observed by exactly one policy.
      EXPECT_EQ(by_main.asked + by_lookup.asked, st.n_rounds);
      EXPECT_EQ(by_main.observed, by_main.asked);
      EXPECT_EQ(by_lookup.observed, by_lookup.asked);
      // A full match always proposes: the lookup policy's rounds are lookup rounds. DFlash + lookup drafts
      // with the lookup in no other round; lookup alone also with shorter matches (the main policy's).
      if (hybrid)
        EXPECT_EQ(by_lookup.asked, st.n_lookup_rounds);
      else
        EXPECT_LE(by_lookup.asked, st.n_lookup_rounds);
      for (int b : by_main.sizes) EXPECT_LE(b, 3);
      for (int b : by_lookup.sizes) EXPECT_LE(b, 6);
      lookup_rounds += by_lookup.asked;
      main_rounds += by_main.asked;
    }
    EXPECT_GT(lookup_rounds, 0);
    EXPECT_GT(main_rounds, 0);
  }
}

TEST(Decoder, PerfectDrafterCommitsWholeBlocks) {
  constexpr int64_t kVocab = 40;
  MockTarget target(kVocab, 4096);
  MockDrafter drafter(16, kVocab, 6.0f, 0.0, 1);
  Decoder dec(target, &drafter);
  DecodeOptions opts;
  opts.max_new_tokens = 1 + 16 * 5;
  DecodeStats st;
  ASSERT_TRUE(dec.generate(std::vector<int32_t>{1, 2, 3}, opts, nullptr, &st).is_ok());
  ASSERT_EQ(st.accept_lengths.size(), 5u);
  for (int a : st.accept_lengths) EXPECT_EQ(a, 16);
  EXPECT_EQ(st.verify_sizes, std::vector<int>(5, 16));
  EXPECT_DOUBLE_EQ(st.acceptance(), 1.0);
  EXPECT_DOUBLE_EQ(st.tau(), 16.0);
  // Each round's time is kept, one entry per round.
  ASSERT_EQ(st.round_seconds.size(), 5u);
  for (double t : st.round_seconds) EXPECT_GT(t, 0.0);
}

// drafting_loss charges the drafting rounds' time against plain decoding at the median plain round: here
// plain rounds 1.0, 2.0, 1.5 (median 1.5) and drafting rounds of 3.0 and 4.0 s that committed 2 and 1
// tokens: (7.0 − 3 · 1.5) / 11.5.
TEST(Decoder, DraftingLossIsTheDraftingRoundsAgainstTheMedianPlainRound) {
  EXPECT_NEAR(drafting_loss(std::vector<int>{1, 1, 1, 2, 4}, std::vector<int>{1, 1, 1, 2, 1},
                            std::vector<double>{1.0, 2.0, 1.5, 3.0, 4.0}),
              2.5 / 11.5, 1e-12);
  // An even count of plain rounds takes the mean of the middle two; drafting that paid is negative.
  EXPECT_NEAR(drafting_loss(std::vector<int>{1, 1, 8}, std::vector<int>{1, 1, 6}, std::vector<double>{1.0, 3.0, 4.0}),
              (4.0 - 6 * 2.0) / 8.0, 1e-12);
  EXPECT_EQ(drafting_loss(std::vector<int>{4}, std::vector<int>{2}, std::vector<double>{3.0}), 0.0);  // no plain round
}

// Before each verify the decoder tells the target how many logit rows it expects to read (a lazy LM head
// computes those first): nothing (0, all) for the first 8 drafting rounds, then the 90th percentile of the
// tokens committed by the last 32, clamped to [2, block].
TEST(Decoder, LogitsHintIsTheRecentAcceptanceP90) {
  constexpr int64_t kVocab = 40;
  for (double err : {0.0, 0.3, 0.7}) {
    SCOPED_TRACE(err);
    MockTarget target(kVocab, 4096);
    MockDrafter drafter(8, kVocab, 6.0f, err, 3);
    Decoder dec(target, &drafter);
    DecodeOptions opts;
    opts.max_new_tokens = 300;
    DecodeStats st;
    ASSERT_TRUE(dec.generate(std::vector<int32_t>{1, 2, 3}, opts, nullptr, &st).is_ok());
    const auto& hints = target.hints();
    ASSERT_EQ(hints.size(), st.accept_lengths.size());
    ASSERT_GT(hints.size(), 20u);
    for (size_t r = 0; r < hints.size(); ++r) {
      if (r < 8) {
        EXPECT_EQ(hints[r], 0) << "round " << r;
        continue;
      }
      std::vector<int> recent(st.accept_lengths.begin() + std::max<ptrdiff_t>(0, ptrdiff_t(r) - 32),
                              st.accept_lengths.begin() + ptrdiff_t(r));
      std::sort(recent.begin(), recent.end());
      const size_t n = recent.size();
      const int64_t p90 = recent[(9 * n + 9) / 10 - 1];
      EXPECT_EQ(hints[r], std::clamp<int64_t>(p90, 2, st.verify_sizes[r])) << "round " << r;
    }
    if (err == 0.0) {
      EXPECT_EQ(hints[hints.size() - 2], 8);  // the last round is cut short by max_new_tokens
    }
  }
}

// A policy that never drafts: the committed tokens' features wait for a draft that does not come, and
// are handed to the drafter in batches of 512 so the buffer stays bounded.
TEST(Decoder, FeaturesWaitingForADraftAreFlushedInBatches) {
  struct Plain final : BlockPolicy {
    int next_block_size(int) override { return 1; }
    void observe(int, int, double) override {}
  } plain;
  constexpr int64_t kVocab = 40;
  MockTarget target(kVocab, 4096);
  MockDrafter drafter(16, kVocab, 6.0f, 0.0, 1);
  Decoder dec(target, &drafter);
  DecodeOptions opts;
  opts.max_new_tokens = 601;
  opts.policy = &plain;
  const std::vector<int32_t> prompt{1, 2, 3};
  auto got = dec.generate(prompt, opts, nullptr, nullptr);
  ASSERT_TRUE(got.is_ok()) << got.status().to_string();
  // 600 plain rounds: the prompt at prefill, one batch of 512 at round 512, 88 still waiting.
  EXPECT_EQ(drafter.context().size(), prompt.size() + 512);
  ASSERT_TRUE(dec.flush_drafter_context().is_ok());
  EXPECT_EQ(drafter.context(), target.history());
}

TEST(Decoder, BlocksShrinkAtTheLengthLimitLikeTheReference) {
  // dflash_generate verifies min(B, max_length - start) tokens: with 1 + 16 + 5 new tokens the
  // rounds commit 16 then 5 (a final block of 6 verifies 5 drafts but can commit only 5 tokens).
  constexpr int64_t kVocab = 40;
  MockTarget target(kVocab, 4096);
  MockDrafter drafter(16, kVocab, 6.0f, 0.0, 1);
  Decoder dec(target, &drafter);
  DecodeOptions opts;
  opts.max_new_tokens = 22;
  DecodeStats st;
  auto out = dec.generate(std::vector<int32_t>{5}, opts, nullptr, &st);
  ASSERT_TRUE(out.is_ok());
  EXPECT_EQ(out->size(), 22u);
  EXPECT_EQ(st.accept_lengths, (std::vector<int>{16, 5}));
  EXPECT_EQ(st.n_drafted, 15 + 5);
}

TEST(Decoder, StopsAtStopTokenIdenticallyInBothModes) {
  constexpr int64_t kVocab = 12;  // small vocab: stop tokens show up quickly
  std::mt19937 rng(3);
  int stopped_runs = 0;
  for (int trial = 0; trial < 20; ++trial) {
    auto prompt = random_prompt(rng, kVocab, 4);
    MockTarget target(kVocab, 4096);
    DecodeOptions opts;
    opts.max_new_tokens = 60;
    opts.stop_tokens = {3, 7};
    Decoder ar(target, nullptr);
    DecodeStats st_ar;
    auto ref = ar.generate(prompt, opts, nullptr, &st_ar);
    ASSERT_TRUE(ref.is_ok());
    MockDrafter drafter(8, kVocab, 6.0f, 0.2, trial);
    Decoder dec(target, &drafter);
    DecodeStats st;
    auto got = dec.generate(prompt, opts, nullptr, &st);
    ASSERT_TRUE(got.is_ok());
    EXPECT_EQ(*got, *ref);
    EXPECT_EQ(st.finish, st_ar.finish);
    if (st.finish == FinishReason::kStop) {
      ++stopped_runs;
      int32_t last = got->back();
      EXPECT_TRUE(last == 3 || last == 7);
      for (size_t i = 0; i + 1 < got->size(); ++i) EXPECT_TRUE((*got)[i] != 3 && (*got)[i] != 7);
    }
  }
  EXPECT_GT(stopped_runs, 5);  // the test exercised stopping
}

TEST(Decoder, ContextLimits) {
  MockTarget target(30, 32);
  MockDrafter drafter(16, 30, 6.0f, 0.1, 1);
  Decoder dec(target, &drafter);
  DecodeOptions opts;
  opts.max_new_tokens = 100;
  std::vector<int32_t> long_prompt(32, 1);
  auto r = dec.generate(long_prompt, opts, nullptr, nullptr);
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), util::ErrorCode::kOutOfRange);
  EXPECT_NE(r.status().message().find("context"), std::string::npos);

  DecodeStats st;
  auto ok = dec.generate(std::vector<int32_t>(10, 2), opts, nullptr, &st);
  ASSERT_TRUE(ok.is_ok());
  EXPECT_EQ(st.finish, FinishReason::kContext);
  EXPECT_EQ(ok->size(), 22u);  // positions 10..31
  EXPECT_LE(target.n_past(), 32);
}

TEST(Decoder, CallbackCanStopAndSeesEveryToken) {
  MockTarget target(30, 1024);
  MockDrafter drafter(16, 30, 6.0f, 0.0, 1);
  Decoder dec(target, &drafter);
  DecodeOptions opts;
  opts.max_new_tokens = 100;
  std::vector<int32_t> seen;
  DecodeStats st;
  auto out = dec.generate(std::vector<int32_t>{1}, opts, [&](int32_t t) {
    seen.push_back(t);
    return seen.size() < 7;
  }, &st);
  ASSERT_TRUE(out.is_ok());
  EXPECT_EQ(seen.size(), 7u);
  EXPECT_EQ(*out, seen);
  EXPECT_EQ(st.finish, FinishReason::kCallback);
}

TEST(Decoder, RejectsEmptyPromptAndMismatchedVocab) {
  MockTarget target(30, 1024);
  MockDrafter drafter(16, 31, 6.0f, 0.0, 1);
  Decoder dec(target, &drafter);
  DecodeOptions opts;
  EXPECT_EQ(dec.generate({}, opts, nullptr, nullptr).status().code(), util::ErrorCode::kInvalidArgument);
  EXPECT_EQ(dec.generate(std::vector<int32_t>{1}, opts, nullptr, nullptr).status().code(),
            util::ErrorCode::kInvalidArgument);
}

// ---- sampling: the output distribution must be exactly the target's ----

// Upper tail critical value of chi-square with df degrees of freedom at z standard deviations
// (Wilson–Hilferty); z = 4.75 is a one-sided p of about 1e-6.
double chi2_critical(int df, double z) {
  double a = 2.0 / (9.0 * df);
  return df * std::pow(1.0 - a + z * std::sqrt(a), 3.0);
}

struct ChiSquare {
  double stat = 0;
  int df = 0;
};

// Exact probability of every n-token continuation under plain sampling from the mock target.
void exact_sequences(const std::vector<int32_t>& prefix, int n, double prob, const Sampler& s,
                     int64_t n_vocab, std::map<std::vector<int32_t>, double>* out,
                     std::vector<int32_t>* cur) {
  if (n == 0) {
    (*out)[*cur] = prob;
    return;
  }
  std::vector<int32_t> h = prefix;
  h.insert(h.end(), cur->begin(), cur->end());
  std::vector<float> logits(static_cast<size_t>(n_vocab));
  testing::mock_logits(h, n_vocab, 3.0f, logits.data());
  Distribution d;
  s.distribution(logits.data(), &d);
  for (size_t i = 0; i < d.ids.size(); ++i) {
    cur->push_back(d.ids[i]);
    exact_sequences(prefix, n - 1, prob * d.probs[i], s, n_vocab, out, cur);
    cur->pop_back();
  }
}

ChiSquare sampled_vs_exact(const SamplingParams& sp, AcceptRule rule, int runs, int lookup = 0, bool hybrid = false,
                           double min_confidence = 0.0) {
  constexpr int64_t kVocab = 5;
  constexpr int kTokens = 4;
  const std::vector<int32_t> prompt{1, 4, 2};
  std::map<std::vector<int32_t>, double> exact;
  std::vector<int32_t> cur;
  exact_sequences(prompt, kTokens, 1.0, Sampler(sp, kVocab), kVocab, &exact, &cur);

  std::map<std::vector<int32_t>, int> counts;
  MockTarget target(kVocab, 64, 3.0f);
  for (int r = 0; r < runs; ++r) {
    // A drafter that is often wrong and less sharp: q differs from p everywhere.
    MockDrafter drafter(4, kVocab, 1.5f, 0.5, static_cast<uint64_t>(r) * 7919);
    Decoder dec(target, &drafter);
    DecodeOptions opts;
    opts.max_new_tokens = kTokens;
    opts.lookup_ngram = lookup;
    opts.lookup_hybrid = hybrid;
    if (lookup) opts.block_size = 4;
    opts.sampling = sp;
    opts.sampling.seed = static_cast<uint64_t>(r) + 1;
    opts.accept_rule = rule;
    opts.draft_min_confidence = min_confidence;
    auto out = dec.generate(prompt, opts, nullptr, nullptr);
    EXPECT_TRUE(out.is_ok());
    counts[*out]++;
  }
  // Pool cells with small expectations so the chi-square approximation holds.
  ChiSquare cs;
  double pooled_e = 0, pooled_o = 0;
  int cells = 0;
  for (const auto& [seq, p] : exact) {
    double e = p * runs;
    double o = counts.count(seq) ? counts[seq] : 0;
    if (e < 5) {
      pooled_e += e;
      pooled_o += o;
      continue;
    }
    cs.stat += (o - e) * (o - e) / e;
    ++cells;
  }
  for (const auto& [seq, c] : counts) EXPECT_TRUE(exact.count(seq)) << "impossible sequence sampled";
  if (pooled_e > 0) {
    cs.stat += (pooled_o - pooled_e) * (pooled_o - pooled_e) / pooled_e;
    ++cells;
  }
  cs.df = cells - 1;
  return cs;
}

TEST(Decoder, SampledDflashMatchesTheTargetDistribution) {
  // Enough runs that the biased rule is rejected by a wide margin (also under sanitizers: ~4 s).
  const int runs = 20000;
  for (SamplingParams sp : {SamplingParams{1.0f, 0, 1.0f, 0.0f, 0}, SamplingParams{0.8f, 3, 0.9f, 0.0f, 0}}) {
    ChiSquare good = sampled_vs_exact(sp, AcceptRule::kResidual, runs);
    EXPECT_LT(good.stat, chi2_critical(good.df, 4.75))
        << "T=" << sp.temperature << " df=" << good.df;
    // The same test must reject a biased rule, or it proves nothing.
    ChiSquare bad = sampled_vs_exact(sp, AcceptRule::kResampleTarget, runs);
    EXPECT_GT(bad.stat, chi2_critical(bad.df, 4.75))
        << "the chi-square test cannot tell a biased acceptance rule apart (T=" << sp.temperature << ")";
  }
}

// Cutting the draft where the drafter's joint probability falls below a bound depends on the draft alone, so
// the output distribution stays the target's (and the biased rule is still caught).
TEST(Decoder, SampledDflashWithAConfidenceCutMatchesTheTargetDistribution) {
  const int runs = 20000;
  for (SamplingParams sp : {SamplingParams{1.0f, 0, 1.0f, 0.0f, 0}, SamplingParams{0.8f, 3, 0.9f, 0.0f, 0}}) {
    ChiSquare good = sampled_vs_exact(sp, AcceptRule::kResidual, runs, 0, false, /*min_confidence=*/0.15);
    EXPECT_LT(good.stat, chi2_critical(good.df, 4.75)) << "T=" << sp.temperature << " df=" << good.df;
    ChiSquare bad = sampled_vs_exact(sp, AcceptRule::kResampleTarget, runs, 0, false, 0.15);
    EXPECT_GT(bad.stat, chi2_critical(bad.df, 4.75))
        << "the chi-square test cannot tell a biased acceptance rule apart (T=" << sp.temperature << ")";
  }
}

// DFlash + lookup: rounds alternate between the drafter's q and one-hot lookup drafts; still exact.
TEST(Decoder, SampledHybridMatchesTheTargetDistribution) {
  const int runs = 20000;
  for (SamplingParams sp : {SamplingParams{1.0f, 0, 1.0f, 0.0f, 0}, SamplingParams{0.8f, 3, 0.9f, 0.0f, 0}}) {
    ChiSquare good = sampled_vs_exact(sp, AcceptRule::kResidual, runs, /*lookup=*/1, /*hybrid=*/true);
    EXPECT_LT(good.stat, chi2_critical(good.df, 4.75)) << "T=" << sp.temperature << " df=" << good.df;
    ChiSquare bad = sampled_vs_exact(sp, AcceptRule::kResampleTarget, runs, /*lookup=*/1, /*hybrid=*/true);
    EXPECT_GT(bad.stat, chi2_critical(bad.df, 4.75))
        << "the chi-square test cannot tell a biased acceptance rule apart (T=" << sp.temperature << ")";
  }
}

// Lookup drafts are one-hot draft distributions: the residual rule keeps sampling exact.
TEST(Decoder, SampledLookupMatchesTheTargetDistribution) {
  const int runs = 20000;
  for (SamplingParams sp : {SamplingParams{1.0f, 0, 1.0f, 0.0f, 0}, SamplingParams{0.8f, 3, 0.9f, 0.0f, 0}}) {
    ChiSquare good = sampled_vs_exact(sp, AcceptRule::kResidual, runs, /*lookup=*/2);
    EXPECT_LT(good.stat, chi2_critical(good.df, 4.75)) << "T=" << sp.temperature << " df=" << good.df;
    ChiSquare bad = sampled_vs_exact(sp, AcceptRule::kResampleTarget, runs, /*lookup=*/2);
    EXPECT_GT(bad.stat, chi2_critical(bad.df, 4.75))
        << "the chi-square test cannot tell a biased acceptance rule apart (T=" << sp.temperature << ")";
  }
}

}  // namespace
}  // namespace dflash::spec
