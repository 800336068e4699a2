#include "server/api.h"

#include <cmath>

#include "util/status.h"

namespace dflash::server {

using nlohmann::json;

json ApiError::to_json() const {
  json e = {{"message", message}, {"type", type}};
  e["param"] = param.empty() ? json(nullptr) : json(param);
  e["code"] = code.empty() ? json(nullptr) : json(code);
  return {{"error", e}};
}

namespace {

constexpr size_t kMaxStopStrings = 16;
constexpr size_t kMaxStopLength = 256;

bool fail(ApiError* err, std::string param, std::string msg, int status = 400, std::string code = {}) {
  err->http_status = status;
  err->param = std::move(param);
  err->message = std::move(msg);
  err->code = std::move(code);
  return false;
}

const char* type_name(const json& v) {
  switch (v.type()) {
    case json::value_t::null: return "null";
    case json::value_t::boolean: return "a boolean";
    case json::value_t::string: return "a string";
    case json::value_t::array: return "an array";
    case json::value_t::object: return "an object";
    case json::value_t::number_float: return "a number";
    default: return "an integer";
  }
}

// Optional number in [lo, hi]; null counts as absent.
bool get_number(const json& body, const char* key, double lo, double hi, double* out, ApiError* err) {
  auto it = body.find(key);
  if (it == body.end() || it->is_null()) return true;
  if (!it->is_number())
    return fail(err, key, util::strfmt("'%s' must be a number, got %s", key, type_name(*it)));
  const double v = it->get<double>();
  if (!std::isfinite(v) || v < lo || v > hi)
    return fail(err, key, util::strfmt("'%s' must be between %g and %g, got %g", key, lo, hi, v));
  *out = v;
  return true;
}

bool get_int(const json& body, const char* key, int64_t lo, int64_t hi, int64_t* out, ApiError* err) {
  auto it = body.find(key);
  if (it == body.end() || it->is_null()) return true;
  if (!it->is_number_integer() && !(it->is_number_float() && std::floor(it->get<double>()) == it->get<double>()))
    return fail(err, key, util::strfmt("'%s' must be an integer, got %s", key, type_name(*it)));
  const double d = it->get<double>();
  if (d < static_cast<double>(lo) || d > static_cast<double>(hi))
    return fail(err, key, util::strfmt("'%s' must be between %lld and %lld, got %.0f", key, (long long)lo,
                                       (long long)hi, d));
  *out = it->is_number_unsigned() ? static_cast<int64_t>(it->get<uint64_t>()) : it->get<int64_t>();
  return true;
}

bool get_bool(const json& body, const char* key, bool* out, ApiError* err) {
  auto it = body.find(key);
  if (it == body.end() || it->is_null()) return true;
  if (!it->is_boolean()) return fail(err, key, util::strfmt("'%s' must be true or false, got %s", key, type_name(*it)));
  *out = it->get<bool>();
  return true;
}

// Fields that would silently change the meaning of a response if ignored.
bool reject_unsupported(const json& body, ApiError* err) {
  int64_t n = 1;
  if (!get_int(body, "n", 1, 1 << 20, &n, err)) return false;
  if (n != 1) return fail(err, "n", "only n = 1 is supported (one choice per request)");
  int64_t best_of = 1;
  if (!get_int(body, "best_of", 1, 1 << 20, &best_of, err)) return false;
  if (best_of != 1) return fail(err, "best_of", "only best_of = 1 is supported");
  for (const char* k : {"presence_penalty", "frequency_penalty", "repetition_penalty"}) {
    double v = 0;
    if (!get_number(body, k, -2.0, 2.0, &v, err)) return false;
    const double neutral = std::string(k) == "repetition_penalty" ? 1.0 : 0.0;
    if (body.contains(k) && !body[k].is_null() && v != neutral)
      return fail(err, k, std::string("'") + k + "' is not supported (penalties would make speculative decoding lossy)");
  }
  for (const char* k : {"logprobs", "top_logprobs", "echo", "suffix", "logit_bias"}) {
    auto it = body.find(k);
    if (it == body.end() || it->is_null()) continue;
    const bool off = (it->is_boolean() && !it->get<bool>()) || (it->is_number() && it->get<double>() == 0) ||
                     (it->is_string() && it->get<std::string>().empty()) || (it->is_object() && it->empty());
    if (!off) return fail(err, k, std::string("'") + k + "' is not supported by this server");
  }
  if (auto it = body.find("response_format"); it != body.end() && !it->is_null()) {
    if (!it->is_object() || it->value("type", std::string("text")) != "text")
      return fail(err, "response_format", "only response_format {\"type\": \"text\"} is supported");
  }
  return true;
}

bool parse_stop(const json& body, std::vector<std::string>* stops, ApiError* err) {
  auto it = body.find("stop");
  if (it == body.end() || it->is_null()) return true;
  if (it->is_string()) {
    if (!it->get<std::string>().empty()) stops->push_back(it->get<std::string>());
  } else if (it->is_array()) {
    for (const auto& s : *it) {
      if (!s.is_string()) return fail(err, "stop", "'stop' must be a string or an array of strings");
      if (!s.get<std::string>().empty()) stops->push_back(s.get<std::string>());
    }
  } else {
    return fail(err, "stop", util::strfmt("'stop' must be a string or an array of strings, got %s", type_name(*it)));
  }
  if (stops->size() > kMaxStopStrings)
    return fail(err, "stop", util::strfmt("at most %zu stop strings are allowed", kMaxStopStrings));
  for (const auto& s : *stops)
    if (s.size() > kMaxStopLength)
      return fail(err, "stop", util::strfmt("stop strings are limited to %zu bytes", kMaxStopLength));
  return true;
}

// A message's content: a string, null, or an array of {"type": "text", "text": ...} parts.
bool message_text(const json& m, size_t i, std::string* out, ApiError* err) {
  const std::string param = util::strfmt("messages[%zu].content", i);
  auto it = m.find("content");
  if (it == m.end() || it->is_null()) return true;
  if (it->is_string()) {
    *out = it->get<std::string>();
    return true;
  }
  if (!it->is_array()) return fail(err, param, "content must be a string or an array of text parts, got " + std::string(type_name(*it)));
  for (const auto& part : *it) {
    if (!part.is_object() || part.value("type", std::string()) != "text" || !part.contains("text") ||
        !part["text"].is_string())
      return fail(err, param, "only text content parts ({\"type\": \"text\", \"text\": ...}) are supported");
    *out += part["text"].get<std::string>();
  }
  return true;
}

bool build_chat_prompt(const json& body, const engine::Engine& eng, std::vector<int32_t>* ids, ApiError* err) {
  auto it = body.find("messages");
  if (it == body.end()) return fail(err, "messages", "'messages' is required");
  if (!it->is_array() || it->empty()) return fail(err, "messages", "'messages' must be a non-empty array");
  nlohmann::ordered_json msgs = nlohmann::ordered_json::array();
  for (size_t i = 0; i < it->size(); ++i) {
    const json& m = (*it)[i];
    if (!m.is_object()) return fail(err, util::strfmt("messages[%zu]", i), "each message must be an object");
    auto role = m.find("role");
    if (role == m.end() || !role->is_string())
      return fail(err, util::strfmt("messages[%zu].role", i), "each message needs a string 'role'");
    const std::string r = role->get<std::string>();
    if (r != "system" && r != "user" && r != "assistant" && r != "tool" && r != "developer")
      return fail(err, util::strfmt("messages[%zu].role", i),
                  "role must be one of system, developer, user, assistant, tool; got '" + r + "'");
    std::string text;
    if (!message_text(m, i, &text, err)) return false;
    // The template sees the message as sent (tool_calls, reasoning_content, ...), with text content.
    nlohmann::ordered_json om = nlohmann::ordered_json::parse(m.dump());
    om["role"] = r == "developer" ? "system" : r;
    om["content"] = text;
    msgs.push_back(std::move(om));
  }
  tokenizer::ChatOptions co;
  co.add_generation_prompt = true;
  if (auto t = body.find("tools"); t != body.end() && !t->is_null()) {
    if (!t->is_array()) return fail(err, "tools", "'tools' must be an array");
    co.tools = nlohmann::ordered_json::parse(t->dump());
  }
  if (auto k = body.find("chat_template_kwargs"); k != body.end() && !k->is_null()) {
    if (!k->is_object()) return fail(err, "chat_template_kwargs", "'chat_template_kwargs' must be an object");
    co.extra_context = nlohmann::ordered_json::parse(k->dump());
  }
  auto rendered = eng.render_chat(msgs, co);
  if (!rendered.is_ok()) return fail(err, "messages", "chat template: " + rendered.status().message());
  auto toks = eng.tokenize(*rendered, /*parse_special=*/true);
  if (!toks.is_ok()) return fail(err, "messages", toks.status().message());
  *ids = std::move(*toks);
  return true;
}

bool build_completion_prompt(const json& body, const engine::Engine& eng, std::vector<int32_t>* ids, ApiError* err) {
  auto it = body.find("prompt");
  if (it == body.end() || it->is_null()) return fail(err, "prompt", "'prompt' is required");
  const json* p = &*it;
  if (p->is_array() && p->size() == 1 && (*p)[0].is_string()) p = &(*p)[0];  // ["text"]
  if (p->is_string()) {
    auto toks = eng.tokenize(p->get<std::string>(), /*parse_special=*/true);
    if (!toks.is_ok()) return fail(err, "prompt", toks.status().message());
    *ids = std::move(*toks);
  } else if (p->is_array() && !p->empty() && (*p)[0].is_number_integer()) {
    for (const auto& v : *p) {
      if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() >= eng.n_vocab())
        return fail(err, "prompt", util::strfmt("token ids must be integers in [0, %lld)", (long long)eng.n_vocab()));
      ids->push_back(static_cast<int32_t>(v.get<int64_t>()));
    }
  } else {
    return fail(err, "prompt", "'prompt' must be a string, an array with one string, or an array of token ids "
                               "(batches of prompts are not supported)");
  }
  if (ids->empty()) return fail(err, "prompt", "the prompt is empty");
  return true;
}

}  // namespace

bool parse_request(Endpoint ep, const json& body, const engine::Engine& eng, const RequestDefaults& d,
                   ParsedRequest* out, ApiError* err) {
  if (!body.is_object()) return fail(err, "", "the request body must be a JSON object");
  if (!reject_unsupported(body, err)) return false;
  ParsedRequest r;
  r.endpoint = ep;
  if (auto m = body.find("model"); m != body.end() && !m->is_null()) {
    if (!m->is_string()) return fail(err, "model", "'model' must be a string");
    r.model = m->get<std::string>();
  }
  spec::SamplingParams s = d.sampling;
  double temp = s.temperature, top_p = s.top_p, min_p = s.min_p;
  int64_t top_k = s.top_k, seed = static_cast<int64_t>(s.seed & 0x7fffffffffffffffULL);
  int64_t max_tokens = d.max_tokens;
  if (!get_number(body, "temperature", 0.0, 2.0, &temp, err)) return false;
  if (!get_number(body, "top_p", 0.0, 1.0, &top_p, err)) return false;
  if (!get_number(body, "min_p", 0.0, 1.0, &min_p, err)) return false;
  if (!get_int(body, "top_k", 0, 1 << 30, &top_k, err)) return false;
  if (!get_int(body, "seed", INT64_MIN, INT64_MAX, &seed, err)) return false;
  if (!get_int(body, "max_tokens", 0, 1 << 30, &max_tokens, err)) return false;
  if (!get_int(body, "max_completion_tokens", 0, 1 << 30, &max_tokens, err)) return false;
  if (top_p <= 0.0) return fail(err, "top_p", "'top_p' must be greater than 0");
  s.temperature = static_cast<float>(temp);
  s.top_p = static_cast<float>(top_p);
  s.min_p = static_cast<float>(min_p);
  s.top_k = static_cast<int>(top_k);
  s.seed = static_cast<uint64_t>(seed);
  if (!get_bool(body, "stream", &r.stream, err)) return false;
  if (auto so = body.find("stream_options"); so != body.end() && !so->is_null()) {
    if (!so->is_object()) return fail(err, "stream_options", "'stream_options' must be an object");
    if (!get_bool(*so, "include_usage", &r.include_usage, err)) return false;
  }
  r.gen.speculative = d.speculative;
  r.adaptive = d.adaptive;
  int64_t block = d.block_size;
  // Extensions: per-request control of speculative decoding.
  if (!get_bool(body, "speculative", &r.gen.speculative, err)) return false;
  if (!get_bool(body, "adaptive", &r.adaptive, err)) return false;
  if (!get_int(body, "block_size", 0, 64, &block, err)) return false;
  int64_t lookup = d.lookup;
  if (!get_int(body, "lookup", 0, 8, &lookup, err)) return false;
  r.gen.decode.lookup_ngram = static_cast<int>(lookup);
  r.gen.decode.lookup_hybrid = d.lookup_hybrid;
  if (!get_bool(body, "lookup_hybrid", &r.gen.decode.lookup_hybrid, err)) return false;
  r.gen.decode.draft_min_confidence = d.draft_min_confidence;
  if (!get_number(body, "draft_min_confidence", 0.0, 1.0, &r.gen.decode.draft_min_confidence, err)) return false;
  if (!parse_stop(body, &r.gen.stop_strings, err)) return false;
  bool ignore_eos = false;
  if (!get_bool(body, "ignore_eos", &ignore_eos, err)) return false;
  r.gen.stop_at_eos = !ignore_eos;
  std::vector<int32_t> ids;
  if (ep == Endpoint::kChatCompletions ? !build_chat_prompt(body, eng, &ids, err)
                                       : !build_completion_prompt(body, eng, &ids, err))
    return false;
  const int64_t n_ctx = eng.options().n_ctx;
  if (static_cast<int64_t>(ids.size()) + 1 > n_ctx)
    return fail(err, ep == Endpoint::kChatCompletions ? "messages" : "prompt",
                util::strfmt("the prompt has %zu tokens but the context holds %lld; shorten it or start the server "
                             "with a larger --ctx-size",
                             ids.size(), (long long)n_ctx),
                400, "context_length_exceeded");
  // Never past the context: what does not fit ends with finish_reason "length".
  max_tokens = std::min<int64_t>(max_tokens, n_ctx - static_cast<int64_t>(ids.size()));
  r.gen.prompt = std::move(ids);
  r.gen.decode.max_new_tokens = static_cast<int>(max_tokens);
  r.gen.decode.sampling = s;
  r.gen.decode.block_size = static_cast<int>(block);
  *out = std::move(r);
  return true;
}

std::string finish_reason(const std::string& engine_reason) {
  if (engine_reason == "stop") return "stop";
  return "length";  // "length" and "context": the token budget or the context ran out
}

json usage_json(const engine::GenerateResult& r) {
  const int64_t completion = static_cast<int64_t>(r.tokens.size());
  return {{"prompt_tokens", r.stats.n_prompt},
          {"completion_tokens", completion},
          {"total_tokens", r.stats.n_prompt + completion}};
}

json dflash_stats_json(const engine::GenerateResult& r) {
  const auto& s = r.stats;
  return {{"drafted", s.n_drafted},  {"accepted", s.n_accepted},       {"rounds", s.n_rounds},
          {"tau", s.tau()},          {"acceptance", s.acceptance()},   {"decode_tok_s", s.decode_tok_s()},
          {"prefill_ms", s.t_prefill_s * 1e3}, {"decode_ms", s.t_decode_s * 1e3}};
}

json response_json(const ParsedRequest& req, const engine::GenerateResult& r, const std::string& id,
                   int64_t created) {
  json choice = {{"index", 0}, {"logprobs", nullptr}, {"finish_reason", finish_reason(r.finish_reason)}};
  json out = {{"id", id}, {"created", created}, {"model", req.model}};
  if (req.endpoint == Endpoint::kChatCompletions) {
    out["object"] = "chat.completion";
    choice["message"] = {{"role", "assistant"}, {"content", r.text}};
  } else {
    out["object"] = "text_completion";
    choice["text"] = r.text;
  }
  out["choices"] = json::array({choice});
  out["usage"] = usage_json(r);
  out["dflash"] = dflash_stats_json(r);
  return out;
}

json chunk_json(const ParsedRequest& req, const std::string& id, int64_t created, const std::string& text,
                const std::string& finish, bool first) {
  json choice = {{"index", 0}, {"logprobs", nullptr}};
  choice["finish_reason"] = finish.empty() ? json(nullptr) : json(finish);
  json out = {{"id", id}, {"created", created}, {"model", req.model}};
  if (req.endpoint == Endpoint::kChatCompletions) {
    out["object"] = "chat.completion.chunk";
    json delta = json::object();
    if (first) delta["role"] = "assistant";
    if (!text.empty() || (first && finish.empty())) delta["content"] = text;
    choice["delta"] = delta;
  } else {
    out["object"] = "text_completion";
    choice["text"] = text;
  }
  out["choices"] = json::array({choice});
  return out;
}

}  // namespace dflash::server
