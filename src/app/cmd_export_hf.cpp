// dflash export-hf DRAFT.gguf DIR: a DFlash drafter GGUF → the z-lab HF layout (config.json +
// model.safetensors) that the authors' code, vLLM and SGLang load.
#include <cstdio>

#include "app/command.h"
#include "convert/export_hf.h"
#include "formats/gguf.h"

namespace dflash::app {
namespace {

struct ExportArgs {
  std::string in, dir, dtype;
  int threads = 0;
  int64_t num_target_layers = 0;
  bool force = false, quiet = false;
};

int fail(const util::Status& st) {
  std::fprintf(stderr, "dflash export-hf: %s\n", st.message().c_str());
  return 1;
}

int run_export(const ExportArgs& a) {
  convert::ExportHfOptions o;
  if (!a.dtype.empty()) {
    std::string d;
    for (char ch : a.dtype) d += static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    if (d == "f32" || d == "float32") o.dtype = tensor::DType::kF32;
    else if (d == "f16" || d == "float16") o.dtype = tensor::DType::kF16;
    else if (d == "bf16" || d == "bfloat16") o.dtype = tensor::DType::kBF16;
    else return fail(util::invalid_argument("unknown --dtype '" + a.dtype + "' (bf16, f16 or f32)"));
  }
  o.overwrite = a.force;
  o.progress = !a.quiet;
  o.threads = a.threads;
  o.num_target_layers = a.num_target_layers;
  auto in = formats::GgufFile::open(a.in);
  if (!in.is_ok()) return fail(in.status());
  auto plan = convert::plan_export_hf(*in, o);
  if (!plan.is_ok()) return fail(plan.status());
  int narrowed = 0;
  util::Status st = convert::export_hf(*in, a.dir, o, &narrowed);
  if (!st.is_ok()) return fail(st);
  if (narrowed > 0)
    std::fprintf(stderr, "dflash export-hf: warning: %d F32 tensors of %s changed when stored as %s; pass --dtype f32 "
                         "to keep them exactly\n",
                 narrowed, a.in.c_str(), convert::hf_dtype_name(plan->dtype));
  if (!plan->skipped.empty())
    std::fprintf(stderr, "dflash export-hf: note: %zu tensors not exported (the z-lab layout takes the embedding and "
                         "LM head from the target): %s%s\n",
                 plan->skipped.size(), plan->skipped[0].c_str(), plan->skipped.size() > 1 ? ", ..." : "");
  std::printf("wrote %s/config.json and %s/model.safetensors (%zu tensors, %s)\n", a.dir.c_str(), a.dir.c_str(),
              plan->tensors.size(), convert::hf_dtype_name(plan->dtype));
  return 0;
}

}  // namespace

DFLASH_COMMAND(Command{"export-hf",
                       "Export a DFlash drafter GGUF to the z-lab HF layout (config.json + model.safetensors)",
                       [](CLI::App* sub) -> std::function<int()> {
                         auto a = std::make_shared<ExportArgs>();
                         sub->add_option("draft", a->in, "DFlash drafter GGUF (dflash or dflash-draft)")->required();
                         sub->add_option("dir", a->dir, "Output directory (created if missing)")->required();
                         sub->add_option("--dtype", a->dtype,
                                         "bf16, f16 or f32 (default: the file's matrix dtype; f32 if quantized)");
                         sub->add_option("--num-target-layers", a->num_target_layers,
                                         "The target's layer count for config.json (default: max(target_layer_ids)+1)");
                         sub->add_option("-t,--threads", a->threads, "Threads (default: DFLASH_THREADS or all cores)");
                         sub->add_flag("-f,--force", a->force, "Overwrite config.json / model.safetensors in DIR");
                         sub->add_flag("-q,--quiet", a->quiet, "No progress bar");
                         return [a] { return run_export(*a); };
                       }});

}  // namespace dflash::app
