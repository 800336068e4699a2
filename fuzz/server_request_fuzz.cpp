// libFuzzer target for the HTTP API's request handling (src/server/api.cpp): the body of a
// /v1/completions or /v1/chat/completions request (first byte picks the endpoint) is parsed as JSON
// and validated against the tiny reference model (tokenization and the chat template included).
// Any input must give a ParsedRequest or an ApiError: no crash, hang, leak or UB.
#include <cstddef>
#include <cstdint>
#include <string>

#include "server/api.h"

#ifndef DFLASH_FUZZ_DATA_DIR
#define DFLASH_FUZZ_DATA_DIR "tests/data"
#endif

namespace {
dflash::engine::Engine* engine() {
  static dflash::engine::Engine* e = [] {
    dflash::engine::EngineOptions o;
    o.target_path = std::string(DFLASH_FUZZ_DATA_DIR) + "/gguf/qwen35-dense-a.gguf";
    o.n_ctx = 256;
    o.threads = 1;
    auto r = dflash::engine::Engine::load(o);
    if (!r.is_ok()) __builtin_trap();
    return r->release();
  }();
  return e;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const auto ep = (data[0] & 1) ? dflash::server::Endpoint::kChatCompletions : dflash::server::Endpoint::kCompletions;
  const std::string body(reinterpret_cast<const char*>(data) + 1, size - 1);
  auto j = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return 0;
  dflash::server::ParsedRequest r;
  dflash::server::ApiError err;
  if (!dflash::server::parse_request(ep, j, *engine(), dflash::server::RequestDefaults{}, &r, &err))
    (void)err.to_json().dump();
  return 0;
}
