// The OpenAI-compatible server on the tiny reference pair: request validation (api.h), and the real
// HTTP server in-process on a free port — JSON and SSE responses, errors, auth, queue limit and
// client disconnects.
#include "server/server.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <sstream>
#include <thread>

namespace dflash::server {
namespace {

using nlohmann::json;

const std::string kData = DFLASH_TEST_DATA_DIR;

engine::Engine& shared_engine() {
  static std::unique_ptr<engine::Engine> eng = [] {
    engine::EngineOptions o;
    o.target_path = kData + "/gguf/qwen35-dense-a.gguf";
    o.draft_path = kData + "/gguf/dflash-b8-l3.gguf";
    o.n_ctx = 256;
    o.threads = 1;
    auto e = engine::Engine::load(o);
    EXPECT_TRUE(e.is_ok()) << e.status().to_string();
    return e.is_ok() ? std::move(*e) : nullptr;
  }();
  return *eng;
}

ApiError parse_error(Endpoint ep, const std::string& body) {
  ParsedRequest r;
  ApiError err;
  EXPECT_FALSE(parse_request(ep, json::parse(body), shared_engine(), RequestDefaults{}, &r, &err)) << body;
  return err;
}

TEST(ServerApi, ParsesCompletionFieldsAndDefaults) {
  ParsedRequest r;
  ApiError err;
  RequestDefaults d;
  d.max_tokens = 33;
  ASSERT_TRUE(parse_request(Endpoint::kCompletions, json::parse(R"({"prompt": "def f(x):"})"), shared_engine(), d, &r,
                            &err))
      << err.message;
  EXPECT_EQ(r.gen.decode.max_new_tokens, 33);
  EXPECT_TRUE(r.gen.decode.sampling.greedy());
  EXPECT_TRUE(r.gen.speculative);
  EXPECT_FALSE(r.stream);
  EXPECT_EQ(r.gen.prompt, *shared_engine().tokenize("def f(x):"));
  EXPECT_DOUBLE_EQ(r.gen.decode.draft_min_confidence, d.draft_min_confidence);
  ASSERT_TRUE(parse_request(Endpoint::kCompletions,
                            json::parse(R"({"prompt": [1, 2, 3], "max_tokens": 5, "temperature": 0.7, "top_p": 0.9,
                                "top_k": 20, "min_p": 0.05, "seed": 9, "stop": ["\n\n", "END"], "stream": true,
                                "stream_options": {"include_usage": true}, "speculative": false, "block_size": 4, "draft_min_confidence": 0.3,
                                "n": 1, "presence_penalty": 0, "logprobs": null, "user": "ignored"})"),
                            shared_engine(), d, &r, &err))
      << err.message;
  EXPECT_EQ(r.gen.prompt, (std::vector<int32_t>{1, 2, 3}));
  EXPECT_EQ(r.gen.decode.max_new_tokens, 5);
  EXPECT_FLOAT_EQ(r.gen.decode.sampling.temperature, 0.7f);
  EXPECT_FLOAT_EQ(r.gen.decode.sampling.top_p, 0.9f);
  EXPECT_EQ(r.gen.decode.sampling.top_k, 20);
  EXPECT_EQ(r.gen.decode.sampling.seed, 9u);
  EXPECT_EQ(r.gen.stop_strings, (std::vector<std::string>{"\n\n", "END"}));
  EXPECT_TRUE(r.stream && r.include_usage);
  EXPECT_FALSE(r.gen.speculative);
  EXPECT_EQ(r.gen.decode.block_size, 4);
  EXPECT_DOUBLE_EQ(r.gen.decode.draft_min_confidence, 0.3);
}

TEST(ServerApi, MaxTokensNeverRunPastTheContext) {
  ParsedRequest r;
  ApiError err;
  ASSERT_TRUE(parse_request(Endpoint::kCompletions, json::parse(R"({"prompt": [1, 2, 3, 4], "max_tokens": 100000})"),
                            shared_engine(), RequestDefaults{}, &r, &err));
  EXPECT_EQ(r.gen.decode.max_new_tokens, 256 - 4);
}

TEST(ServerApi, BadFieldsAreNamed) {
  const Endpoint C = Endpoint::kCompletions, H = Endpoint::kChatCompletions;
  struct Case {
    Endpoint ep;
    const char* body;
    const char* param;
    const char* words;
  } cases[] = {
      {C, R"({})", "prompt", "required"},
      {C, R"({"prompt": 5})", "prompt", "must be a string"},
      {C, R"({"prompt": ["a", "b"]})", "prompt", "batches"},
      {C, R"({"prompt": [1, 99999]})", "prompt", "token ids"},
      {C, R"({"prompt": "x", "temperature": "hot"})", "temperature", "must be a number"},
      {C, R"({"prompt": "x", "temperature": 3})", "temperature", "between"},
      {C, R"({"prompt": "x", "top_p": 0})", "top_p", "greater than 0"},
      {C, R"({"prompt": "x", "max_tokens": 1.5})", "max_tokens", "integer"},
      {C, R"({"prompt": "x", "max_tokens": -1})", "max_tokens", "between"},
      {C, R"({"prompt": "x", "n": 2})", "n", "n = 1"},
      {C, R"({"prompt": "x", "logprobs": 5})", "logprobs", "not supported"},
      {C, R"({"prompt": "x", "frequency_penalty": 0.5})", "frequency_penalty", "not supported"},
      {C, R"({"prompt": "x", "stop": 7})", "stop", "string"},
      {C, R"({"prompt": "x", "stop": ["a","b","c","d","e","f","g","h","i","j","k","l","m","n","o","p","q"]})", "stop",
       "at most"},
      {C, R"({"prompt": "x", "stream": "yes"})", "stream", "true or false"},
      {C, R"({"prompt": "x", "draft_min_confidence": 2})", "draft_min_confidence", "between"},
      {C, R"({"prompt": "x", "response_format": {"type": "json_object"}})", "response_format", "text"},
      {H, R"({})", "messages", "required"},
      {H, R"({"messages": []})", "messages", "non-empty"},
      {H, R"({"messages": [{"content": "hi"}]})", "messages[0].role", "role"},
      {H, R"({"messages": [{"role": "wizard", "content": "hi"}]})", "messages[0].role", "one of"},
      {H, R"({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]})",
       "messages[0].content", "text content"},
      {H, R"({"messages": [{"role": "user", "content": "hi"}], "tools": 3})", "tools", "array"},
  };
  for (const Case& c : cases) {
    ApiError e = parse_error(c.ep, c.body);
    EXPECT_EQ(e.http_status, 400) << c.body;
    EXPECT_EQ(e.param, c.param) << c.body;
    EXPECT_NE(e.message.find(c.words), std::string::npos) << c.body << " → " << e.message;
    EXPECT_EQ(e.to_json()["error"]["param"], c.param);
  }
}

TEST(ServerApi, PromptLongerThanTheContextIsAClearError) {
  std::string long_prompt = "[";
  for (int i = 0; i < 300; ++i) long_prompt += (i ? ",7" : "7");
  ApiError e = parse_error(Endpoint::kCompletions, R"({"prompt": )" + long_prompt + "]}");
  EXPECT_EQ(e.code, "context_length_exceeded");
  EXPECT_NE(e.message.find("300 tokens"), std::string::npos) << e.message;
  EXPECT_NE(e.message.find("--ctx-size"), std::string::npos) << e.message;
}

TEST(ServerApi, ChatRendersThroughTheTemplate) {
  ParsedRequest r;
  ApiError err;
  const char* body = R"({"messages": [{"role": "system", "content": "Be brief."},
                                      {"role": "user", "content": [{"type": "text", "text": "Hello"}]}],
                         "chat_template_kwargs": {"enable_thinking": false}})";
  ASSERT_TRUE(parse_request(Endpoint::kChatCompletions, json::parse(body), shared_engine(), RequestDefaults{}, &r,
                            &err))
      << err.message;
  nlohmann::ordered_json msgs = nlohmann::ordered_json::array();
  msgs.push_back({{"role", "system"}, {"content", "Be brief."}});
  msgs.push_back({{"role", "user"}, {"content", "Hello"}});
  tokenizer::ChatOptions co;
  co.extra_context = {{"enable_thinking", false}};
  auto text = shared_engine().render_chat(msgs, co);
  ASSERT_TRUE(text.is_ok());
  EXPECT_EQ(r.gen.prompt, *shared_engine().tokenize(*text, true));
}

// ---- the HTTP server ----

class LiveServer {
 public:
  explicit LiveServer(ServerOptions o = {}) {
    o.port = 0;
    o.model_name = "tiny";
    srv_ = std::make_unique<Server>(shared_engine(), o);
    EXPECT_TRUE(srv_->bind().is_ok());
    th_ = std::thread([this] { (void)srv_->listen(); });
    // listen() may not have started accepting yet; the kernel queues connections after bind().
  }
  ~LiveServer() {
    srv_->stop();
    th_.join();
  }
  int port() const { return srv_->port(); }
  httplib::Client client() const {
    httplib::Client c("127.0.0.1", port());
    c.set_read_timeout(120, 0);
    return c;
  }

 private:
  std::unique_ptr<Server> srv_;
  std::thread th_;
};

std::vector<json> sse_events(const std::string& body, bool* done) {
  std::vector<json> out;
  *done = false;
  std::istringstream in(body);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("data: ", 0) != 0) continue;
    std::string payload = line.substr(6);
    if (payload == "[DONE]") {
      *done = true;
      continue;
    }
    out.push_back(json::parse(payload));
  }
  return out;
}

TEST(ServerHttp, CompletionEqualsTheEngineAndStreamsTheSameText) {
  LiveServer s;
  auto c = s.client();
  auto h = c.Get("/health");
  ASSERT_TRUE(h);
  EXPECT_EQ(h->status, 200);
  auto models = c.Get("/v1/models");
  ASSERT_TRUE(models);
  EXPECT_EQ(json::parse(models->body)["data"][0]["id"], "tiny");

  const std::string body = R"({"prompt": "def add(a, b):", "max_tokens": 24, "ignore_eos": true})";
  auto r = c.Post("/v1/completions", body, "application/json");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  json j = json::parse(r->body);
  EXPECT_EQ(j["object"], "text_completion");
  EXPECT_EQ(j["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(j["usage"]["completion_tokens"], 24);
  EXPECT_TRUE(j["dflash"].contains("tau"));
  // Same as the engine called directly (plain decoding: greedy output is the reference).
  engine::GenerateRequest g;
  g.prompt = *shared_engine().tokenize("def add(a, b):");
  g.decode.max_new_tokens = 24;
  g.stop_at_eos = false;
  g.speculative = false;
  auto direct = shared_engine().generate(g);
  ASSERT_TRUE(direct.is_ok());
  EXPECT_EQ(j["choices"][0]["text"].get<std::string>(), direct->text);

  auto st = c.Post("/v1/completions", body.substr(0, body.size() - 1) + R"(, "stream": true})", "application/json");
  ASSERT_TRUE(st);
  ASSERT_EQ(st->status, 200);
  EXPECT_EQ(st->get_header_value("Content-Type"), "text/event-stream");
  bool done = false;
  auto ev = sse_events(st->body, &done);
  EXPECT_TRUE(done) << "stream must end with data: [DONE]";
  ASSERT_GE(ev.size(), 2u);
  std::string streamed;
  for (const auto& e : ev) streamed += e["choices"][0]["text"].get<std::string>();
  EXPECT_EQ(streamed, direct->text);
  EXPECT_EQ(ev.back()["choices"][0]["finish_reason"], "length");
  for (size_t i = 0; i + 1 < ev.size(); ++i) EXPECT_TRUE(ev[i]["choices"][0]["finish_reason"].is_null());
}

TEST(ServerHttp, ChatStreamHasRoleFirstAndUsageLast) {
  LiveServer s;
  auto c = s.client();
  const std::string body = R"({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 10, "ignore_eos": true,
                               "stream": true, "stream_options": {"include_usage": true}})";
  auto st = c.Post("/v1/chat/completions", body, "application/json");
  ASSERT_TRUE(st);
  ASSERT_EQ(st->status, 200) << st->body;
  bool done = false;
  auto ev = sse_events(st->body, &done);
  EXPECT_TRUE(done);
  ASSERT_GE(ev.size(), 3u);
  EXPECT_EQ(ev.front()["object"], "chat.completion.chunk");
  EXPECT_EQ(ev.front()["choices"][0]["delta"]["role"], "assistant");
  EXPECT_TRUE(ev.back()["choices"].empty());
  EXPECT_EQ(ev.back()["usage"]["completion_tokens"], 10);
  std::string streamed;
  for (const auto& e : ev)
    if (!e["choices"].empty() && e["choices"][0]["delta"].contains("content"))
      streamed += e["choices"][0]["delta"]["content"].get<std::string>();
  auto whole = c.Post("/v1/chat/completions", R"({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 10,
                      "ignore_eos": true})", "application/json");
  ASSERT_TRUE(whole);
  json j = json::parse(whole->body);
  EXPECT_EQ(j["choices"][0]["message"]["role"], "assistant");
  EXPECT_EQ(j["choices"][0]["message"]["content"].get<std::string>(), streamed);
}

TEST(ServerHttp, ErrorsAreJsonWithTheRightStatus) {
  ServerOptions o;
  o.max_body_bytes = 4096;
  LiveServer s(o);
  auto c = s.client();
  auto bad = c.Post("/v1/completions", R"({"prompt": "x",)", "application/json");
  ASSERT_TRUE(bad);
  EXPECT_EQ(bad->status, 400);
  json e = json::parse(bad->body);
  EXPECT_NE(e["error"]["message"].get<std::string>().find("invalid JSON"), std::string::npos);
  auto arr = c.Post("/v1/chat/completions", "[1, 2]", "application/json");
  ASSERT_TRUE(arr);
  EXPECT_EQ(arr->status, 400);
  auto missing = c.Get("/v1/nothing");
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing->status, 404);
  EXPECT_NE(json::parse(missing->body)["error"]["message"].get<std::string>().find("/v1/nothing"), std::string::npos);
  auto big = c.Post("/v1/completions", "{\"prompt\": \"" + std::string(10000, 'a') + "\"}", "application/json");
  ASSERT_TRUE(big);
  EXPECT_EQ(big->status, 413);
  auto tok = c.Post("/tokenize", R"({"content": "def f"})", "application/json");
  ASSERT_TRUE(tok);
  ASSERT_EQ(tok->status, 200);
  auto ids = json::parse(tok->body)["tokens"];
  auto detok = c.Post("/detokenize", json{{"tokens", ids}}.dump(), "application/json");
  ASSERT_TRUE(detok);
  EXPECT_EQ(json::parse(detok->body)["content"], "def f");
  auto m = c.Get("/metrics");
  ASSERT_TRUE(m);
  // bad JSON, a non-object body, the 404 and the 413
  EXPECT_NE(m->body.find("dflash_request_errors_total 4"), std::string::npos) << m->body;
  // The server still serves after all that.
  auto ok = c.Post("/v1/completions", R"({"prompt": "x", "max_tokens": 2})", "application/json");
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 200);
}

// The adaptive policy outlives a request: the second request's rounds add to what the first one
// measured (a fresh policy per request would probe again every time), and a different block cap
// gets a policy of its own.
TEST(ServerHttp, AdaptivePolicyIsKeptAcrossRequests) {
  LiveServer s;
  auto c = s.client();
  auto rounds_metric = [&] {
    auto m = c.Get("/metrics");
    EXPECT_TRUE(m);
    const std::string name = "\ndflash_adaptive_policy_rounds ";
    const auto at = m->body.find(name);
    EXPECT_NE(at, std::string::npos) << m->body;
    return std::stod(m->body.substr(at + name.size()));
  };
  EXPECT_EQ(rounds_metric(), 0.0);
  const std::string body = R"({"prompt": "def add(a, b):", "max_tokens": 20, "ignore_eos": true, "adaptive": true)";
  double total = 0;
  for (int i = 0; i < 2; ++i) {
    auto r = c.Post("/v1/completions", body + "}", "application/json");
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 200) << r->body;
    total += json::parse(r->body)["dflash"]["rounds"].get<double>();
    EXPECT_EQ(rounds_metric(), total) << "request " << i;
  }
  auto r = c.Post("/v1/completions", body + R"(, "block_size": 4})", "application/json");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  total += json::parse(r->body)["dflash"]["rounds"].get<double>();
  EXPECT_EQ(rounds_metric(), total);
}

// "lookup": N drafts by n-gram lookup; at T = 0 the text is plain decoding's.
TEST(ServerHttp, LookupRequestsGiveThePlainDecodingText) {
  LiveServer s;
  auto c = s.client();
  const std::string base = R"({"prompt": "x = 1\nx = 1\nx = 1\n", "max_tokens": 24, "ignore_eos": true)";
  auto plain = c.Post("/v1/completions", base + R"(, "speculative": false})", "application/json");
  auto look = c.Post("/v1/completions", base + R"(, "lookup": 3, "adaptive": true})", "application/json");
  ASSERT_TRUE(plain && look);
  ASSERT_EQ(look->status, 200) << look->body;
  const json jp = json::parse(plain->body), jl = json::parse(look->body);
  EXPECT_EQ(jl["choices"][0]["text"], jp["choices"][0]["text"]);
  EXPECT_GT(jl["dflash"]["rounds"].get<int>(), 0);
  auto bad = c.Post("/v1/completions", base + R"(, "lookup": 9})", "application/json");
  ASSERT_TRUE(bad);
  EXPECT_EQ(bad->status, 400);
  EXPECT_NE(bad->body.find("lookup"), std::string::npos) << bad->body;
  // DFlash + lookup: the same text, with and without the adaptive policy.
  for (const char* extra : {R"(, "lookup": 3, "lookup_hybrid": true})", R"(, "lookup": 2, "lookup_hybrid": true, "adaptive": true})"}) {
    auto hy = c.Post("/v1/completions", base + extra, "application/json");
    ASSERT_TRUE(hy);
    ASSERT_EQ(hy->status, 200) << hy->body;
    EXPECT_EQ(json::parse(hy->body)["choices"][0]["text"], jp["choices"][0]["text"]) << extra;
  }
  auto bad_type = c.Post("/v1/completions", base + R"(, "lookup": 3, "lookup_hybrid": "yes"})", "application/json");
  ASSERT_TRUE(bad_type);
  EXPECT_EQ(bad_type->status, 400);
  EXPECT_NE(bad_type->body.find("lookup_hybrid"), std::string::npos) << bad_type->body;
}

TEST(ServerHttp, ApiKeyIsRequiredWhenSet) {
  ServerOptions o;
  o.api_key = "sekrit";
  LiveServer s(o);
  auto c = s.client();
  auto no = c.Post("/v1/completions", R"({"prompt": "x", "max_tokens": 1})", "application/json");
  ASSERT_TRUE(no);
  EXPECT_EQ(no->status, 401);
  EXPECT_EQ(json::parse(no->body)["error"]["type"], "authentication_error");
  auto health = c.Get("/health");  // liveness probes need no key
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);
  c.set_bearer_token_auth("sekrit");
  auto yes = c.Post("/v1/completions", R"({"prompt": "x", "max_tokens": 1})", "application/json");
  ASSERT_TRUE(yes);
  EXPECT_EQ(yes->status, 200);
}

// A raw connection that starts a long stream, so the test controls when the client goes away.
class RawStream {
 public:
  RawStream(int port, const std::string& body) {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ok_ = connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
    const std::string req = "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                            "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
    ok_ = ok_ && write(fd_, req.data(), req.size()) == static_cast<ssize_t>(req.size());
  }
  ~RawStream() { close_now(); }
  // Reads until the first SSE event has arrived (the generation is then running).
  bool wait_first_event() {
    std::string got;
    char buf[4096];
    while (ok_ && got.find("data: ") == std::string::npos) {
      ssize_t n = read(fd_, buf, sizeof buf);
      if (n <= 0) return false;
      got.append(buf, static_cast<size_t>(n));
    }
    return ok_;
  }
  void close_now() {
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
  bool ok_ = false;
};

json metrics_value_wait(httplib::Client& c, const std::string& name, double want) {
  for (int i = 0; i < 600; ++i) {
    auto m = c.Get("/metrics");
    if (m) {
      auto at = m->body.find("\n" + name + " ");
      if (at != std::string::npos && std::stod(m->body.substr(at + name.size() + 2)) == want) return want;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return nullptr;
}

TEST(ServerHttp, QueueLimitAnswers503AndDisconnectCancels) {
  ServerOptions o;
  o.max_queue = 0;  // only the running request
  LiveServer s(o);
  auto c = s.client();
  {
    // 250 tokens with EOS ignored: long enough to still be running when the client leaves.
    RawStream first(s.port(), R"({"prompt": "a", "max_tokens": 250, "ignore_eos": true, "stream": true})");
    ASSERT_TRUE(first.wait_first_event());
    auto busy = c.Post("/v1/completions", R"({"prompt": "x", "max_tokens": 1})", "application/json");
    ASSERT_TRUE(busy);
    EXPECT_EQ(busy->status, 503);
    EXPECT_EQ(json::parse(busy->body)["error"]["code"], "server_busy");
    first.close_now();
  }
  // The abandoned stream is cancelled (the write to the closed socket fails) and the engine is free again.
  EXPECT_FALSE(metrics_value_wait(c, "dflash_requests_queued", 0).is_null());
  EXPECT_FALSE(metrics_value_wait(c, "dflash_requests_cancelled_total", 1).is_null());
  auto after = c.Post("/v1/completions", R"({"prompt": "x", "max_tokens": 2})", "application/json");
  ASSERT_TRUE(after);
  EXPECT_EQ(after->status, 200);
}

}  // namespace
}  // namespace dflash::server
