#include "engine/gen_data.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <memory>

#include "kernels/select.h"
#include "tensor/dtype.h"
#include "util/mmap_file.h"
#include "util/progress.h"
#include "util/timer.h"

namespace dflash::engine {

using util::Result;
using util::Status;
using util::strfmt;

namespace {

struct Triple {
  int64_t offset, length, prompt_len;
};

Result<std::vector<uint8_t>> read_all(const std::string& path) {
  std::unique_ptr<FILE, int (*)(FILE*)> f(std::fopen(path.c_str(), "rb"), &std::fclose);
  if (!f) return util::not_found(strfmt("%s: cannot open (%s)", path.c_str(), std::strerror(errno)));
  std::vector<uint8_t> out;
  uint8_t buf[1 << 16];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f.get())) > 0) out.insert(out.end(), buf, buf + n);
  if (std::ferror(f.get())) return util::io_error(path + ": read error");
  return out;
}

// Reads an index.bin; a trailing partial triple (interrupted write) is ignored.
Result<std::vector<Triple>> read_index(const std::string& path, bool must_exist) {
  std::vector<Triple> idx;
  if (!must_exist && !std::filesystem::exists(path)) return idx;
  DFLASH_ASSIGN_OR_RETURN(std::vector<uint8_t> raw, read_all(path));
  idx.resize(raw.size() / sizeof(Triple));
  std::memcpy(idx.data(), raw.data(), idx.size() * sizeof(Triple));
  return idx;
}

// Append-only file with explicit durability points.
class Appender {
 public:
  static Result<Appender> open(const std::string& path, uint64_t truncate_to) {
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT, 0644);
    if (fd < 0) return util::io_error(strfmt("%s: cannot open for writing (%s)", path.c_str(), std::strerror(errno)));
    if (::ftruncate(fd, static_cast<off_t>(truncate_to)) != 0 || ::lseek(fd, 0, SEEK_END) < 0) {
      ::close(fd);
      return util::io_error(strfmt("%s: cannot truncate to %llu bytes (%s)", path.c_str(),
                                   (unsigned long long)truncate_to, std::strerror(errno)));
    }
    Appender a;
    a.fd_ = fd;
    a.path_ = path;
    return a;
  }
  Appender() = default;
  Appender(Appender&& o) noexcept : fd_(o.fd_), path_(std::move(o.path_)) { o.fd_ = -1; }
  Appender& operator=(Appender&& o) noexcept {
    if (this != &o) {
      if (fd_ >= 0) ::close(fd_);
      fd_ = o.fd_;
      path_ = std::move(o.path_);
      o.fd_ = -1;
    }
    return *this;
  }
  ~Appender() {
    if (fd_ >= 0) ::close(fd_);
  }
  Status write(const void* p, size_t n) {
    const auto* b = static_cast<const uint8_t*>(p);
    while (n > 0) {
      ssize_t w = ::write(fd_, b, n);
      if (w < 0) {
        if (errno == EINTR) continue;
        return util::io_error(strfmt("%s: write failed (%s)", path_.c_str(), std::strerror(errno)));
      }
      b += w;
      n -= static_cast<size_t>(w);
    }
    return Status::ok();
  }
  Status sync() {
    if (::fsync(fd_) != 0) return util::io_error(strfmt("%s: fsync failed (%s)", path_.c_str(), std::strerror(errno)));
    return Status::ok();
  }

 private:
  int fd_ = -1;
  std::string path_;
};

// Small marker files are replaced whole, so a crash leaves either the old or the new content.
Status write_text_atomic(const std::string& path, const std::string& text) {
  DFLASH_ASSIGN_OR_RETURN(auto w, util::AtomicFileWriter::create(path, /*overwrite=*/true));
  DFLASH_RETURN_IF_ERROR(w->write(text.data(), text.size()));
  return w->commit();
}

}  // namespace

Result<GenDataStats> generate_training_data(model::Qwen35& target, const GenDataOptions& o) {
  namespace fs = std::filesystem;
  const int64_t fdim = target.feature_dim();
  if (o.features && fdim == 0)
    return util::invalid_argument("features requested but the target captures no layers (give the layer ids)");
  if (o.gen_len < 1) return util::invalid_argument(strfmt("gen_len must be >= 1, got %lld", (long long)o.gen_len));
  if (o.parallel < 1 || o.parallel > target.options().n_seq)
    return util::invalid_argument(strfmt("parallel %d needs a target loaded with n_seq >= it (has %d)", o.parallel,
                                         target.options().n_seq));
  if (target.n_vocab() > 65536)
    return util::unsupported(strfmt("vocabulary of %lld tokens does not fit the uint16 tokens.bin format",
                                    (long long)target.n_vocab()));

  // Prompts.
  const std::string ptok = (fs::path(o.prompts_dir) / "tokens.bin").string();
  const std::string pidx = (fs::path(o.prompts_dir) / "index.bin").string();
  DFLASH_ASSIGN_OR_RETURN(std::vector<Triple> prompts, read_index(pidx, true));
  DFLASH_ASSIGN_OR_RETURN(std::vector<uint8_t> praw, read_all(ptok));
  const int64_t n_ptok = static_cast<int64_t>(praw.size() / 2);
  int64_t want = static_cast<int64_t>(prompts.size());
  if (o.max_seqs > 0) want = std::min(want, o.max_seqs);
  for (int64_t i = 0; i < want; ++i) {
    const Triple& t = prompts[static_cast<size_t>(i)];
    if (t.offset < 0 || t.prompt_len < 1 || t.length < t.prompt_len || t.offset > n_ptok - t.prompt_len)
      return util::corrupt(strfmt("%s: entry %lld (offset %lld, length %lld, prompt_len %lld) does not fit %s (%lld tokens)",
                                  pidx.c_str(), (long long)i, (long long)t.offset, (long long)t.length,
                                  (long long)t.prompt_len, ptok.c_str(), (long long)n_ptok));
    if (t.prompt_len + o.gen_len + 1 > target.n_ctx())
      return util::out_of_range(strfmt("prompt %lld has %lld tokens; with %lld generated (+1 for its features) that "
                                       "exceeds the context size %lld (raise --ctx-size)",
                                       (long long)i, (long long)t.prompt_len, (long long)o.gen_len,
                                       (long long)target.n_ctx()));
  }
  auto ptoken = [&](int64_t k) {
    uint16_t v;
    std::memcpy(&v, praw.data() + 2 * k, 2);
    return static_cast<int32_t>(v);
  };

  // Output, resumed after the last complete sequence.
  std::error_code ec;
  fs::create_directories(o.out_dir, ec);
  if (ec) return util::io_error(strfmt("%s: cannot create (%s)", o.out_dir.c_str(), ec.message().c_str()));
  const std::string otok = (fs::path(o.out_dir) / "tokens.bin").string();
  const std::string oidx = (fs::path(o.out_dir) / "index.bin").string();
  const std::string ofeat = (fs::path(o.out_dir) / "features.bin").string();
  const std::string ocount = (fs::path(o.out_dir) / "features.count").string();
  DFLASH_ASSIGN_OR_RETURN(std::vector<Triple> done, read_index(oidx, false));
  if (o.features && !done.empty()) {
    // Features are only trusted up to the marker; sequences beyond it are regenerated.
    int64_t have = 0;
    if (fs::exists(ocount)) {
      DFLASH_ASSIGN_OR_RETURN(std::string c, util::read_text_file(ocount));
      have = std::atoll(c.c_str());
    }
    if (have < static_cast<int64_t>(done.size())) done.resize(static_cast<size_t>(std::max<int64_t>(0, have)));
  }
  if (static_cast<int64_t>(done.size()) > want) done.resize(static_cast<size_t>(want));
  int64_t end = done.empty() ? 0 : done.back().offset + done.back().length;
  Appender ftok, fidx, ffeat;
  DFLASH_ASSIGN_OR_RETURN(ftok, Appender::open(otok, static_cast<uint64_t>(end) * 2));
  DFLASH_ASSIGN_OR_RETURN(fidx, Appender::open(oidx, done.size() * sizeof(Triple)));
  if (o.features) {
    DFLASH_ASSIGN_OR_RETURN(ffeat, Appender::open(ofeat, static_cast<uint64_t>(end * fdim) * 2));
  }

  if (o.features) {
    // Which layers the rows hold, so a trainer can refuse features of the wrong layers.
    std::string ids;
    for (int l : target.options().capture_layers) ids += (ids.empty() ? "" : ", ") + std::to_string(l);
    DFLASH_RETURN_IF_ERROR(write_text_atomic(
        (fs::path(o.out_dir) / "features.json").string(),
        strfmt("{\"target_layer_ids\": [%s], \"hidden_size\": %lld, \"dtype\": \"f16\", \"width\": %lld}\n",
               ids.c_str(), (long long)target.config().n_embd, (long long)fdim)));
  }

  GenDataStats st;
  util::Timer timer;
  std::unique_ptr<util::Progress> bar;
  if (o.progress) bar = std::make_unique<util::Progress>("gen-data", static_cast<uint64_t>(want), "seq");
  if (bar) bar->resume_at(done.size());
  std::vector<uint16_t> tok16;
  auto is_stop = [&](int32_t t) {
    return std::find(o.stop_tokens.begin(), o.stop_tokens.end(), t) != o.stop_tokens.end();
  };
  // One sequence of a wave: its tokens, features so far, whether it still generates, and whether its
  // newest token still needs a forward (to predict the next one, or only for its own features).
  struct Slot {
    const Triple* prompt = nullptr;
    std::vector<int32_t> seq;
    std::vector<uint16_t> feat16;
    int64_t generated = 0;
    bool active = false;
    bool pending = false;
  };
  std::vector<Slot> slots(static_cast<size_t>(o.parallel));
  auto put_features = [&](Slot& sl, int64_t first_row, int64_t rows) {
    const float* f = target.features(first_row);
    const size_t off = sl.feat16.size();
    sl.feat16.resize(off + static_cast<size_t>(rows * fdim));
    for (int64_t k = 0; k < rows * fdim; ++k) sl.feat16[off + static_cast<size_t>(k)] = tensor::fp32_to_fp16(f[k]);
  };
  // Greedy next token from logits row `row`; decides whether the slot stops after it. The last token
  // still needs its own features (one more forward) even though nothing follows it.
  auto take = [&](Slot& sl, int64_t row) {
    const int32_t next = static_cast<int32_t>(kernels::argmax(target.logits(row), target.n_vocab()));
    sl.seq.push_back(next);
    ++sl.generated;
    ++st.gen_tokens;
    sl.active = !is_stop(next) && sl.generated < o.gen_len;
    sl.pending = sl.active || o.features;
  };
  std::vector<int32_t> step_tokens;
  std::vector<int> step_seqs;

  for (int64_t first = static_cast<int64_t>(done.size()); first < want;) {
    if (o.max_minutes > 0 && timer.seconds() > o.max_minutes * 60.0) break;
    const int64_t wave = std::min<int64_t>(o.parallel, want - first);
    // Prefill each sequence of the wave in its own state; its first token comes from the prompt.
    for (int64_t w = 0; w < wave; ++w) {
      Slot& sl = slots[static_cast<size_t>(w)];
      sl.prompt = &prompts[static_cast<size_t>(first + w)];
      sl.seq.clear();
      sl.feat16.clear();
      sl.generated = 0;
      for (int64_t k = 0; k < sl.prompt->prompt_len; ++k) sl.seq.push_back(ptoken(sl.prompt->offset + k));
      DFLASH_RETURN_IF_ERROR(target.set_sequence(static_cast<int>(w)));
      target.reset();
      DFLASH_RETURN_IF_ERROR(target.forward(sl.seq, false).with_context(strfmt("prompt %lld", (long long)(first + w))));
      if (o.features) put_features(sl, 0, sl.prompt->prompt_len);
      take(sl, 0);
    }
    DFLASH_RETURN_IF_ERROR(target.set_sequence(0));
    // Decode steps: every slot whose newest token needs a forward takes part.
    for (;;) {
      step_tokens.clear();
      step_seqs.clear();
      for (int64_t w = 0; w < wave; ++w) {
        const Slot& sl = slots[static_cast<size_t>(w)];
        if (!sl.pending) continue;
        step_tokens.push_back(sl.seq.back());
        step_seqs.push_back(static_cast<int>(w));
      }
      if (step_tokens.empty()) break;
      DFLASH_RETURN_IF_ERROR(target.forward_batch(step_tokens, step_seqs));
      for (size_t r = 0; r < step_seqs.size(); ++r) {
        Slot& sl = slots[static_cast<size_t>(step_seqs[r])];
        if (o.features) put_features(sl, static_cast<int64_t>(r), 1);
        if (sl.active)
          take(sl, static_cast<int64_t>(r));
        else
          sl.pending = false;  // that forward only gave the final token its features
      }
    }
    // The wave's sequences, in prompt order.
    for (int64_t w = 0; w < wave; ++w) {
      Slot& sl = slots[static_cast<size_t>(w)];
      tok16.assign(sl.seq.begin(), sl.seq.end());
      DFLASH_RETURN_IF_ERROR(ftok.write(tok16.data(), tok16.size() * 2));
      if (o.features) DFLASH_RETURN_IF_ERROR(ffeat.write(sl.feat16.data(), sl.feat16.size() * 2));
    }
    DFLASH_RETURN_IF_ERROR(ftok.sync());
    if (o.features) DFLASH_RETURN_IF_ERROR(ffeat.sync());
    for (int64_t w = 0; w < wave; ++w) {
      const Slot& sl = slots[static_cast<size_t>(w)];
      const Triple rec{end, static_cast<int64_t>(sl.seq.size()), sl.prompt->prompt_len};
      DFLASH_RETURN_IF_ERROR(fidx.write(&rec, sizeof rec));
      end += rec.length;
      done.push_back(rec);
    }
    DFLASH_RETURN_IF_ERROR(fidx.sync());
    if (o.features) DFLASH_RETURN_IF_ERROR(write_text_atomic(ocount, std::to_string(done.size())));
    st.seqs_this_run += wave;
    first += wave;
    if (bar)
      bar->update(done.size(), strfmt("%.1f tok/s", st.gen_tokens / std::max(1e-9, timer.seconds())));
  }
  if (bar) bar->finish();
  st.seqs_total = static_cast<int64_t>(done.size());
  st.complete = st.seqs_total >= want;
  st.seconds = timer.seconds();
  return st;
}

}  // namespace dflash::engine
