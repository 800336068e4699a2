// The OpenAI-compatible API as plain functions: request JSON → engine request, engine result →
// response JSON / stream chunks. No HTTP here (server.h), so every rule is unit-testable.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/engine.h"
#include "spec/sampler.h"
#include "util/status.h"

namespace dflash::server {

enum class Endpoint { kCompletions, kChatCompletions };

// Values used when a request leaves a field out (set from `dflash serve` flags).
struct RequestDefaults {
  spec::SamplingParams sampling;  // temperature 0 (greedy) unless the server is started otherwise
  int max_tokens = 256;
  int block_size = 0;             // 0: the drafter's
  bool speculative = true;
  bool adaptive = false;
  int lookup = 0;                 // > 0: n-gram lookup drafting (spec/lookup.h) instead of the drafter
  bool lookup_hybrid = false;     // with lookup and a drafter: DFlash + lookup (DecodeOptions::lookup_hybrid)
  double draft_min_confidence = spec::kDefaultDraftMinConfidence;  // DecodeOptions::draft_min_confidence
};

struct ParsedRequest {
  Endpoint endpoint = Endpoint::kCompletions;
  engine::GenerateRequest gen;
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
  bool adaptive = false;
  std::string model;           // echoed back
};

// An API error: HTTP status and the OpenAI error object fields.
struct ApiError {
  int http_status = 400;
  std::string message;
  std::string type = "invalid_request_error";
  std::string param;  // offending field, empty when none
  std::string code;   // e.g. "context_length_exceeded"

  nlohmann::json to_json() const;
};

// Validates the body and builds the engine request (prompt rendered through the chat template and
// tokenized for chat). Unknown fields are ignored, as the public servers do; fields this engine
// cannot honour (n > 1, logprobs, penalties, non-text content, JSON mode) are rejected by name.
// On failure returns false and fills *err.
bool parse_request(Endpoint ep, const nlohmann::json& body, const engine::Engine& eng, const RequestDefaults& defaults,
                   ParsedRequest* out, ApiError* err);

// OpenAI finish_reason for an engine finish reason ("stop", "length", ...).
std::string finish_reason(const std::string& engine_reason);

nlohmann::json usage_json(const engine::GenerateResult& r);
// Speculative-decoding statistics of a request (an extension field, "dflash").
nlohmann::json dflash_stats_json(const engine::GenerateResult& r);

// Whole (non-streamed) response.
nlohmann::json response_json(const ParsedRequest& req, const engine::GenerateResult& r, const std::string& id,
                             int64_t created);
// One streamed chunk carrying `text` (and, when non-empty, the finish reason).
nlohmann::json chunk_json(const ParsedRequest& req, const std::string& id, int64_t created, const std::string& text,
                          const std::string& finish, bool first);

}  // namespace dflash::server
