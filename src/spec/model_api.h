// What the decode loop needs of the two models. model/qwen35 and model/dflash implement these;
// tests use small mock models. Keeping the loop behind this boundary is also what lets a GPU
// backend slot in later without touching spec/.
#pragma once

#include <cstdint>
#include <span>

#include "util/status.h"

namespace dflash::spec {

// The target: a causal LM with rollback-able state.
class TargetModel {
 public:
  virtual ~TargetModel() = default;
  virtual int64_t n_vocab() const = 0;
  virtual int64_t n_ctx() const = 0;
  // Tokens currently in the state (positions 0..n_past-1).
  virtual int64_t n_past() const = 0;
  // Width of one token's captured features (n_capture_layers × hidden), 0 if capture is off.
  virtual int64_t feature_dim() const = 0;

  // Feeds `tokens` at positions n_past()..; afterwards n_past() has grown by tokens.size().
  // Logits are kept for every fed token when all_logits, else for the last one only.
  // Exceeding n_ctx() is an kOutOfRange error and leaves the state unchanged.
  virtual util::Status forward(std::span<const int32_t> tokens, bool all_logits) = 0;
  // Row i of the logits of the last forward (i indexes the kept rows). A model may compute the rows of
  // a checkpointed forward (a verify) only when they are asked for, so the caller reads them in order
  // and stops at the first rejected draft; the values are the same either way.
  virtual const float* logits(int64_t i) const = 0;
  // How many rows of the next verify's logits the caller expects to read: a lazy model computes that
  // many together on the first request and the rest only if asked (0: all at once). A hint only.
  virtual void set_logits_hint(int64_t rows) { (void)rows; }
  // Captured features of token i of the last forward ([feature_dim] floats); rows are contiguous,
  // so features(0) addresses all of them.
  virtual const float* features(int64_t i) const = 0;

  // Marks the current state; the next forward is a verify whose tokens may be partly rejected.
  virtual void checkpoint() = 0;
  // Keeps only the first n tokens fed since checkpoint(); n may be anything from 0 to all of them.
  // The state afterwards equals feeding just those n tokens (exact rollback).
  virtual util::Status keep(int64_t n) = 0;
  // Forgets everything (new conversation).
  virtual void reset() = 0;
};

// The drafter: proposes a block of tokens from the target's context features.
class Drafter {
 public:
  virtual ~Drafter() = default;
  virtual int block_size() const = 0;  // trained block size B (drafts up to B-1 tokens)
  virtual int64_t n_vocab() const = 0;
  // Appends context features of the next n committed target tokens (feature_dim each).
  virtual util::Status add_context(const float* features, int64_t n) = 0;
  virtual int64_t n_context() const = 0;
  // One forward over the block [last_token, mask × n_draft] at positions n_context().. ;
  // afterwards logits(i) (i < n_draft) is the distribution for block position i+1.
  virtual util::Status draft(int32_t last_token, int n_draft) = 0;
  virtual const float* logits(int i) const = 0;
  virtual void reset() = 0;
};

}  // namespace dflash::spec
