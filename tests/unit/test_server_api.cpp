// The server's request parser on its own (no sockets): what valid bodies become, which field a
// bad one is blamed on, and a fuzz loop over mutated bodies in which nothing but ApiError may escape.
#include <gtest/gtest.h>

#include "model_files.h"

#include <filesystem>
#include <random>

#include "server/api_error.h"
#include "server/api_request.h"

namespace tern::server {
namespace {

std::string model_path() { return test_files::default_model_path(); }

class ServerApi : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (std::filesystem::exists(model_path()))
      engine_ = Engine::load({.model_path = model_path(), .n_threads = 1, .n_ctx = 256}).release();
  }
  static void TearDownTestSuite() {
    delete engine_;
    engine_ = nullptr;
  }
  void SetUp() override {
    if (!engine_) GTEST_SKIP() << "model file absent: " << model_path();
  }
  static ApiRequest parse(Endpoint ep, const std::string& body) { return parse_api_request(ep, body, *engine_, limits_); }
  static std::string blamed(Endpoint ep, const std::string& body) {
    try {
      parse(ep, body);
    } catch (const ApiError& e) {
      EXPECT_EQ(e.status, 400);
      return e.param.empty() ? "<body>" : e.param;
    }
    return "<accepted>";
  }
  static inline Engine* engine_ = nullptr;
  static inline ApiLimits limits_{.model_id = "m"};
};

TEST_F(ServerApi, ValidBodiesAndDefaults) {
  ApiRequest r = parse(Endpoint::Completions, R"({"prompt": "Hello", "model": "m"})");
  EXPECT_EQ(r.prompts.size(), 1u);
  EXPECT_EQ(r.params.max_tokens, 16);  // OpenAI's default for completions
  EXPECT_FLOAT_EQ(r.params.sampling.temperature, 1.0f);
  EXPECT_EQ(r.params.sampling.top_k, 0);
  EXPECT_FALSE(r.logprobs);
  r = parse(Endpoint::Completions,
            R"({"prompt": [[1, 2], "text"], "n": 2, "seed": 5, "stop": "x", "logprobs": 3, "echo": true,
                "stream": true, "stream_options": {"include_usage": true}, "top_k": -1, "ignore_eos": true})");
  EXPECT_EQ(r.prompts.size(), 2u);
  EXPECT_EQ(r.prompts[0], (std::vector<int32_t>{1, 2}));
  EXPECT_EQ(r.n, 2);
  EXPECT_TRUE(r.seeded);
  EXPECT_EQ(r.params.sampling.seed, 5u);
  EXPECT_EQ(r.params.stop, std::vector<std::string>{"x"});
  EXPECT_EQ(r.params.top_logprobs, 3);
  EXPECT_TRUE(r.echo && r.stream && r.include_usage && r.params.ignore_eos);
  r = parse(Endpoint::ChatCompletions,
            R"({"messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}], "logprobs": true})");
  EXPECT_EQ(r.params.top_logprobs, 0);
  EXPECT_EQ(r.params.max_tokens + static_cast<int>(r.prompts[0].size()), 256);  // the rest of the context
}

TEST_F(ServerApi, BlamesTheFieldAtFault) {
  const std::pair<const char*, const char*> cases[] = {
      {R"({"prompt": "a", "max_tokens": 256})", "max_tokens"},  // prompt + 256 > 256
      {R"({"prompt": "a", "n": 17})", "n"},
      {R"({"prompt": "a", "seed": 1.5})", "seed"},
      {R"({"prompt": "a", "seed": 18446744073709551615})", "seed"},
      {R"({"prompt": [49152]})", "prompt"},
      {R"({"prompt": ["a", 3]})", "prompt"},
      {R"({"prompt": "a", "stop": ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l", "m", "n", "o", "p", "q"]})", "stop"},
      {R"({"prompt": "a", "stream_options": []})", "stream_options"},
      {R"({"prompt": "a", "priority": "high"})", "priority"},
      {R"({"prompt": "a", "best_of": 3})", "best_of"},
      {R"("just a string")", "<body>"},
      {R"({"prompt": "a",})", "<body>"},
  };
  for (const auto& [body, param] : cases) EXPECT_EQ(blamed(Endpoint::Completions, body), param) << body;
  EXPECT_EQ(blamed(Endpoint::ChatCompletions, R"({"messages": [{"role": "user"}]})"), "messages[0].content");
  EXPECT_EQ(blamed(Endpoint::ChatCompletions, R"({"messages": [{"role": "assistant"}]})"), "<accepted>");
}

// Random mutations of valid bodies (bytes flipped, cut, spliced, values of every JSON type put in
// every field): the parser returns or throws ApiError, nothing else, and never crashes (the
// sanitizer build runs this too).
TEST_F(ServerApi, FuzzedBodiesOnlyEverGiveApiErrors) {
  const std::vector<std::string> seeds = {
      R"({"prompt": "Hello there", "max_tokens": 5, "temperature": 0.5, "stop": ["a"], "n": 2, "logprobs": 2})",
      R"({"prompt": [1, 2, 3], "echo": true, "seed": 3, "top_p": 0.9, "top_k": 4, "min_p": 0.1})",
      R"({"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}], "max_tokens": 3})",
      R"({"messages": [{"role": "user", "content": [{"type": "text", "text": "x"}]}], "logprobs": true, "top_logprobs": 2})",
  };
  const std::vector<std::string> values = {"null", "true", "-1", "0", "1e308", "-1e308", "3.5", "\"\"", "\"x\"", "[]",
                                           "{}", "[1,-5,99999999999]", "{\"a\":[]}", "18446744073709551616",
                                           "\"\\ud800\"", "[[[[[]]]]]"};
  const std::vector<std::string> keys = {"prompt", "messages", "max_tokens", "temperature", "top_p", "top_k", "min_p",
                                         "n", "seed", "stop", "logprobs", "top_logprobs", "echo", "stream",
                                         "stream_options", "model", "presence_penalty", "max_completion_tokens"};
  std::mt19937 rng(1234);
  int accepted = 0, rejected = 0;
  for (int i = 0; i < 20000; ++i) {
    const size_t which = rng() % seeds.size();
    std::string body = seeds[which];
    const int op = static_cast<int>(rng() % 4);
    if (op == 0) {
      for (int k = 0; k < 3; ++k) body[rng() % body.size()] = static_cast<char>(rng() % 256);
    } else if (op == 1) {
      body.resize(rng() % body.size());
    } else if (op == 2) {
      body.insert(rng() % body.size(), seeds[rng() % seeds.size()].substr(0, rng() % 20));
    } else {
      body = "{\"" + keys[rng() % keys.size()] + "\": " + values[rng() % values.size()] + ", " + body.substr(1);
    }
    const Endpoint ep = which < 2 ? Endpoint::Completions : Endpoint::ChatCompletions;
    try {
      parse(ep, body);
      ++accepted;
    } catch (const ApiError& e) {
      ASSERT_EQ(e.status, 400) << body;
      ++rejected;
    } catch (const std::exception& e) {
      FAIL() << "escaped: " << e.what() << " for " << body;
    }
  }
  EXPECT_GT(accepted, 100);
  EXPECT_GT(rejected, 1000);
}

}  // namespace
}  // namespace tern::server
