// Byte-identical chat rendering against transformers (render_jinja_template / apply_chat_template) for the
// published Qwen3, Qwen3.5 and Qwen3-Coder templates and the built-in ChatML template.
// Goldens: tests/data/chat-templates/cases.json from tools/reference/chat_template_reference.py.
#include "tokenizer/chat_template.h"

#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <sstream>

namespace dflash::tokenizer {
namespace {

using Json = nlohmann::ordered_json;

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::string data_path(const std::string& name) { return std::string(DFLASH_TEST_DATA_DIR) + "/chat-templates/" + name; }

struct ChatCase {
  std::string name;
  std::string tmpl;
  Json messages;
  Json tools;  // null = not passed
  bool add_generation_prompt = false;
  Json kwargs;
  bool expect_error = false;
  std::string expected;
};

std::vector<ChatCase> load_cases() {
  std::vector<ChatCase> out;
  std::string text = read_file(data_path("cases.json"));
  if (text.empty()) return out;
  Json j = Json::parse(text);
  for (const auto& c : j["cases"]) {
    ChatCase k;
    k.name = c["name"].get<std::string>();
    k.tmpl = c["template"].get<std::string>();
    k.messages = c["messages"];
    k.tools = c.contains("tools") ? c["tools"] : Json(nullptr);
    k.add_generation_prompt = c["add_generation_prompt"].get<bool>();
    k.kwargs = c["kwargs"];
    k.expect_error = c.contains("error");
    k.expected = c[k.expect_error ? "error" : "expected"].get<std::string>();
    out.push_back(std::move(k));
  }
  return out;
}

const ChatTemplate& template_for(const std::string& file) {
  static std::map<std::string, ChatTemplate> cache;
  auto it = cache.find(file);
  if (it == cache.end()) {
    auto t = ChatTemplate::from_source(read_file(data_path(file)));
    if (!t.is_ok()) {
      ADD_FAILURE() << file << ": " << t.status().message();
      t = ChatTemplate::chatml();
    }
    it = cache.emplace(file, std::move(t).value()).first;
  }
  return it->second;
}

ChatOptions options_for(const ChatCase& c) {
  ChatOptions o;
  o.add_generation_prompt = c.add_generation_prompt;
  if (!c.tools.is_null()) o.tools = c.tools;
  for (auto it = c.kwargs.begin(); it != c.kwargs.end(); ++it) {
    if (it.key() == "eos_token") o.eos_token = it.value().get<std::string>();
    else if (it.key() == "bos_token") o.bos_token = it.value().get<std::string>();
    else if (it.key() == "enable_thinking") o.enable_thinking = it.value().get<bool>();
    else o.extra_context[it.key()] = it.value();
  }
  return o;
}

void PrintTo(const ChatCase& c, std::ostream* os) { *os << c.name; }

class ChatTemplateGolden : public ::testing::TestWithParam<ChatCase> {};

TEST_P(ChatTemplateGolden, MatchesTransformers) {
  const ChatCase& c = GetParam();
  auto r = template_for(c.tmpl).render(c.messages, options_for(c));
  if (!c.expect_error) {
    ASSERT_TRUE(r.is_ok()) << r.status().message();
    EXPECT_EQ(*r, c.expected);
    return;
  }
  ASSERT_FALSE(r.is_ok()) << "transformers raised '" << c.expected << "' but we rendered:\n" << *r;
  const std::string kRaised = "TemplateError: ";
  if (c.expected.rfind(kRaised, 0) == 0) {
    EXPECT_NE(r.status().message().find(c.expected.substr(kRaised.size())), std::string::npos) << r.status().message();
  }
}

std::string case_name(const ::testing::TestParamInfo<ChatCase>& info) {
  std::string n;
  for (char ch : info.param.name) n.push_back(std::isalnum(static_cast<unsigned char>(ch)) ? ch : '_');
  return n;
}

INSTANTIATE_TEST_SUITE_P(Cases, ChatTemplateGolden, ::testing::ValuesIn(load_cases()), case_name);

TEST(ChatTemplate, GoldenFileCoversAllTemplates) {
  auto cases = load_cases();
  std::map<std::string, int> per_template, errors;
  for (const auto& c : cases) {
    per_template[c.tmpl]++;
    if (c.expect_error) errors[c.tmpl]++;
  }
  for (const char* t : {"qwen3.jinja", "qwen3.5.jinja", "qwen3-coder.jinja", "chatml.jinja"}) {
    EXPECT_GE(per_template[t], 50) << t;
  }
  EXPECT_GE(errors["qwen3.5.jinja"], 3);
}

TEST(ChatTemplate, BuiltinChatMlMatchesTestedSource) {
  EXPECT_EQ(std::string(ChatTemplate::chatml_source()), read_file(data_path("chatml.jinja")));
  EXPECT_TRUE(ChatTemplate::chatml().is_fallback());
}

TEST(ChatTemplate, GgufWithoutTemplateFallsBackToChatMl) {
  for (const std::optional<std::string>& src : {std::optional<std::string>(), std::optional<std::string>("")}) {
    auto t = ChatTemplate::from_gguf(src);
    ASSERT_TRUE(t.is_ok());
    EXPECT_TRUE(t->is_fallback());
    Json msgs = Json::parse(R"([{"role": "system", "content": "S"}, {"role": "user", "content": "Hi"}])");
    auto r = t->render(msgs);
    ASSERT_TRUE(r.is_ok()) << r.status().message();
    EXPECT_EQ(*r, "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
  }
}

TEST(ChatTemplate, GgufTemplateSyntaxErrorSaysWhere) {
  auto t = ChatTemplate::from_gguf(std::string("{% for m in messages %}\n{{ m.content }"));
  ASSERT_FALSE(t.is_ok());
  EXPECT_NE(t.status().message().find("tokenizer.chat_template"), std::string::npos) << t.status().message();
  EXPECT_NE(t.status().message().find("line 2"), std::string::npos) << t.status().message();
}

TEST(ChatTemplate, RejectsMalformedInput) {
  auto t = ChatTemplate::chatml();
  EXPECT_FALSE(t.render(Json::object()).is_ok());
  EXPECT_FALSE(t.render(Json::parse(R"(["not an object"])")).is_ok());
  ChatOptions o;
  o.tools = Json::object();
  EXPECT_FALSE(t.render(Json::array(), o).is_ok());
}

TEST(ChatTemplate, HostileNestingIsAnError) {
  // Built with moves only: nlohmann's copy constructor recurses.
  Json deep = "x";
  for (int i = 0; i < 100000; ++i) {
    Json a = Json::array();
    a.push_back(std::move(deep));
    deep = std::move(a);
  }
  Json m = Json::object();
  m["role"] = "user";
  m["content"] = std::move(deep);
  Json msgs = Json::array();
  msgs.push_back(std::move(m));
  auto r = ChatTemplate::chatml().render(msgs);
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.status().message().find("nested"), std::string::npos) << r.status().message();
}

TEST(ChatTemplate, Qwen35ThinkingSwitch) {
  const ChatTemplate& t = template_for("qwen3.5.jinja");
  Json msgs = Json::parse(R"([{"role": "user", "content": "Hi"}])");
  ChatOptions o;
  o.enable_thinking = false;
  auto off = t.render(msgs, o);
  ASSERT_TRUE(off.is_ok()) << off.status().message();
  EXPECT_EQ(*off, "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n");
  o.enable_thinking = true;
  auto on = t.render(msgs, o);
  ASSERT_TRUE(on.is_ok());
  EXPECT_EQ(*on, "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think>\n");
}

TEST(ChatTemplate, ExtraContextOverrides) {
  auto t = ChatTemplate::from_source("{{ greeting }} {{ add_generation_prompt }} {{ tools }} {{ eos_token }}");
  ASSERT_TRUE(t.is_ok());
  ChatOptions o;
  o.extra_context = Json{{"greeting", "hello"}, {"add_generation_prompt", false}};
  o.eos_token = "<|im_end|>";
  auto r = t->render(Json::array(), o);
  ASSERT_TRUE(r.is_ok());
  EXPECT_EQ(*r, "hello False None <|im_end|>");
}

}  // namespace
}  // namespace dflash::tokenizer
