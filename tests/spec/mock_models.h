// Small deterministic stand-ins for the target and the drafter, so that the decode loop can be
// tested exhaustively without a real model. The mock target's next-token logits depend on the
// whole history through a rolling hash, so any state bug (a token kept or dropped wrongly in
// rollback) changes the output.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include "spec/model_api.h"

namespace dflash::spec::testing {

inline uint64_t mix(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ULL;
  x ^= x >> 33;
  return x;
}

// Logits of the mock language model after `history`.
inline void mock_logits(const std::vector<int32_t>& history, int64_t n_vocab, float sharpness,
                        float* out) {
  uint64_t h = 0x9e3779b97f4a7c15ULL;
  for (int32_t t : history) h = mix(h ^ static_cast<uint64_t>(t + 1));
  for (int64_t v = 0; v < n_vocab; ++v) {
    double u = static_cast<double>(mix(h + static_cast<uint64_t>(v)) >> 11) / 9007199254740992.0;
    out[v] = static_cast<float>(sharpness * u);
  }
}

class MockTarget final : public TargetModel {
 public:
  MockTarget(int64_t n_vocab, int64_t n_ctx, float sharpness = 6.0f)
      : n_vocab_(n_vocab), n_ctx_(n_ctx), sharpness_(sharpness) {}
  int64_t n_vocab() const override { return n_vocab_; }
  int64_t n_ctx() const override { return n_ctx_; }
  int64_t n_past() const override { return static_cast<int64_t>(history_.size()); }
  int64_t feature_dim() const override { return 1; }
  util::Status forward(std::span<const int32_t> tokens, bool all_logits) override {
    if (n_past() + static_cast<int64_t>(tokens.size()) > n_ctx_) return util::out_of_range("ctx");
    logits_.clear();
    features_.clear();
    for (size_t i = 0; i < tokens.size(); ++i) {
      history_.push_back(tokens[i]);
      features_.push_back(static_cast<float>(tokens[i]));  // the drafter reads the ids back
      if (all_logits || i + 1 == tokens.size()) {
        logits_.resize(logits_.size() + static_cast<size_t>(n_vocab_));
        mock_logits(history_, n_vocab_, sharpness_, logits_.data() + logits_.size() - static_cast<size_t>(n_vocab_));
      }
    }
    ++n_forward_;
    return util::Status::ok();
  }
  const float* logits(int64_t i) const override { return logits_.data() + i * n_vocab_; }
  const float* features(int64_t i) const override { return features_.data() + i; }
  void checkpoint() override { checkpoint_ = n_past(); }
  void set_logits_hint(int64_t rows) override { hints_.push_back(rows); }
  util::Status keep(int64_t n) override {
    if (checkpoint_ < 0 || checkpoint_ + n > n_past()) return util::internal_error("bad keep");
    history_.resize(static_cast<size_t>(checkpoint_ + n));
    checkpoint_ = -1;
    return util::Status::ok();
  }
  void reset() override {
    history_.clear();
    checkpoint_ = -1;
  }
  const std::vector<int32_t>& history() const { return history_; }
  int64_t n_forward() const { return n_forward_; }
  const std::vector<int64_t>& hints() const { return hints_; }  // set_logits_hint calls, in order

 private:
  std::vector<int64_t> hints_;
  int64_t n_vocab_, n_ctx_;
  float sharpness_;
  std::vector<int32_t> history_;
  std::vector<float> logits_, features_;
  int64_t checkpoint_ = -1;
  int64_t n_forward_ = 0;
};

// Guesses the target's greedy continuation from the context ids, wrong at a given rate, and
// (for sampling tests) returns logits that differ from the target's.
class MockDrafter final : public Drafter {
 public:
  MockDrafter(int block_size, int64_t n_vocab, float sharpness, double error_rate, uint64_t seed)
      : block_size_(block_size), n_vocab_(n_vocab), sharpness_(sharpness), error_rate_(error_rate), seed_(seed) {}
  int block_size() const override { return block_size_; }
  int64_t n_vocab() const override { return n_vocab_; }
  util::Status add_context(const float* features, int64_t n) override {
    for (int64_t i = 0; i < n; ++i) ctx_.push_back(static_cast<int32_t>(features[i]));
    return util::Status::ok();
  }
  int64_t n_context() const override { return static_cast<int64_t>(ctx_.size()); }
  util::Status draft(int32_t last_token, int n_draft) override {
    if (n_draft >= block_size_) return util::invalid_argument("block too large");
    std::vector<int32_t> h = ctx_;
    h.push_back(last_token);
    logits_.assign(static_cast<size_t>(n_draft) * n_vocab_, 0.0f);
    for (int i = 0; i < n_draft; ++i) {
      float* row = logits_.data() + static_cast<size_t>(i) * n_vocab_;
      mock_logits(h, n_vocab_, sharpness_, row);
      uint64_t r = mix(seed_ ^ (static_cast<uint64_t>(h.size()) << 20) ^ static_cast<uint64_t>(calls_));
      if (static_cast<double>(r % 10000) / 10000.0 < error_rate_) {
        // Corrupt: move the mass to another token.
        row[(r >> 16) % static_cast<uint64_t>(n_vocab_)] += 2 * sharpness_;
      }
      int32_t best = 0;
      for (int64_t v = 1; v < n_vocab_; ++v) if (row[v] > row[best]) best = static_cast<int32_t>(v);
      if (static_cast<size_t>(i) < confidence_.size()) {
        // The same argmax with softmax probability exactly confidence_[i]: e^L / (e^L + n − 1) = p.
        const double p = confidence_[static_cast<size_t>(i)];
        std::fill(row, row + n_vocab_, 0.0f);
        row[best] = static_cast<float>(std::log(p * static_cast<double>(n_vocab_ - 1) / (1.0 - p)));
      }
      h.push_back(best);
    }
    ++calls_;
    return util::Status::ok();
  }
  const float* logits(int i) const override { return logits_.data() + static_cast<size_t>(i) * n_vocab_; }
  void reset() override { ctx_.clear(); }
  const std::vector<int32_t>& context() const { return ctx_; }
  // Draft position i's row gets its argmax probability set to p[i] (0 < p < 1), the argmax kept.
  void set_confidence(std::vector<double> p) { confidence_ = std::move(p); }

 private:
  std::vector<double> confidence_;
  int block_size_;
  int64_t n_vocab_;
  float sharpness_;
  double error_rate_;
  uint64_t seed_;
  uint64_t calls_ = 0;
  std::vector<int32_t> ctx_;
  std::vector<float> logits_;
};

}  // namespace dflash::spec::testing
