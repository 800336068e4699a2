// dflash serve: the OpenAI-compatible HTTP server (server/server.h) over one loaded model pair.
#include <csignal>
#include <cstdio>
#include <thread>

#include "app/command.h"
#include "app/run_common.h"
#include "server/server.h"

namespace dflash::app {
namespace {

struct ServeArgs {
  RunArgs run;
  std::string host = "127.0.0.1";
  int port = 8080;
  std::string alias, api_key;
  int max_queue = 16;
  int n_predict_default = 256;
  bool ar = false;
};

// SIGINT / SIGTERM: stop the server from a normal thread (httplib's stop() is not signal-safe).
std::atomic<bool> g_stop{false};
extern "C" void on_signal(int) { g_stop.store(true); }

int serve(const ServeArgs& a) {
  auto eng = engine::Engine::load(a.run.engine_options());
  if (!eng.is_ok()) {
    std::fprintf(stderr, "dflash serve: %s\n", eng.status().to_string().c_str());
    return 1;
  }
  server::ServerOptions so;
  so.host = a.host;
  so.port = a.port;
  so.api_key = a.api_key;
  so.max_queue = a.max_queue;
  so.model_name = a.alias.empty() ? a.run.model : a.alias;
  so.defaults.sampling.temperature = a.run.temperature;
  so.defaults.sampling.top_k = a.run.top_k;
  so.defaults.sampling.top_p = a.run.top_p;
  so.defaults.sampling.min_p = a.run.min_p;
  so.defaults.sampling.seed = a.run.seed;
  so.defaults.max_tokens = a.n_predict_default;
  so.defaults.block_size = a.run.block_size;
  so.defaults.adaptive = a.run.adaptive;
  so.defaults.lookup = a.run.lookup;
  so.defaults.lookup_hybrid = a.run.lookup_hybrid;
  so.defaults.draft_min_confidence = a.run.draft_min_conf;
  so.defaults.speculative = !a.ar;
  server::Server srv(**eng, so);
  if (auto st = srv.bind(); !st.is_ok()) {
    std::fprintf(stderr, "dflash serve: %s\n", st.to_string().c_str());
    return 1;
  }
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  std::thread watcher([&srv] {
    while (!g_stop.load()) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    srv.stop();
  });
  std::fprintf(stderr, "dflash serve: %s%s listening on http://%s:%d (OpenAI API under /v1; Ctrl-C stops)\n",
               so.model_name.c_str(), (*eng)->drafter() && !a.ar ? " + DFlash drafter" : "", a.host.c_str(),
               srv.port());
  std::fflush(stderr);
  auto st = srv.listen();
  g_stop.store(true);
  watcher.join();
  if (!st.is_ok()) {
    std::fprintf(stderr, "dflash serve: %s\n", st.to_string().c_str());
    return 1;
  }
  std::fprintf(stderr, "dflash serve: stopped\n");
  return 0;
}

}  // namespace

DFLASH_COMMAND(Command{
    "serve", "OpenAI-compatible HTTP server (/v1/chat/completions, /v1/completions, streaming)",
    [](CLI::App* sub) -> std::function<int()> {
      auto a = std::make_shared<ServeArgs>();
      add_model_options(sub, a->run);
      sub->add_option("--host", a->host, "Address to listen on")->capture_default_str();
      sub->add_option("--port", a->port, "Port (0: any free port, printed at start)")->capture_default_str();
      sub->add_option("--alias", a->alias, "Model name reported by /v1/models (default: the model path)");
      sub->add_option("--api-key", a->api_key, "Require 'Authorization: Bearer KEY' on API requests");
      sub->add_option("--max-queue", a->max_queue, "Requests that may wait for the engine before 503")
          ->capture_default_str();
      sub->add_option("-n,--n-predict", a->n_predict_default, "Default max_tokens of a request")->capture_default_str();
      sub->add_option("--block-size", a->run.block_size, "DFlash block size (default: the drafter's)");
      sub->add_flag("--adaptive", a->run.adaptive, "Default to the adaptive block size");
      sub->add_option("--lookup", a->run.lookup,
                      "Default to n-gram lookup drafting with n-grams of up to N tokens (no -md needed; requests "
                      "may set \"lookup\": 0..8)")
          ->check(CLI::Range(1, 8));
      sub->add_flag("--lookup-hybrid", a->run.lookup_hybrid,
                    "Default to DFlash + lookup with --lookup and -md (requests may set \"lookup_hybrid\")");
      sub->add_option("--draft-min-conf", a->run.draft_min_conf,
                      "Default joint drafter probability a draft needs to be verified (0 = verify all; requests may set "
                      "\"draft_min_confidence\")")
          ->check(CLI::Range(0.0, 1.0))
          ->capture_default_str();
      sub->add_flag("--ar", a->ar, "Default to plain decoding (requests may still ask for \"speculative\": true)");
      sub->add_option("--temp", a->run.temperature, "Default temperature (0 = greedy)")->capture_default_str();
      sub->add_option("--top-k", a->run.top_k, "Default top-k (0 = off)");
      sub->add_option("--top-p", a->run.top_p, "Default top-p (1 = off)");
      sub->add_option("--min-p", a->run.min_p, "Default min-p (0 = off)");
      sub->add_option("--seed", a->run.seed, "Default sampling seed")->capture_default_str();
      return [a] { return serve(*a); };
    }});

}  // namespace dflash::app
