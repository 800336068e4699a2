// Conformance with Hugging Face `tokenizers` (tools/reference/tokenizer_reference.py) on the corpus
// of tests/data/tokenizer (see SOURCE.md): identical ids, and decode(encode(x)) == NFC(x).
#include <gtest/gtest.h>

#include <ctime>

#include "test_data.h"
#include "tokenizer/normalize.h"
#include "tokenizer/utf8.h"

namespace dflash::tokenizer {
namespace {

using namespace testing;

std::string describe_mismatch(const Tokenizer& tok, const std::vector<int32_t>& got, const std::vector<int32_t>& want) {
  size_t i = 0;
  while (i < got.size() && i < want.size() && got[i] == want[i]) ++i;
  std::string s = util::strfmt("first difference at id %zu (got %zu ids, want %zu)\n", i, got.size(), want.size());
  auto show = [&](const std::vector<int32_t>& v, const char* label) {
    s += label;
    for (size_t k = i >= 4 ? i - 4 : 0; k < std::min(v.size(), i + 6); ++k) {
      s += util::strfmt(" %d[%s]", v[k], tok.token_text(v[k]).c_str());
    }
    s += "\n";
  };
  show(got, "  got: ");
  show(want, "  want:");
  return s;
}

void check_corpus(const Tokenizer& tok, const std::string& name) {
  const ExpectedIds& e = expected_ids();
  size_t ti = 0;
  while (ti < e.names.size() && e.names[ti] != name) ++ti;
  ASSERT_LT(ti, e.names.size()) << "no expected ids for " << name;
  const auto& docs = corpus();
  ASSERT_EQ(e.ids[ti].size(), docs.size());
  size_t total_ids = 0, total_bytes = 0;
  for (size_t d = 0; d < docs.size(); d += doc_stride()) {
    EncodeOptions opt;
    opt.parse_special = docs[d].parse_special;
    auto ids = tok.encode(docs[d].bytes, opt);
    ASSERT_TRUE(ids.is_ok()) << docs[d].name << ": " << ids.status().to_string();
    EXPECT_TRUE(*ids == e.ids[ti][d]) << name << " " << docs[d].name << ": "
                                      << describe_mismatch(tok, *ids, e.ids[ti][d]);
    total_ids += ids->size();
    total_bytes += docs[d].bytes.size();
  }
  if (doc_stride() == 1) {
    EXPECT_GT(total_bytes, size_t{2} << 20) << "the corpus must stay >= 2 MB";
  }
  EXPECT_GT(total_ids, size_t{100000});
}

TEST(TokenizerConformance, Qwen3MatchesReferenceOnCorpus) { check_corpus(qwen3(), "qwen3"); }
TEST(TokenizerConformance, Qwen35MatchesReferenceOnCorpus) { check_corpus(qwen35(), "qwen35"); }

// The heap merge loop (long pieces) must agree with the linear scan (short pieces): force every
// piece through the heap on a slice of the corpus.
TEST(TokenizerConformance, HeapMergeLoopMatchesReference) {
  auto d = parse_hf_tokenizer(qwen3_json(), "", "qwen3");
  ASSERT_TRUE(d.is_ok());
  auto tok = Tokenizer::create(std::move(d).value());
  ASSERT_TRUE(tok.is_ok());
  tok->set_heap_threshold_for_testing(1);
  const auto& docs = corpus();
  const auto& want = expected_ids().ids.at(0);
  const size_t step = sanitized() ? 9 : 2;
  for (size_t i = 0; i < docs.size(); i += step) {
    EncodeOptions opt;
    opt.parse_special = docs[i].parse_special;
    auto ids = tok->encode(docs[i].bytes, opt);
    ASSERT_TRUE(ids.is_ok());
    EXPECT_TRUE(*ids == want[i]) << docs[i].name << ": " << describe_mismatch(*tok, *ids, want[i]);
  }
}

TEST(TokenizerConformance, DecodeEncodeRoundTripsToNfc) {
  const Tokenizer& tok = qwen3();
  size_t exact = 0;
  for (size_t di = 0; di < corpus().size(); di += doc_stride()) {
    const auto& doc = corpus()[di];
    EncodeOptions opt;
    opt.parse_special = doc.parse_special;
    auto ids = tok.encode(doc.bytes, opt);
    ASSERT_TRUE(ids.is_ok());
    auto text = tok.decode(*ids);
    ASSERT_TRUE(text.is_ok());
    // The reference normalises to NFC and repairs invalid UTF-8 first; for NFC, valid text (all
    // real-text documents) this is the identity.
    // NFC applies to the text between added tokens; no document has a combining mark right after
    // an added token, so NFC of the whole is exact here.
    const std::string want = nfc(utf8_make_valid(doc.bytes));
    EXPECT_TRUE(*text == want) << doc.name;
    if (want == doc.bytes) ++exact;
  }
  // Most documents are valid NFC already: for them decode(encode(x)) == x byte for byte.
  EXPECT_GT(exact * doc_stride(), corpus().size() / 2);
}

double thread_cpu_seconds() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

// Not an assertion on speed (machines differ): prints MB/s for the report. CPU time of this thread,
// because the build machine is shared and wall time would measure the load.
TEST(TokenizerConformance, EncodeSpeed) {
  if (sanitized()) GTEST_SKIP() << "speed is meaningless under sanitizers";
  const auto& docs = corpus();
  for (const char* which : {"qwen3", "qwen35"}) {
    const Tokenizer& tok = std::string(which) == "qwen3" ? qwen3() : qwen35();
    for (bool real_only : {false, true}) {
      size_t bytes = 0;
      double best = 1e9;
      for (int rep = 0; rep < (sanitized() ? 1 : 3); ++rep) {
        tok.clear_cache();
        bytes = 0;
        const double t0 = thread_cpu_seconds();
        for (const auto& d : docs) {
          if (real_only && d.name.rfind("syn:", 0) == 0) continue;
          EncodeOptions opt;
          opt.parse_special = d.parse_special;
          auto r = tok.encode(d.bytes, opt);
          ASSERT_TRUE(r.is_ok());
          bytes += d.bytes.size();
        }
        best = std::min(best, thread_cpu_seconds() - t0);
      }
      std::printf("[ speed    ] %s encode [%s]: %.2f MB/s on %zu bytes (one thread, CPU time, cold cache, best of runs)\n",
                  which, real_only ? "real text" : "all", static_cast<double>(bytes) / best / 1e6, bytes);
    }
  }
}

}  // namespace
}  // namespace dflash::tokenizer
