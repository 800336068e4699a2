// Interpreter tests. Golden cases (tests/data/chat-templates/jinja_cases.json) were rendered by jinja2 in
// transformers' sandboxed environment (tools/reference/chat_template_reference.py); the hand-written tests
// below cover what Python cannot produce for us: our error format, limits and robustness.
#include "tokenizer/jinja.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <random>
#include <sstream>

namespace dflash::tokenizer::jinja {
namespace {

using Json = nlohmann::ordered_json;

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::string data_path(const std::string& name) { return std::string(DFLASH_TEST_DATA_DIR) + "/chat-templates/" + name; }

util::Result<std::string> run(const std::string& src, const Json& ctx = Json::object(), const RenderLimits& lim = {}) {
  auto t = Template::parse(src);
  if (!t.is_ok()) return t.status();
  return t->render(ctx, lim);
}

std::string render(const std::string& src, const Json& ctx = Json::object()) {
  auto r = run(src, ctx);
  return r.is_ok() ? *r : "ERROR: " + r.status().message();
}

// ------------------------------------------------------------------ golden cases from jinja2

struct GoldenCase {
  std::string name;
  std::string tmpl;
  Json context;
  bool expect_error = false;
  std::string expected;  // output, or the reference's error text
  int error_line = 0;    // 0 = the reference gives none
};

std::vector<GoldenCase> load_golden() {
  std::vector<GoldenCase> out;
  std::string text = read_file(data_path("jinja_cases.json"));
  if (text.empty()) return out;
  Json j = Json::parse(text);
  for (const auto& c : j["cases"]) {
    GoldenCase g;
    g.name = c["name"].get<std::string>();
    g.tmpl = c["template"].get<std::string>();
    g.context = c["context"];
    if (c.contains("error")) {
      g.expect_error = true;
      g.expected = c["error"].get<std::string>();
      if (c["error_line"].is_number()) g.error_line = c["error_line"].get<int>();
    } else {
      g.expected = c["expected"].get<std::string>();
    }
    out.push_back(std::move(g));
  }
  return out;
}

void PrintTo(const GoldenCase& c, std::ostream* os) { *os << c.name; }

class JinjaGolden : public ::testing::TestWithParam<GoldenCase> {};

TEST_P(JinjaGolden, MatchesJinja2) {
  const GoldenCase& g = GetParam();
  auto r = run(g.tmpl, g.context);
  if (!g.expect_error) {
    ASSERT_TRUE(r.is_ok()) << "template: " << g.tmpl << "\nerror: " << r.status().message();
    EXPECT_EQ(*r, g.expected) << "template: " << g.tmpl;
    return;
  }
  ASSERT_FALSE(r.is_ok()) << "jinja2 raised '" << g.expected << "' but we rendered: " << *r;
  const std::string& msg = r.status().message();
  if (g.error_line > 0) {
    EXPECT_NE(msg.find("line " + std::to_string(g.error_line)), std::string::npos) << msg;
  }
  // raise_exception() messages must come through verbatim.
  const std::string kRaised = "TemplateError: ";
  if (g.expected.rfind(kRaised, 0) == 0) {
    EXPECT_NE(msg.find(g.expected.substr(kRaised.size())), std::string::npos) << msg;
  }
}

std::string case_name(const ::testing::TestParamInfo<GoldenCase>& info) {
  std::string n;
  for (char c : info.param.name) n.push_back(std::isalnum(static_cast<unsigned char>(c)) ? c : '_');
  return n;
}

INSTANTIATE_TEST_SUITE_P(Cases, JinjaGolden, ::testing::ValuesIn(load_golden()), case_name);

TEST(JinjaGoldenFile, HasCases) { EXPECT_GE(load_golden().size(), 100u) << data_path("jinja_cases.json"); }

// ------------------------------------------------------------------ errors

TEST(JinjaErrors, ParseErrorNamesLineAndColumn) {
  auto r = run("line one\nline two\n  {{ 1 + }}");
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), util::ErrorCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("line 3, column 10"), std::string::npos) << r.status().message();
}

TEST(JinjaErrors, RuntimeErrorNamesLineAndConstruct) {
  auto r = run("a\n{% for m in messages %}\n{{ m.content.upper() }}\n{% endfor %}", Json{{"messages", Json::array({Json::object()})}});
  ASSERT_FALSE(r.is_ok());
  const std::string& msg = r.status().message();
  EXPECT_NE(msg.find("line 3"), std::string::npos) << msg;
  EXPECT_NE(msg.find("content"), std::string::npos) << msg;
}

TEST(JinjaErrors, RaiseExceptionMessageVerbatim) {
  auto r = run("{{ raise_exception('No user query found in messages.') }}");
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.status().message().find("No user query found in messages."), std::string::npos);
  EXPECT_NE(r.status().message().find("line 1"), std::string::npos);
}

TEST(JinjaErrors, UnsupportedStatementsAreClearErrors) {
  for (const char* src : {"{% include 'x' %}", "{% extends 'base' %}", "{% block b %}{% endblock %}",
                          "{% import 'm' as m %}", "{% do x.append(1) %}", "{% for x in y recursive %}{% endfor %}"}) {
    auto r = run(src);
    ASSERT_FALSE(r.is_ok()) << src;
    EXPECT_NE(r.status().message().find("line 1"), std::string::npos) << r.status().message();
  }
}

TEST(JinjaErrors, ContextMustBeObject) {
  auto t = Template::parse("x");
  ASSERT_TRUE(t.is_ok());
  EXPECT_FALSE(t->render(Json::array()).is_ok());
}

// ------------------------------------------------------------------ limits

TEST(JinjaLimits, RecursionDepthIsBounded) {
  auto r = run("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}");
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.status().message().find("nested too deeply"), std::string::npos) << r.status().message();
}

TEST(JinjaLimits, OutputSizeIsBounded) {
  RenderLimits lim;
  lim.max_output_bytes = 1 << 16;
  auto r = run("{% for i in range(100000) %}xxxxxxxxxx{% endfor %}", Json::object(), lim);
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.status().message().find("output too large"), std::string::npos) << r.status().message();
  r = run("{{ 'x' * 100000000 }}", Json::object(), lim);
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.status().message().find("too large"), std::string::npos) << r.status().message();
}

TEST(JinjaLimits, WorkIsBounded) {
  RenderLimits lim;
  lim.max_work = 100000;
  auto r = run("{% for i in range(1000) %}{% for j in range(1000) %}{% endfor %}{% endfor %}", Json::object(), lim);
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.status().message().find("work limit"), std::string::npos) << r.status().message();
}

TEST(JinjaLimits, DeepNestingInSourceIsAnErrorNotAStackOverflow) {
  std::string deep(5000, '(');
  EXPECT_FALSE(run("{{ " + deep + "1" + std::string(5000, ')') + " }}").is_ok());
  std::string ifs;
  for (int i = 0; i < 3000; ++i) ifs += "{% if true %}";
  EXPECT_FALSE(run(ifs).is_ok());
  EXPECT_FALSE(run("{{ " + std::string(5000, '-') + "1 }}").is_ok());
  EXPECT_FALSE(run("{{ x" + std::string(3000, '|').insert(0, "") + " }}").is_ok());
}

TEST(JinjaLimits, SelfReferencingNamespaceDoesNotHangOrLeak) {
  auto r = run("{% set ns = namespace() %}{% set ns.me = ns %}{{ ns.me.me.me is defined }}");
  ASSERT_TRUE(r.is_ok()) << r.status().message();
  EXPECT_EQ(*r, "True");
  EXPECT_FALSE(run("{% set ns = namespace() %}{% set ns.me = ns %}{{ ns }}").is_ok());
}

// ------------------------------------------------------------------ semantics not covered by goldens

TEST(JinjaSemantics, StrftimeNowFormats) {
  std::string year = render("{{ strftime_now('%Y') }}");
  ASSERT_EQ(year.size(), 4u) << year;
  EXPECT_GE(std::atoi(year.c_str()), 2024);
}

TEST(JinjaSemantics, ContextKeyOrderIsKept) {
  Json ctx = Json::parse(R"({"d": {"zeta": 1, "alpha": 2, "mid": 3}})");
  EXPECT_EQ(render("{{ d|tojson }} {% for k in d %}{{ k }}{% endfor %}", ctx), R"({"zeta": 1, "alpha": 2, "mid": 3} zetaalphamid)");
}

TEST(JinjaSemantics, InvalidUtf8PassesThroughUnchanged) {
  std::string bad = "a\xff\xfe" "b\xc3";
  EXPECT_EQ(render("{{ s }}|{{ s|length }}|{{ s[::-1][::-1] }}", Json{{"s", "ok"}}), "ok|2|ok");
  EXPECT_EQ(render(bad + "{{ 1 }}"), bad + "1");
}

// ------------------------------------------------------------------ robustness: mutated real templates

TEST(JinjaRobustness, MutatedTemplatesNeverCrash) {
  std::vector<std::string> seeds;
  for (const char* f : {"qwen3.jinja", "qwen3.5.jinja", "qwen3-coder.jinja", "chatml.jinja"}) seeds.push_back(read_file(data_path(f)));
  Json ctx = Json::parse(R"({"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"},
    {"role": "assistant", "content": "<think>r</think>a", "tool_calls": [{"function": {"name": "f", "arguments": {"x": 1}}}]},
    {"role": "tool", "content": "t"}], "tools": [{"type": "function", "function": {"name": "f"}}],
    "add_generation_prompt": true})");
  static const char* kSnippets[] = {"{{", "}}", "{%", "%}", "{#", "#}", "-", "|", "(", ")", "[", "]", "'", "\"",
                                    " if ", " for ", "endif", "endfor", "loop", "ns.", "namespace(", ".split(", "~",
                                    "**", "[::-1]", "is not", "macro", "caller()", "\n", "\\"};
  std::mt19937 rng(12345);
  const int iters = std::getenv("DFLASH_SANITIZED") ? 300 : 2000;
  RenderLimits lim;
  lim.max_output_bytes = 1 << 20;
  lim.max_work = 1 << 22;
  int rendered = 0;
  for (int i = 0; i < iters; ++i) {
    std::string s = seeds[rng() % seeds.size()];
    int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits && !s.empty(); ++e) {
      size_t pos = rng() % s.size();
      switch (rng() % 3) {
        case 0: s.erase(pos, 1 + rng() % 8); break;
        case 1: s.insert(pos, kSnippets[rng() % (sizeof(kSnippets) / sizeof(kSnippets[0]))]); break;
        default: s[pos] = static_cast<char>(rng() % 256); break;
      }
    }
    auto r = run(s, ctx, lim);  // must return (ok or error), never crash or hang
    if (r.is_ok()) {
      ++rendered;
    } else {
      EXPECT_FALSE(r.status().message().empty());
    }
  }
  EXPECT_GT(rendered, 0);
}

}  // namespace
}  // namespace dflash::tokenizer::jinja
