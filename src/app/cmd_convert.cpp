// dflash convert: Hugging Face safetensors checkpoint directory → GGUF (docs/convert.md).
#include <cstdio>
#include <optional>

#include "app/command.h"
#include "convert/convert.h"
#include "util/progress.h"

namespace dflash::app {
namespace {

struct ConvertArgs {
  std::string in, out, outtype = "auto", draft_format = "dflash", tokenizer_from;
  double rope_theta = 0;
  bool no_tokenizer = false, force = false, quiet = false;
};

int run_convert(const ConvertArgs& a) {
  auto fail = [](const std::string& msg) {
    std::fprintf(stderr, "dflash convert: %s\n", msg.c_str());
    return 1;
  };
  convert::ConvertOptions o;
  auto ot = convert::parse_outtype(a.outtype);
  if (!ot.is_ok()) return fail(ot.status().message());
  o.outtype = *ot;
  auto df = convert::parse_draft_format(a.draft_format);
  if (!df.is_ok()) return fail(df.status().message());
  o.draft_format = *df;
  o.tokenizer_from = a.tokenizer_from;
  o.no_tokenizer = a.no_tokenizer;
  if (a.rope_theta != 0) {
    if (!(a.rope_theta > 0)) return fail("--rope-theta must be positive");
    o.rope_theta = a.rope_theta;
  }
  o.overwrite = a.force;
  o.progress = !a.quiet;
  auto r = convert::convert_hf_to_gguf(a.in, a.out, o);
  if (!r.is_ok()) return fail(r.status().message());
  std::printf("wrote %s: %s (from %s), %s%s, %zu tensors, %s\n", a.out.c_str(), r->gguf_architecture.c_str(),
              r->hf_architecture.c_str(), formats::file_type_name(r->file_type),
              o.outtype == convert::OutType::kAuto ? " (--outtype auto: the checkpoint's precision)" : "", r->n_tensors,
              util::human_bytes(static_cast<double>(r->file_bytes)).c_str());
  if (r->n_skipped_vision || r->n_skipped_mtp)
    std::printf("skipped %zu vision-tower and %zu MTP tensors (text model only)\n", r->n_skipped_vision, r->n_skipped_mtp);
  return 0;
}

}  // namespace

DFLASH_COMMAND(Command{"convert", "Convert a Hugging Face checkpoint directory (Qwen3.5 target or DFlash drafter) to GGUF",
                       [](CLI::App* sub) -> std::function<int()> {
                         auto a = std::make_shared<ConvertArgs>();
                         sub->add_option("hf_dir", a->in, "Checkpoint directory (config.json + *.safetensors)")->required();
                         sub->add_option("out", a->out, "Output GGUF path")->required();
                         sub->add_option("--outtype", a->outtype,
                                         "auto (keep the checkpoint's precision), f32, f16, bf16, q8_0, q4_k_m")
                             ->capture_default_str();
                         sub->add_option("--draft-format", a->draft_format,
                                         "Drafters: dflash (upstream llama.cpp) or dflash-draft (the fork's dialect)")
                             ->capture_default_str();
                         sub->add_option("--tokenizer-from", a->tokenizer_from,
                                         "Directory with tokenizer.json (drafters: the target model's directory)");
                         sub->add_flag("--no-tokenizer", a->no_tokenizer, "Write no tokenizer metadata");
                         sub->add_option("--rope-theta", a->rope_theta,
                                         "RoPE theta for a config.json that has none (never guessed)");
                         sub->add_flag("-f,--force", a->force, "Overwrite an existing output file");
                         sub->add_flag("-q,--quiet", a->quiet, "No progress display");
                         return [a] { return run_convert(*a); };
                       }});

}  // namespace dflash::app
