#include "engine/engine.h"

#include <algorithm>

#include "tokenizer/gguf_vocab.h"
#include "tokenizer/stream_decoder.h"
#include "util/log.h"

namespace dflash::engine {

using util::Result;
using util::Status;
using util::strfmt;

Engine::~Engine() = default;

Result<std::unique_ptr<Engine>> Engine::load(const EngineOptions& opts) {
  if (opts.threads > 0) util::ThreadPool::set_global_threads(opts.threads);
  std::unique_ptr<Engine> e(new Engine());
  e->opts_ = opts;
  const util::LoadMode load_mode = opts.no_mmap ? util::LoadMode::kRead : util::LoadMode::kMmap;
  DFLASH_ASSIGN_OR_RETURN(formats::GgufFile tf, formats::GgufFile::open(opts.target_path, load_mode));
  e->target_file_ = std::make_shared<const formats::GgufFile>(std::move(tf));

  model::Qwen35Options mo;
  mo.n_ctx = opts.n_ctx;
  mo.n_batch = opts.n_batch;
  mo.capture_layers = opts.capture_layers;
  mo.n_seq = opts.n_seq;
  if (!opts.draft_path.empty()) {
    DFLASH_ASSIGN_OR_RETURN(formats::GgufFile df, formats::GgufFile::open(opts.draft_path, load_mode));
    e->draft_file_ = std::make_shared<const formats::GgufFile>(std::move(df));
    DFLASH_ASSIGN_OR_RETURN(model::DFlashConfig dc, model::DFlashConfig::from_gguf(*e->draft_file_));
    mo.capture_layers = dc.target_layer_ids;  // the drafter decides which target layers it reads
    mo.max_verify = std::max<int64_t>(mo.max_verify, dc.block_size);
  }
  DFLASH_ASSIGN_OR_RETURN(e->target_, model::Qwen35::load(e->target_file_, mo));
  if (e->draft_file_) {
    model::DFlashOptions dopts;
    dopts.n_ctx = opts.n_ctx;
    dopts.n_batch = opts.n_batch;
    auto d = model::DFlashDrafter::load(e->draft_file_, *e->target_, dopts);
    if (!d.is_ok()) return d.status().with_context("loading the drafter");
    e->drafter_ = std::move(*d);
  }

  // Tokenizer and chat template travel inside the target GGUF.
  if (e->target_file_->has("tokenizer.ggml.model")) {
    DFLASH_ASSIGN_OR_RETURN(tokenizer::Tokenizer tok, tokenizer::tokenizer_from_gguf_file(opts.target_path));
    e->tokenizer_ = std::make_unique<tokenizer::Tokenizer>(std::move(tok));
    for (int32_t id : {e->tokenizer_->eos_id(), e->tokenizer_->eot_id()})
      if (id >= 0) e->eos_.push_back(id);
    for (const char* t : {"<|im_end|>", "<|endoftext|>"})
      if (auto id = e->tokenizer_->token_id(t)) e->eos_.push_back(*id);
    std::sort(e->eos_.begin(), e->eos_.end());
    e->eos_.erase(std::unique(e->eos_.begin(), e->eos_.end()), e->eos_.end());
  }
  std::optional<std::string> tmpl;
  if (e->target_file_->has("tokenizer.chat_template")) {
    DFLASH_ASSIGN_OR_RETURN(std::string_view s, e->target_file_->get_string("tokenizer.chat_template"));
    tmpl = std::string(s);
  }
  auto ct = tokenizer::ChatTemplate::from_gguf(tmpl);
  if (!ct.is_ok()) return ct.status().with_context(opts.target_path + ": tokenizer.chat_template");
  e->chat_template_ = std::make_unique<tokenizer::ChatTemplate>(std::move(*ct));
  return e;
}

Result<std::vector<int32_t>> Engine::tokenize(std::string_view text, bool parse_special) const {
  if (!tokenizer_)
    return util::not_found(opts_.target_path +
                           ": the model file has no tokenizer (tokenizer.ggml.*); pass token ids (--tokens) or "
                           "reconvert with the tokenizer");
  tokenizer::EncodeOptions eo;
  eo.parse_special = parse_special;
  return tokenizer_->encode(text, eo);
}

Result<std::string> Engine::render_chat(const nlohmann::ordered_json& messages,
                                        const tokenizer::ChatOptions& opts) const {
  return chat_template_->render(messages, opts);
}

Result<GenerateResult> Engine::generate(const GenerateRequest& req, const TextCallback& on_text) {
  GenerateResult res;
  spec::DecodeOptions dopts = req.decode;
  if (!req.speculative) dopts.lookup_ngram = 0;  // plain decoding
  const int64_t max_verify = target_->options().max_verify;
  if (dopts.lookup_ngram > 0 && dopts.block_size > max_verify)
    return util::invalid_argument(strfmt("lookup block size %d exceeds the largest verify block (%lld)",
                                         dopts.block_size, (long long)max_verify));
  if (req.stop_at_eos) dopts.stop_tokens.insert(dopts.stop_tokens.end(), eos_.begin(), eos_.end());
  if (req.prompt.size() + 1 > static_cast<size_t>(opts_.n_ctx))
    return util::out_of_range(strfmt("the prompt has %zu tokens but the context holds %lld; shorten it or raise "
                                     "--ctx-size",
                                     req.prompt.size(), (long long)opts_.n_ctx));
  StopStringFilter filter(req.stop_strings);
  std::unique_ptr<tokenizer::StreamDecoder> sd;
  if (tokenizer_) sd = std::make_unique<tokenizer::StreamDecoder>(*tokenizer_, tokenizer::DecodeOptions{true});
  bool cancelled = false;
  Status cb_error;
  auto emit = [&](std::string_view text) {
    if (text.empty()) return;
    res.text.append(text);
    if (on_text && !on_text(text)) cancelled = true;
  };
  spec::Decoder dec(*target_, req.speculative ? drafter_.get() : nullptr);
  auto out = dec.generate(req.prompt, dopts, [&](int32_t tok) {
    if (!sd) return true;
    auto piece = sd->push(tok);
    if (!piece.is_ok()) {
      cb_error = piece.status();
      return false;
    }
    emit(filter.push(*piece));
    return !(filter.stopped() || cancelled);
  }, &res.stats);
  if (!out.is_ok()) return out.status();
  DFLASH_RETURN_IF_ERROR(cb_error);
  res.tokens = std::move(*out);
  if (sd && !filter.stopped()) {
    emit(filter.push(sd->flush()));
    if (!filter.stopped()) emit(filter.flush());
  }
  if (filter.stopped() || res.stats.finish == spec::FinishReason::kStop) {
    res.finish_reason = "stop";
  } else if (cancelled) {
    res.finish_reason = "cancelled";
  } else {
    res.finish_reason = spec::finish_reason_name(res.stats.finish);
  }
  return res;
}

// ---- stop strings ----

StopStringFilter::StopStringFilter(std::vector<std::string> stops) : stops_(std::move(stops)) {
  stops_.erase(std::remove(stops_.begin(), stops_.end(), std::string()), stops_.end());
  for (const auto& s : stops_) max_len_ = std::max(max_len_, s.size());
}

namespace {
// Largest cut ≤ n that does not split a UTF-8 sequence of s.
size_t utf8_floor(const std::string& s, size_t n) {
  while (n > 0 && n < s.size() && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;
  return n;
}
}  // namespace

std::string StopStringFilter::push(std::string_view text) {
  if (stopped_) return {};
  held_.append(text);
  if (stops_.empty()) {
    std::string out;
    out.swap(held_);
    return out;
  }
  size_t best = std::string::npos;
  for (const auto& s : stops_) best = std::min(best, held_.find(s));
  if (best != std::string::npos) {
    stopped_ = true;
    std::string out = held_.substr(0, best);
    held_.clear();
    return out;
  }
  // Keep the longest tail that is a proper prefix of some stop string.
  size_t keep = 0;
  for (const auto& s : stops_)
    for (size_t k = std::min(s.size() - 1, held_.size()); k > keep; --k)
      if (held_.compare(held_.size() - k, k, s, 0, k) == 0) {
        keep = k;
        break;
      }
  const size_t cut = utf8_floor(held_, held_.size() - keep);
  std::string out = held_.substr(0, cut);
  held_.erase(0, cut);
  return out;
}

std::string StopStringFilter::flush() {
  std::string out;
  if (!stopped_) out.swap(held_);
  return out;
}

}  // namespace dflash::engine
