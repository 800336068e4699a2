// dflash quantize IN.gguf OUT.gguf TYPE: re-encode a GGUF with a llama.cpp file-type mix.
#include <cstdio>

#include "app/command.h"
#include "convert/quantize.h"
#include "formats/gguf.h"
#include "util/mmap_file.h"

namespace dflash::app {
namespace {

struct QuantizeArgs {
  std::string in, out, type;
  int threads = 0;
  bool dry_run = false, force = false, allow_requantize = false, quiet = false;
};

int fail(const util::Status& st) {
  std::fprintf(stderr, "dflash quantize: %s\n", st.message().c_str());
  return 1;
}

int run_quantize(const QuantizeArgs& a) {
  auto ft = formats::file_type_from_name(a.type);
  if (!ft) {
    std::fprintf(stderr, "dflash quantize: unknown type '%s' (Q4_K_M, Q5_K_M, Q6_K, Q8_0, F16, BF16, F32)\n",
                 a.type.c_str());
    return 1;
  }
  if (a.threads < 0) return fail(util::invalid_argument("--threads must be ≥ 1 (0: all cores)"));
  // Refuse before the (possibly long) work, not after it.
  if (!a.dry_run && !a.force && util::file_exists(a.out))
    return fail(util::invalid_argument(a.out + ": already exists (pass --force to overwrite)"));
  auto in = formats::GgufFile::open(a.in);
  if (!in.is_ok()) return fail(in.status());
  convert::QuantizeOptions o;
  o.file_type = *ft;
  o.threads = a.threads;
  o.allow_requantize = a.allow_requantize;
  o.overwrite = a.force;
  o.progress = !a.quiet;
  auto plan = convert::plan_quantize(*in, o);
  if (!plan.is_ok()) return fail(plan.status());
  if (a.dry_run) {
    std::fputs(convert::format_plan(*plan).c_str(), stdout);
    return 0;
  }
  if (plan->n_requantized > 0)
    std::fprintf(stderr,
                 "dflash quantize: warning: %d tensors of %s are already quantized and are rounded again "
                 "(--allow-requantize); the result is worse than quantizing the original F32/F16/BF16 file\n",
                 plan->n_requantized, a.in.c_str());
  util::Status st = convert::write_quantized(*in, *plan, o, a.out);
  if (!st.is_ok()) return fail(st);
  std::printf("wrote %s (%s, %llu bytes, %.1f%% of the input)\n", a.out.c_str(), formats::file_type_name(*ft),
              static_cast<unsigned long long>(plan->out_file_size),
              plan->in_file_size ? 100.0 * double(plan->out_file_size) / double(plan->in_file_size) : 0.0);
  return 0;
}

}  // namespace

DFLASH_COMMAND(Command{
    "quantize", "Re-encode a GGUF with a llama.cpp type mix (Q4_K_M, Q5_K_M, Q6_K, Q8_0, F16, BF16, F32)",
    [](CLI::App* sub) -> std::function<int()> {
      auto a = std::make_shared<QuantizeArgs>();
      sub->add_option("input", a->in, "Input GGUF")->required();
      sub->add_option("output", a->out, "Output GGUF")->required();
      sub->add_option("type", a->type, "Q4_K_M, Q5_K_M, Q6_K, Q8_0, F16, BF16 or F32")->required();
      sub->add_option("-t,--threads", a->threads, "Threads (default: DFLASH_THREADS or all cores)");
      sub->add_flag("--dry-run", a->dry_run, "Print the per-tensor plan and the resulting size; write nothing");
      sub->add_flag("-f,--force", a->force, "Overwrite an existing output file");
      sub->add_flag("--allow-requantize", a->allow_requantize,
                    "Accept an already-quantized input (dequantize, then quantize again)");
      sub->add_flag("-q,--quiet", a->quiet, "No progress bar");
      return [a] { return run_quantize(*a); };
    }});

}  // namespace dflash::app
