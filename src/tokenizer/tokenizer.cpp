#include "tokenizer/tokenizer.h"

#include <algorithm>
#include <cstring>
#include <array>
#include <mutex>
#include <queue>
#include <unordered_map>

#include "tokenizer/normalize.h"
#include "tokenizer/pretokenizer.h"
#include "tokenizer/utf8.h"

namespace dflash::tokenizer {

using util::Result;
using util::Status;

namespace {

// Open-addressing map (left id, right id) -> (rank, merged id). The merge loop does one lookup per
// adjacent pair, so this is the hottest structure of encoding; std::unordered_map is ~3x slower.
class MergeTable {
 public:
  struct Entry {
    uint64_t key;  // (left << 32) | right; kEmpty = free
    int32_t rank;
    int32_t merged;
  };
  static constexpr uint64_t kEmpty = ~uint64_t{0};

  void reserve(size_t n) {
    size_t cap = 16;
    while (cap < n * 2) cap <<= 1;
    slots_.assign(cap, Entry{kEmpty, 0, 0});
    mask_ = cap - 1;
  }
  // Keeps the first insertion of a pair (lowest rank), like HF.
  void insert(int32_t left, int32_t right, int32_t rank, int32_t merged) {
    const uint64_t key = make_key(left, right);
    for (size_t i = hash(key) & mask_;; i = (i + 1) & mask_) {
      if (slots_[i].key == key) return;
      if (slots_[i].key == kEmpty) {
        slots_[i] = Entry{key, rank, merged};
        return;
      }
    }
  }
  const Entry* find(int32_t left, int32_t right) const {
    const uint64_t key = make_key(left, right);
    for (size_t i = hash(key) & mask_;; i = (i + 1) & mask_) {
      const Entry& e = slots_[i];
      if (e.key == key) return &e;
      if (e.key == kEmpty) return nullptr;
    }
  }

 private:
  static uint64_t make_key(int32_t l, int32_t r) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(l)) << 32) | static_cast<uint32_t>(r);
  }
  static size_t hash(uint64_t k) {
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    return static_cast<size_t>(k);
  }
  std::vector<Entry> slots_;
  size_t mask_ = 0;
};

// Cache of BPE results per piece: open addressing over arenas (no allocation per entry). When the
// table is half full everything is dropped: pieces follow a Zipf law, the hot ones return at once.
class PieceCache {
 public:
  static constexpr size_t kSlots = size_t{1} << 17;
  PieceCache() : slots_(kSlots) {}
  // Appends the cached ids of `piece` to `out` and returns true, or returns false.
  bool lookup(std::string_view piece, uint64_t h, std::vector<int32_t>& out) const {
    for (size_t i = h & (kSlots - 1);; i = (i + 1) & (kSlots - 1)) {
      const Slot& s = slots_[i];
      if (s.key_len == 0) return false;
      if (s.hash == h && s.key_len == piece.size() &&
          std::memcmp(keys_.data() + s.key_off, piece.data(), piece.size()) == 0) {
        out.insert(out.end(), ids_.begin() + s.ids_off, ids_.begin() + s.ids_off + s.ids_len);
        return true;
      }
    }
  }
  void insert(std::string_view piece, uint64_t h, const int32_t* ids, size_t n) {
    if (used_ * 2 >= kSlots) clear();
    size_t i = h & (kSlots - 1);
    while (slots_[i].key_len != 0) i = (i + 1) & (kSlots - 1);
    slots_[i] = Slot{h, static_cast<uint32_t>(keys_.size()), static_cast<uint32_t>(piece.size()),
                     static_cast<uint32_t>(ids_.size()), static_cast<uint32_t>(n)};
    keys_.append(piece);
    ids_.insert(ids_.end(), ids, ids + n);
    ++used_;
  }
  void clear() {
    std::fill(slots_.begin(), slots_.end(), Slot{});
    keys_.clear();
    ids_.clear();
    used_ = 0;
  }
  static uint64_t hash(std::string_view s) {  // FNV-1a, then a final mix
    uint64_t h = 0xcbf29ce484222325ULL;
    for (char c : s) h = (h ^ static_cast<uint8_t>(c)) * 0x100000001b3ULL;
    h ^= h >> 29;
    return h;
  }

 private:
  struct Slot {
    uint64_t hash = 0;
    uint32_t key_off = 0, key_len = 0, ids_off = 0, ids_len = 0;  // key_len 0 = empty
  };
  std::vector<Slot> slots_;
  std::string keys_;
  std::vector<int32_t> ids_;
  size_t used_ = 0;
};

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};

// Unicode White_Space (Rust char::is_whitespace), for the lstrip/rstrip flags of added tokens.
bool is_white_space(uint32_t cp) {
  return (cp >= 9 && cp <= 13) || cp == 32 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
         (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F ||
         cp == 0x3000;
}

// Decodes the last code point before `end` (valid UTF-8).
uint32_t last_cp(std::string_view s, size_t end, size_t* start) {
  size_t i = end;
  do {
    --i;
  } while (i > 0 && (static_cast<uint8_t>(s[i]) & 0xC0) == 0x80);
  *start = i;
  size_t j = i;
  return utf8_decode(s, j);
}

bool is_word_char(uint32_t cp);

// Added-token matcher: leftmost-longest over the token contents (the semantics of HF's
// aho-corasick MatchKind::LeftmostLongest). Candidates are bucketed by first byte, longest first.
class AddedMatcher {
 public:
  void add(const AddedToken* t) {
    if (t->content.empty()) return;
    auto& b = buckets_[static_cast<uint8_t>(t->content[0])];
    b.push_back(t);
    std::stable_sort(b.begin(), b.end(),
                     [](const AddedToken* a, const AddedToken* c) { return a->content.size() > c->content.size(); });
    any_ = true;
  }
  bool empty() const { return !any_; }

  struct Piece {
    size_t begin, end;
    const AddedToken* token;  // nullptr = plain text
  };
  // Splits `text` into plain-text and added-token pieces (HF AddedVocabulary::find_matches).
  void split(std::string_view text, bool parse_special, std::vector<Piece>& out) const {
    size_t start_offset = 0;
    size_t p = 0;
    while (p < text.size()) {
      const auto& b = buckets_[static_cast<uint8_t>(text[p])];
      const AddedToken* hit = nullptr;
      for (const AddedToken* t : b) {
        if (text.compare(p, t->content.size(), t->content) == 0) {
          hit = t;
          break;
        }
      }
      if (!hit) {
        ++p;
        continue;
      }
      size_t start = p, stop = p + hit->content.size();
      p = stop;  // a rejected match is still consumed, as in a non-overlapping match iterator
      if (hit->special && !parse_special) continue;
      if (hit->single_word) {
        size_t s0 = 0;
        const bool start_ok = start == 0 || !is_word_char(last_cp(text, start, &s0));
        size_t j = stop;
        const bool stop_ok = stop == text.size() || !is_word_char(utf8_decode(text, j));
        if (!start_ok || !stop_ok) continue;
      }
      if (hit->lstrip) {
        while (start > start_offset) {
          size_t s0 = 0;
          if (!is_white_space(last_cp(text, start, &s0))) break;
          start = s0;
        }
      }
      if (hit->rstrip) {
        while (stop < text.size()) {
          size_t j = stop;
          if (!is_white_space(utf8_decode(text, j))) break;
          stop = j;
        }
        p = stop;
      }
      if (start > start_offset) out.push_back({start_offset, start, nullptr});
      out.push_back({start, stop, hit});
      start_offset = stop;
    }
    if (start_offset < text.size()) out.push_back({start_offset, text.size(), nullptr});
  }

 private:
  std::array<std::vector<const AddedToken*>, 256> buckets_;
  bool any_ = false;
};

}  // namespace

}  // namespace dflash::tokenizer

#include <utf8proc.h>

namespace dflash::tokenizer {
namespace {
bool is_word_char(uint32_t cp) {  // Rust char::is_alphanumeric, approximated by L* and N*
  const utf8proc_property_t* p = utf8proc_get_property(static_cast<utf8proc_int32_t>(cp));
  switch (p->category) {
    case UTF8PROC_CATEGORY_LU: case UTF8PROC_CATEGORY_LL: case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM: case UTF8PROC_CATEGORY_LO: case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_NL: case UTF8PROC_CATEGORY_NO:
      return true;
    default:
      return false;
  }
}
}  // namespace

struct Tokenizer::Impl {
  TokenizerData data;
  PreTokenizer pretok;
  std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>> vocab;  // token text -> id
  std::vector<std::string> id_bytes;  // decoded bytes per id
  std::vector<uint8_t> special;       // 1 = special added token
  std::array<int32_t, 256> byte_ids{};
  MergeTable merges;
  std::vector<AddedToken> added;  // owned copies (data.added_tokens or derived)
  AddedMatcher raw_matcher;       // tokens with normalized=false: matched on the input text
  AddedMatcher norm_matcher;      // normalized=true: matched on NFC text
  size_t heap_threshold = 64;

  static constexpr size_t kCachePieceMax = 128;  // longer pieces are rare; not worth caching
  mutable std::mutex cache_mu;
  mutable PieceCache cache;

  explicit Impl(PreTokenizer p) : pretok(std::move(p)) {}

  void bpe_scan(std::string_view piece, std::vector<int32_t>& out) const;
  void bpe_heap(std::string_view piece, std::vector<int32_t>& out) const;
  void bpe(std::string_view piece, std::vector<int32_t>& out) const {
    if (piece.size() == 1) {
      out.push_back(byte_ids[static_cast<uint8_t>(piece[0])]);
      return;
    }
    if (data.ignore_merges) {
      // HF: a piece that is a whole vocabulary entry is emitted as is.
      auto it = vocab.find(bytes_to_byte_level(piece));
      if (it != vocab.end()) {
        out.push_back(it->second);
        return;
      }
    }
    if (piece.size() > heap_threshold) {
      bpe_heap(piece, out);
    } else {
      bpe_scan(piece, out);
    }
  }
  void bpe_cached(std::string_view piece, std::vector<int32_t>& out) const {
    if (piece.size() > kCachePieceMax) {
      bpe(piece, out);
      return;
    }
    const uint64_t h = PieceCache::hash(piece);
    if (cache.lookup(piece, h, out)) return;
    const size_t before = out.size();
    bpe(piece, out);
    cache.insert(piece, h, out.data() + before, out.size() - before);
  }
  Status encode_text(std::string_view text, std::vector<int32_t>& out) const;  // no added tokens
};

// Linear scan: for short pieces (almost all of them) a rank array beats a heap. Each step merges the
// lowest-ranked pair, leftmost on ties, exactly the order of HF's priority queue.
void Tokenizer::Impl::bpe_scan(std::string_view piece, std::vector<int32_t>& out) const {
  constexpr int32_t kNone = INT32_MAX;
  const size_t n0 = piece.size();
  int32_t sym_buf[128], rank_buf[128], merged_buf[128];
  std::vector<int32_t> sym_v, rank_v, merged_v;
  int32_t *sym = sym_buf, *rank = rank_buf, *merged = merged_buf;
  if (n0 > 128) {
    sym_v.resize(n0), rank_v.resize(n0), merged_v.resize(n0);
    sym = sym_v.data(), rank = rank_v.data(), merged = merged_v.data();
  }
  for (size_t i = 0; i < n0; ++i) sym[i] = byte_ids[static_cast<uint8_t>(piece[i])];
  size_t n = n0;
  auto set_rank = [&](size_t i) {
    const MergeTable::Entry* e = merges.find(sym[i], sym[i + 1]);
    rank[i] = e ? e->rank : kNone;
    merged[i] = e ? e->merged : -1;
  };
  for (size_t i = 0; i + 1 < n; ++i) set_rank(i);
  while (n > 1) {
    size_t best = 0;
    int32_t best_rank = kNone;
    for (size_t i = 0; i + 1 < n; ++i) {
      if (rank[i] < best_rank) {
        best_rank = rank[i];
        best = i;
      }
    }
    if (best_rank == kNone) break;
    sym[best] = merged[best];
    // Remove symbol best+1 and the pair (best+1, best+2)'s slot.
    for (size_t i = best + 1; i + 1 < n; ++i) {
      sym[i] = sym[i + 1];
      rank[i] = rank[i + 1];
      merged[i] = merged[i + 1];
    }
    --n;
    if (best > 0) set_rank(best - 1);
    if (best + 1 < n) set_rank(best);
  }
  out.insert(out.end(), sym, sym + n);
}

// Heap version for long pieces (long letter runs, whitespace runs): O(n log n) instead of O(n^2).
void Tokenizer::Impl::bpe_heap(std::string_view piece, std::vector<int32_t>& out) const {
  const size_t n = piece.size();
  std::vector<int32_t> sym(n), prev(n), next(n);
  for (size_t i = 0; i < n; ++i) {
    sym[i] = byte_ids[static_cast<uint8_t>(piece[i])];
    prev[i] = static_cast<int32_t>(i) - 1;
    next[i] = i + 1 < n ? static_cast<int32_t>(i + 1) : -1;
  }
  struct Cand {
    int32_t rank, left, right, left_id, right_id, merged;
    bool operator>(const Cand& o) const { return rank != o.rank ? rank > o.rank : left > o.left; }
  };
  std::priority_queue<Cand, std::vector<Cand>, std::greater<Cand>> pq;
  auto push = [&](int32_t l) {
    if (l < 0) return;
    const int32_t r = next[l];
    if (r < 0) return;
    const MergeTable::Entry* e = merges.find(sym[l], sym[r]);
    if (e) pq.push({e->rank, l, r, sym[l], sym[r], e->merged});
  };
  for (size_t i = 0; i + 1 < n; ++i) push(static_cast<int32_t>(i));
  while (!pq.empty()) {
    const Cand c = pq.top();
    pq.pop();
    // Stale if either side was merged away or changed since the candidate was pushed.
    if (sym[c.left] != c.left_id || next[c.left] != c.right || sym[c.right] != c.right_id) continue;
    sym[c.left] = c.merged;
    const int32_t rn = next[c.right];
    next[c.left] = rn;
    if (rn >= 0) prev[rn] = c.left;
    sym[c.right] = -1;
    next[c.right] = -2;
    push(prev[c.left]);
    push(c.left);
  }
  for (int32_t i = 0; i >= 0; i = next[i]) out.push_back(sym[i]);
}

Status Tokenizer::Impl::encode_text(std::string_view text, std::vector<int32_t>& out) const {
  return pretok.split(text, [&](std::string_view piece) { bpe_cached(piece, out); });
}

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

Result<Tokenizer> Tokenizer::create(TokenizerData data) {
  if (data.model != "gpt2") {
    return util::unsupported("tokenizer model '" + data.model + "' is not supported (expected 'gpt2', byte-level BPE)");
  }
  std::string regex = data.pre_regex;
  if (regex.empty()) {
    regex = std::string(regex_for_pre(data.pre));
    if (regex.empty()) {
      return util::unsupported("tokenizer pre-tokenizer '" + data.pre +
                               "' is not supported (expected 'qwen2' or 'qwen35')");
    }
  }
  if (data.tokens.empty()) return util::invalid_argument("tokenizer has no tokens");
  if (data.token_type.size() != data.tokens.size()) {
    return util::invalid_argument(util::strfmt("tokenizer has %zu tokens but %zu token types", data.tokens.size(),
                                               data.token_type.size()));
  }
  if (data.tokens.size() > static_cast<size_t>(INT32_MAX)) return util::invalid_argument("tokenizer: too many tokens");
  DFLASH_ASSIGN_OR_RETURN(PreTokenizer pretok, PreTokenizer::create(regex));
  auto impl = std::make_unique<Impl>(std::move(pretok));
  const int32_t n = static_cast<int32_t>(data.tokens.size());
  auto check_id = [&](int32_t id, const char* what) -> Status {
    if (id < -1 || id >= n) {
      return util::invalid_argument(util::strfmt("tokenizer %s id %d is outside the vocabulary (%d tokens)", what, id, n));
    }
    return Status::ok();
  };
  DFLASH_RETURN_IF_ERROR(check_id(data.bos_id, "bos"));
  DFLASH_RETURN_IF_ERROR(check_id(data.eos_id, "eos"));
  DFLASH_RETURN_IF_ERROR(check_id(data.pad_id, "pad"));
  DFLASH_RETURN_IF_ERROR(check_id(data.eot_id, "eot"));

  // Added tokens: given (tokenizer.json) or derived from token types (GGUF).
  if (data.added_tokens.empty()) {
    for (int32_t id = 0; id < n; ++id) {
      const auto t = static_cast<TokenType>(data.token_type[id]);
      // Empty or non-UTF-8 texts can never match input text: skip them rather than refuse the file.
      const std::string& text = data.tokens[static_cast<size_t>(id)];
      if ((t == TokenType::kControl || t == TokenType::kUserDefined) && !text.empty() && utf8_is_valid(text)) {
        AddedToken a;
        a.id = id;
        a.content = data.tokens[id];
        a.special = t == TokenType::kControl;
        impl->added.push_back(std::move(a));
      }
    }
  } else {
    impl->added = data.added_tokens;
  }
  impl->special.assign(static_cast<size_t>(n), 0);
  std::vector<uint8_t> is_added(static_cast<size_t>(n), 0);
  for (const AddedToken& a : impl->added) {
    if (a.id < 0 || a.id >= n) {
      return util::invalid_argument(util::strfmt("added token '%s' has id %d outside the vocabulary (%d tokens)",
                                                 a.content.c_str(), a.id, n));
    }
    if (a.content.empty() || !utf8_is_valid(a.content)) {
      return util::invalid_argument(util::strfmt("added token id %d has empty or invalid UTF-8 content", a.id));
    }
    if (a.special) impl->special[static_cast<size_t>(a.id)] = 1;
    is_added[static_cast<size_t>(a.id)] = 1;
  }

  // Vocabulary and decoded bytes.
  impl->vocab.reserve(static_cast<size_t>(n));
  impl->id_bytes.resize(static_cast<size_t>(n));
  for (int32_t id = 0; id < n; ++id) {
    const std::string& text = data.tokens[static_cast<size_t>(id)];
    const auto type = static_cast<TokenType>(data.token_type[static_cast<size_t>(id)]);
    impl->vocab.emplace(text, id);  // first id wins on duplicates
    if (is_added[static_cast<size_t>(id)] || type == TokenType::kControl || type == TokenType::kUserDefined) {
      impl->id_bytes[static_cast<size_t>(id)] = text;  // added tokens are plain text
    } else if (type == TokenType::kUnused) {
      impl->id_bytes[static_cast<size_t>(id)].clear();
    } else if (!byte_level_to_bytes(text, impl->id_bytes[static_cast<size_t>(id)])) {
      return util::invalid_argument(util::strfmt(
          "token %d ('%s') is not in byte-level form (a gpt2 vocabulary maps every byte to one of 256 "
          "printable code points)", id, text.c_str()));
    }
  }
  for (int b = 0; b < 256; ++b) {
    std::string s;
    utf8_append(s, byte_to_unicode(static_cast<uint8_t>(b)));
    auto it = impl->vocab.find(s);
    if (it == impl->vocab.end()) {
      return util::invalid_argument(util::strfmt("byte-level vocabulary lacks the token for byte 0x%02X ('%s')", b, s.c_str()));
    }
    impl->byte_ids[static_cast<size_t>(b)] = it->second;
  }

  // Merges: "left right" -> ids; the merged token must exist (as HF requires).
  impl->merges.reserve(data.merges.size());
  std::string joined;
  for (size_t r = 0; r < data.merges.size(); ++r) {
    const std::string& m = data.merges[r];
    const size_t sp = m.find(' ', 1);  // the first symbol is never empty; a space would be 'Ġ'
    if (sp == std::string::npos || sp + 1 >= m.size()) {
      return util::invalid_argument(util::strfmt("merge %zu ('%s') is not of the form 'left right'", r, m.c_str()));
    }
    const std::string_view l(m.data(), sp), rr(m.data() + sp + 1, m.size() - sp - 1);
    auto il = impl->vocab.find(l), ir = impl->vocab.find(rr);
    joined.assign(l);
    joined.append(rr);
    auto im = impl->vocab.find(joined);
    if (il == impl->vocab.end() || ir == impl->vocab.end() || im == impl->vocab.end()) {
      return util::invalid_argument(util::strfmt("merge %zu ('%s') uses or makes a token missing from the vocabulary",
                                                 r, m.c_str()));
    }
    impl->merges.insert(il->second, ir->second, static_cast<int32_t>(r), im->second);
  }

  for (const AddedToken& a : impl->added) (a.normalized ? impl->norm_matcher : impl->raw_matcher).add(&a);
  impl->data = std::move(data);
  return Tokenizer(std::move(impl));
}

Status Tokenizer::encode_append(std::string_view text_in, std::vector<int32_t>& out, const EncodeOptions& opt) const {
  const Impl& m = *impl_;
  if (opt.add_bos && m.data.add_bos && m.data.bos_id >= 0) out.push_back(m.data.bos_id);
  std::string repaired;
  std::string_view text = text_in;
  if (!utf8_is_valid(text)) {
    if (opt.invalid_utf8 == InvalidUtf8::kError) {
      size_t i = 0;
      while (i < text.size()) {
        const size_t k = static_cast<uint8_t>(text[i]) < 0x80 ? 1 : utf8_valid_len(text, i);
        if (k == 0) break;
        i += k;
      }
      return util::invalid_argument(util::strfmt("text is not valid UTF-8 (byte 0x%02X at offset %zu)",
                                                 static_cast<uint8_t>(text[i]), i));
    }
    repaired = utf8_make_valid(text);
    text = repaired;
  }
  std::lock_guard<std::mutex> lock(m.cache_mu);
  std::vector<AddedMatcher::Piece> pieces, sub;
  m.raw_matcher.split(text, opt.parse_special, pieces);
  for (const auto& p : pieces) {
    if (p.token) {
      out.push_back(p.token->id);
      continue;
    }
    const std::string_view seg = text.substr(p.begin, p.end - p.begin);
    std::string normed;
    std::string_view s = seg;
    if (m.data.nfc && !nfc_quick_check(seg)) {
      normed = nfc(seg);
      s = normed;
    }
    if (m.norm_matcher.empty()) {
      DFLASH_RETURN_IF_ERROR(m.encode_text(s, out));
      continue;
    }
    sub.clear();
    m.norm_matcher.split(s, opt.parse_special, sub);
    for (const auto& q : sub) {
      if (q.token) {
        out.push_back(q.token->id);
      } else {
        DFLASH_RETURN_IF_ERROR(m.encode_text(s.substr(q.begin, q.end - q.begin), out));
      }
    }
  }
  return Status::ok();
}

Result<std::vector<int32_t>> Tokenizer::encode(std::string_view text, const EncodeOptions& opt) const {
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 4);
  DFLASH_RETURN_IF_ERROR(encode_append(text, out, opt));
  return out;
}

Result<std::string_view> Tokenizer::token_bytes(int32_t id) const {
  if (id < 0 || id >= n_tokens()) {
    return util::out_of_range(util::strfmt("token id %d is outside the vocabulary (0..%d)", id, n_tokens() - 1));
  }
  return std::string_view(impl_->id_bytes[static_cast<size_t>(id)]);
}

Result<std::string> Tokenizer::decode_bytes(std::span<const int32_t> ids, const DecodeOptions& opt) const {
  std::string out;
  for (size_t i = 0; i < ids.size(); ++i) {
    const int32_t id = ids[i];
    if (id < 0 || id >= n_tokens()) {
      return util::out_of_range(util::strfmt("cannot decode token id %d at position %zu: outside the vocabulary (0..%d)",
                                             id, i, n_tokens() - 1));
    }
    if (opt.skip_special && impl_->special[static_cast<size_t>(id)]) continue;
    out += impl_->id_bytes[static_cast<size_t>(id)];
  }
  return out;
}

Result<std::string> Tokenizer::decode(std::span<const int32_t> ids, const DecodeOptions& opt) const {
  DFLASH_ASSIGN_OR_RETURN(std::string raw, decode_bytes(ids, opt));
  if (utf8_is_valid(raw)) return raw;
  return utf8_make_valid(raw);
}

int32_t Tokenizer::n_tokens() const { return static_cast<int32_t>(impl_->data.tokens.size()); }
const std::string& Tokenizer::token_text(int32_t id) const {
  static const std::string kEmpty;
  return id >= 0 && id < n_tokens() ? impl_->data.tokens[static_cast<size_t>(id)] : kEmpty;
}
std::optional<int32_t> Tokenizer::token_id(std::string_view text) const {
  auto it = impl_->vocab.find(text);
  if (it == impl_->vocab.end()) return std::nullopt;
  return it->second;
}
TokenType Tokenizer::token_type(int32_t id) const {
  return id >= 0 && id < n_tokens() ? static_cast<TokenType>(impl_->data.token_type[static_cast<size_t>(id)])
                                    : TokenType::kUnknown;
}
bool Tokenizer::is_special(int32_t id) const {
  return id >= 0 && id < n_tokens() && impl_->special[static_cast<size_t>(id)];
}
int32_t Tokenizer::bos_id() const { return impl_->data.bos_id; }
int32_t Tokenizer::eos_id() const { return impl_->data.eos_id; }
int32_t Tokenizer::pad_id() const { return impl_->data.pad_id; }
int32_t Tokenizer::eot_id() const { return impl_->data.eot_id; }
const TokenizerData& Tokenizer::data() const { return impl_->data; }
void Tokenizer::set_heap_threshold_for_testing(size_t n) { impl_->heap_threshold = std::max<size_t>(n, 1); }
void Tokenizer::clear_cache() const {
  std::lock_guard<std::mutex> lock(impl_->cache_mu);
  impl_->cache.clear();
}

}  // namespace dflash::tokenizer
