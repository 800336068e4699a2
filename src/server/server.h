// OpenAI-compatible HTTP server over one Engine: /v1/completions and /v1/chat/completions (JSON or
// server-sent-event streams), /v1/models, /health, /metrics, /tokenize, /detokenize.
//
// The engine holds one sequence, so requests are served one at a time in arrival order; up to
// `max_queue` more wait, beyond that the server answers 503 at once. A streaming client that
// disconnects cancels its generation.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

#include "engine/engine.h"
#include "server/api.h"
#include "util/status.h"

namespace dflash::server {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8080;                 // 0: any free port (see Server::port())
  std::string model_name = "dflash";
  std::string api_key;             // non-empty: require "Authorization: Bearer <key>"
  RequestDefaults defaults;
  size_t max_body_bytes = 8u << 20;
  int max_queue = 16;
  int n_http_threads = 8;
};

class Server {
 public:
  Server(engine::Engine& engine, ServerOptions opts);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds the listening socket; afterwards port() is the real port.
  util::Status bind();
  // Serves until stop() (from another thread or a signal handler's helper thread).
  util::Status listen();
  void stop();
  int port() const { return port_; }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  int port_ = 0;
};

}  // namespace dflash::server
