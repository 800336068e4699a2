// dflash synth: random-weight Qwen3.5 models with the public shapes (benchmarks at real scale).
#include <cstdio>

#include "app/command.h"
#include "convert/synth.h"

namespace dflash::app {
namespace {

struct SynthArgs {
  std::string shape = "0.8b", type = "Q4_K_M", out;
  int64_t layers = 0;
  uint64_t seed = 1;
  bool force = false;
};

int run_synth(const SynthArgs& a) {
  auto shape = convert::synth_shape(a.shape);
  if (!shape.is_ok()) {
    std::fprintf(stderr, "dflash synth: %s\n", shape.status().message().c_str());
    return 1;
  }
  auto ft = formats::file_type_from_name(a.type);
  if (!ft) {
    std::fprintf(stderr, "dflash synth: unknown --type '%s' (Q4_K_M, Q5_K_M, Q6_K, Q8_0, F16, BF16, F32)\n", a.type.c_str());
    return 1;
  }
  convert::SynthOptions o;
  o.file_type = *ft;
  o.seed = a.seed;
  o.n_layer_override = a.layers;
  o.overwrite = a.force;
  util::Status st = convert::write_synth_model(*shape, o, a.out);
  if (!st.is_ok()) {
    std::fprintf(stderr, "dflash synth: %s\n", st.to_string().c_str());
    return 1;
  }
  std::printf("wrote %s (%s, %s)\n", a.out.c_str(), a.shape.c_str(), a.type.c_str());
  return 0;
}

}  // namespace

DFLASH_COMMAND(Command{"synth", "Write a random-weight Qwen3.5 GGUF with a public model shape (for benchmarks)",
                       [](CLI::App* sub) -> std::function<int()> {
                         auto a = std::make_shared<SynthArgs>();
                         sub->add_option("out", a->out, "Output GGUF path")->required();
                         sub->add_option("--shape", a->shape, "0.8b, 2b, 35b-a3b (MoE), tiny or tiny-moe")->capture_default_str();
                         sub->add_option("--type", a->type, "File type: Q4_K_M, Q5_K_M, Q6_K, Q8_0, F16, BF16, F32")
                             ->capture_default_str();
                         sub->add_option("--layers", a->layers, "Override the layer count (0: the shape's)");
                         sub->add_option("--seed", a->seed, "Random seed")->capture_default_str();
                         sub->add_flag("-f,--force", a->force, "Overwrite an existing file");
                         return [a] { return run_synth(*a); };
                       }});

}  // namespace dflash::app
