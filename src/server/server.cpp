#include "server/server.h"

#include <httplib.h>

#include <chrono>
#include <ctime>
#include <map>

#include "spec/adaptive.h"
#include "util/log.h"

namespace dflash::server {

using nlohmann::json;

struct Server::Impl {
  engine::Engine& eng;
  ServerOptions opts;
  httplib::Server http;
  std::mutex engine_mu;         // one generation at a time
  std::atomic<int> waiting{0};  // requests queued for the engine (incl. the running one)
  std::atomic<uint64_t> next_id{1};
  // Counters for /metrics.
  std::atomic<uint64_t> n_requests{0}, n_errors{0}, n_prompt_tokens{0}, n_generated{0}, n_drafted{0},
      n_accepted{0}, n_rounds{0}, n_cancelled{0};
  std::atomic<uint64_t> decode_us{0};
  std::atomic<uint64_t> adaptive_rounds{0};
  int64_t started = std::time(nullptr);
  // Adaptive block policies, one per block-size cap and drafting method, kept across requests (under engine_mu): the
  // verify costs are the machine's and the acceptance profile follows the text, so a new request
  // starts from what the previous ones measured instead of paying the probe rounds again.
  // (cap, drafting mode: 0 drafter, 1 lookup, 2 DFlash + lookup; 3 / 4 the full-match lookup rounds of modes
  // 1 / 2, DecodeOptions::lookup_policy): each mode has its own costs.
  std::map<std::pair<int, int>, std::unique_ptr<spec::AdaptiveBlockPolicy>> policies;

  Impl(engine::Engine& e, ServerOptions o) : eng(e), opts(std::move(o)) {}

  static void send_json(httplib::Response& res, int status, const json& body) {
    res.status = status;
    res.set_content(body.dump(), "application/json");
  }
  void send_error(httplib::Response& res, const ApiError& e) {
    ++n_errors;
    send_json(res, e.http_status, e.to_json());
  }

  void account(const engine::GenerateResult& r) {
    n_prompt_tokens += static_cast<uint64_t>(r.stats.n_prompt);
    n_generated += r.tokens.size();
    n_drafted += static_cast<uint64_t>(r.stats.n_drafted);
    n_accepted += static_cast<uint64_t>(r.stats.n_accepted);
    n_rounds += static_cast<uint64_t>(r.stats.n_rounds);
    decode_us += static_cast<uint64_t>(r.stats.t_decode_s * 1e6);
    if (r.finish_reason == "cancelled") ++n_cancelled;
  }

  // Holds a queue slot for the lifetime of a request that will use the engine.
  struct Slot {
    Impl* s;
    bool ok;
    explicit Slot(Impl* impl) : s(impl), ok(++impl->waiting <= impl->opts.max_queue + 1) {}
    ~Slot() { --s->waiting; }
  };

  void generate(Endpoint ep, const httplib::Request& req, httplib::Response& res) {
    ++n_requests;
    json body = json::parse(req.body, nullptr, /*allow_exceptions=*/false);
    if (body.is_discarded()) {
      // Re-parse for the position of the error (nlohmann reports it only through the exception).
      std::string why = "invalid JSON";
      try {
        json again = json::parse(req.body);
        (void)again;
      } catch (const json::parse_error& e) {
        why = std::string("invalid JSON: ") + e.what();
      }
      return send_error(res, ApiError{400, why, "invalid_request_error", "", ""});
    }
    auto pr = std::make_shared<ParsedRequest>();
    ApiError err;
    if (!parse_request(ep, body, eng, opts.defaults, pr.get(), &err)) return send_error(res, err);
    if (pr->model.empty()) pr->model = opts.model_name;
    auto slot = std::make_shared<Slot>(this);
    if (!slot->ok)
      return send_error(res, ApiError{503, util::strfmt("server busy: %d requests are already waiting; retry later",
                                                       opts.max_queue),
                                      "server_error", "", "server_busy"});
    const std::string id = (ep == Endpoint::kChatCompletions ? "chatcmpl-" : "cmpl-") + std::to_string(next_id++);
    const int64_t created = std::time(nullptr);
    if (!pr->stream) {
      std::lock_guard<std::mutex> lock(engine_mu);
      auto r = run(*pr, nullptr);
      if (!r.is_ok()) return send_error(res, ApiError{500, r.status().message(), "server_error", "", ""});
      return send_json(res, 200, response_json(*pr, *r, id, created));
    }
    res.set_header("Cache-Control", "no-cache");
    res.set_chunked_content_provider(
        "text/event-stream", [this, pr, slot, id, created](size_t, httplib::DataSink& sink) {
          auto send = [&sink](const json& j) {
            const std::string line = "data: " + j.dump() + "\n\n";
            return sink.write(line.data(), line.size());
          };
          std::lock_guard<std::mutex> lock(engine_mu);
          bool first = true, client_gone = false;
          auto r = run(*pr, [&](std::string_view text) {
            if (!send(chunk_json(*pr, id, created, std::string(text), "", first))) {
              client_gone = true;
              return false;  // cancels the generation
            }
            first = false;
            return true;
          });
          if (client_gone) return false;
          if (!r.is_ok()) {
            ++n_errors;
            send(ApiError{500, r.status().message(), "server_error", "", ""}.to_json());
          } else {
            json last = chunk_json(*pr, id, created, "", finish_reason(r->finish_reason), first);
            last["dflash"] = dflash_stats_json(*r);
            send(last);
            if (pr->include_usage) {
              json u = chunk_json(*pr, id, created, "", "", false);
              u["choices"] = json::array();
              u["usage"] = usage_json(*r);
              send(u);
            }
          }
          const std::string done = "data: [DONE]\n\n";
          sink.write(done.data(), done.size());
          sink.done();
          return true;
        });
  }

  util::Result<engine::GenerateResult> run(const ParsedRequest& pr, const engine::TextCallback& cb) {
    engine::GenerateRequest g = pr.gen;
    // Called with engine_mu held.
    spec::AdaptiveBlockPolicy* policy = nullptr;
    const int cap = g.speculative ? spec::max_block_size(g.decode, eng.drafter()) : 1;
    if (pr.adaptive && cap > 1) {
      const int mode = g.decode.lookup_ngram > 0 ? (g.decode.lookup_hybrid && eng.drafter() ? 2 : 1) : 0;
      auto& slot = policies[{cap, mode}];
      if (!slot) slot = std::make_unique<spec::AdaptiveBlockPolicy>(cap);
      policy = slot.get();
      g.decode.policy = policy;
      if (mode > 0) {  // lookup: rounds with a full n-gram match have a policy of their own
        auto& lslot = policies[{cap, mode + 2}];
        if (!lslot) lslot = std::make_unique<spec::AdaptiveBlockPolicy>(cap);
        g.decode.lookup_policy = lslot.get();
      }
    }
    auto r = eng.generate(g, cb);
    if (r.is_ok()) account(*r);
    if (policy) {
      uint64_t total = 0;
      for (const auto& [cap, p] : policies) total += static_cast<uint64_t>(p->rounds());
      adaptive_rounds = total;
    }
    return r;
  }

  void setup() {
    http.set_payload_max_length(opts.max_body_bytes);
    http.new_task_queue = [n = opts.n_http_threads] { return new httplib::ThreadPool(static_cast<size_t>(n)); };
    http.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
      if (opts.api_key.empty() || req.path == "/health") return httplib::Server::HandlerResponse::Unhandled;
      if (req.get_header_value("Authorization") == "Bearer " + opts.api_key)
        return httplib::Server::HandlerResponse::Unhandled;
      send_error(res, ApiError{401, "missing or wrong API key (send 'Authorization: Bearer <key>')",
                               "authentication_error", "", "invalid_api_key"});
      return httplib::Server::HandlerResponse::Handled;
    });
    http.set_error_handler(httplib::Server::HandlerWithResponse([this](const httplib::Request& req,
                                                                      httplib::Response& res) {
      if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;  // already a JSON error
      ApiError e;
      e.http_status = res.status;
      if (res.status == 404) {
        e.message = "no such endpoint: " + req.method + " " + req.path;
      } else if (res.status == 413) {
        e.message = util::strfmt("request body larger than %zu bytes", opts.max_body_bytes);
      } else {
        e.message = util::strfmt("HTTP %d", res.status);
      }
      send_error(res, e);
      return httplib::Server::HandlerResponse::Handled;
    }));
    http.set_exception_handler([this](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
      std::string what = "internal error";
      try {
        if (ep) std::rethrow_exception(ep);
      } catch (const std::exception& e) {
        what = std::string("internal error: ") + e.what();
      } catch (...) {
      }
      send_error(res, ApiError{500, what, "server_error", "", ""});
    });
    http.Get("/health", [this](const httplib::Request&, httplib::Response& res) {
      send_json(res, 200, {{"status", "ok"}, {"queued", waiting.load()}});
    });
    http.Get("/v1/models", [this](const httplib::Request&, httplib::Response& res) {
      json m = {{"id", opts.model_name}, {"object", "model"}, {"created", started}, {"owned_by", "dflash.cpp"}};
      m["meta"] = {{"n_ctx", eng.options().n_ctx},
                   {"n_vocab", eng.n_vocab()},
                   {"target", eng.options().target_path},
                   {"draft", eng.options().draft_path},
                   {"block_size", eng.drafter() ? eng.drafter()->block_size() : 1}};
      send_json(res, 200, {{"object", "list"}, {"data", json::array({m})}});
    });
    http.Post("/v1/completions", [this](const httplib::Request& q, httplib::Response& r) {
      generate(Endpoint::kCompletions, q, r);
    });
    http.Post("/v1/chat/completions", [this](const httplib::Request& q, httplib::Response& r) {
      generate(Endpoint::kChatCompletions, q, r);
    });
    // Aliases without the /v1 prefix, as llama.cpp's server has them.
    http.Post("/completions", [this](const httplib::Request& q, httplib::Response& r) {
      generate(Endpoint::kCompletions, q, r);
    });
    http.Post("/chat/completions", [this](const httplib::Request& q, httplib::Response& r) {
      generate(Endpoint::kChatCompletions, q, r);
    });
    http.Post("/tokenize", [this](const httplib::Request& q, httplib::Response& res) {
      json b = json::parse(q.body, nullptr, false);
      if (b.is_discarded() || !b.is_object() || !b.contains("content") || !b["content"].is_string())
        return send_error(res, ApiError{400, "expected {\"content\": \"text\"}", "invalid_request_error", "content", ""});
      auto ids = eng.tokenize(b["content"].get<std::string>(), b.value("parse_special", true));
      if (!ids.is_ok()) return send_error(res, ApiError{400, ids.status().message(), "invalid_request_error", "content", ""});
      send_json(res, 200, {{"tokens", *ids}});
    });
    http.Post("/detokenize", [this](const httplib::Request& q, httplib::Response& res) {
      json b = json::parse(q.body, nullptr, false);
      if (b.is_discarded() || !b.is_object() || !b.contains("tokens") || !b["tokens"].is_array())
        return send_error(res, ApiError{400, "expected {\"tokens\": [ids]}", "invalid_request_error", "tokens", ""});
      if (!eng.tokenizer())
        return send_error(res, ApiError{400, "this model has no tokenizer", "invalid_request_error", "", ""});
      std::vector<int32_t> ids;
      for (const auto& v : b["tokens"]) {
        if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() >= eng.n_vocab())
          return send_error(res, ApiError{400, util::strfmt("token ids must be integers in [0, %lld)",
                                                            (long long)eng.n_vocab()),
                                          "invalid_request_error", "tokens", ""});
        ids.push_back(static_cast<int32_t>(v.get<int64_t>()));
      }
      auto text = eng.tokenizer()->decode(ids);
      if (!text.is_ok()) return send_error(res, ApiError{400, text.status().message(), "invalid_request_error", "tokens", ""});
      send_json(res, 200, {{"content", *text}});
    });
    http.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
      std::string m;
      auto line = [&m](const char* name, const char* help, const char* type, double v) {
        m += util::strfmt("# HELP %s %s\n# TYPE %s %s\n%s %.17g\n", name, help, name, type, name, v);
      };
      line("dflash_requests_total", "Generation requests received", "counter", static_cast<double>(n_requests));
      line("dflash_request_errors_total", "Requests answered with an error", "counter", static_cast<double>(n_errors));
      line("dflash_requests_cancelled_total", "Streams cancelled by the client", "counter",
           static_cast<double>(n_cancelled));
      line("dflash_prompt_tokens_total", "Prompt tokens processed", "counter", static_cast<double>(n_prompt_tokens));
      line("dflash_tokens_generated_total", "Tokens generated", "counter", static_cast<double>(n_generated));
      line("dflash_draft_tokens_total", "Draft tokens proposed", "counter", static_cast<double>(n_drafted));
      line("dflash_draft_tokens_accepted_total", "Draft tokens accepted", "counter", static_cast<double>(n_accepted));
      line("dflash_verify_rounds_total", "Target verify passes", "counter", static_cast<double>(n_rounds));
      line("dflash_decode_seconds_total", "Time spent decoding", "counter", static_cast<double>(decode_us) * 1e-6);
      line("dflash_requests_queued", "Requests waiting for or using the engine", "gauge", waiting.load());
      line("dflash_adaptive_policy_rounds", "Rounds the adaptive block policies have observed (kept across requests)",
           "gauge", static_cast<double>(adaptive_rounds));
      res.set_content(m, "text/plain; version=0.0.4");
    });
  }
};

Server::Server(engine::Engine& engine, ServerOptions opts) : impl_(std::make_unique<Impl>(engine, std::move(opts))) {
  impl_->setup();
}

Server::~Server() { stop(); }

util::Status Server::bind() {
  const auto& o = impl_->opts;
  if (o.port == 0) {
    port_ = impl_->http.bind_to_any_port(o.host);
    if (port_ <= 0) return util::io_error("cannot bind a port on " + o.host);
  } else {
    if (!impl_->http.bind_to_port(o.host, o.port))
      return util::io_error(util::strfmt("cannot listen on %s:%d (in use, or not an address of this machine); "
                                            "choose another --host/--port",
                                            o.host.c_str(), o.port));
    port_ = o.port;
  }
  return util::Status();
}

util::Status Server::listen() {
  if (port_ == 0) DFLASH_RETURN_IF_ERROR(bind());
  if (!impl_->http.listen_after_bind()) return util::io_error("the HTTP server stopped with an error");
  return util::Status();
}

void Server::stop() {
  if (impl_ && impl_->http.is_running()) impl_->http.stop();
}

}  // namespace dflash::server
