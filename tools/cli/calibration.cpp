#include "calibration.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <thread>

#include "common.h"
#include "core/error.h"
#include "core/thread_pool.h"
#include "formats/gguf/gguf.h"
#include "progress.h"
#include "tern/engine.h"

namespace tern::cli {
namespace {

// The intermediates of a forward pass (llama_model.cpp's names) that are matmul inputs, and the
// weights that read them. result_norm feeds the output head: output.weight, or the tied embedding.
struct Tap {
  const char* intermediate;
  std::vector<const char*> weights;
};
const std::vector<Tap>& taps() {
  static const std::vector<Tap> t = {
      {"attn_norm", {"attn_q", "attn_k", "attn_v"}},
      {"attn_kqv", {"attn_output"}},
      {"ffn_norm", {"ffn_gate", "ffn_up"}},
      {"ffn_swiglu", {"ffn_down"}},
  };
  return t;
}

}  // namespace

Calibration calibrate(const CalibrationOptions& o) {
  TERN_CHECK(o.tokens > 0, "calibration needs at least one token (--calib-tokens)");
  const std::string text = read_text_file(o.text_file, "calibration text");
  const int threads = o.threads > 0 ? o.threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  ThreadPool pool(threads);
  Calibration cal;
  // The name of the intermediate -> its statistics; created at the first pass that shows its size.
  std::map<std::string, std::shared_ptr<quant::InputStats>> by_intermediate;

  EngineConfig cfg;  // (assigned field by field: GCC 12 warns on designated initialisers of it)
  cfg.model_path = o.model_path;
  cfg.n_threads = threads;
  cfg.n_ctx = o.ctx + 1;
  cfg.max_batch_tokens = o.ctx + 1;
  cfg.prefix_caching = false;
  cfg.on_tensor = [&](std::string_view name, std::span<const float> values, std::span<const int64_t> shape) {
    std::string key;
    if (name == "result_norm") {
      key = "result_norm";
    } else if (name.starts_with("blk.")) {
      const size_t dot = name.find('.', 4);
      if (dot == std::string_view::npos) return;
      const std::string_view what = name.substr(dot + 1);
      if (std::none_of(taps().begin(), taps().end(), [&](const Tap& t) { return what == t.intermediate; })) return;
      key = std::string(name);
    } else {
      return;
    }
    const int64_t n = shape[0], rows = static_cast<int64_t>(values.size()) / n;
    auto& stats = by_intermediate[key];
    if (!stats) stats = std::make_shared<quant::InputStats>(n, o.hessian);
    TERN_CHECK(stats->n_in() == n, "calibration: {} changed width ({} -> {})", key, stats->n_in(), n);
    stats->add(values.data(), rows, &pool);
  };
  auto engine = Engine::load(cfg);

  const std::vector<int32_t> bos = engine->tokenize("", true);
  std::vector<int32_t> tokens = engine->tokenize(text, false);
  TERN_CHECK(o.ctx > static_cast<int>(bos.size()) + 1, "calibration window of {} tokens is too short", o.ctx);
  const int64_t per_window = o.ctx - static_cast<int64_t>(bos.size());
  if (static_cast<int64_t>(tokens.size()) > o.tokens) tokens.resize(static_cast<size_t>(o.tokens));
  if (static_cast<int64_t>(tokens.size()) < o.tokens)
    fmt::print(stderr, "calibration: warning: {} has only {} tokens, fewer than the {} asked for\n", o.text_file,
               tokens.size(), o.tokens);
  const int64_t windows = (static_cast<int64_t>(tokens.size()) + per_window - 1) / per_window;
  if (!o.quiet)
    fmt::print(stderr, "calibration: {} tokens of {} in {} windows of {}{}\n", tokens.size(), o.text_file, windows,
               o.ctx, o.hessian ? ", collecting Hessians" : "");
  Progress progress("calibration", windows, o.quiet);
  std::vector<int32_t> ids;
  for (int64_t w = 0; w < windows; ++w) {
    const int64_t b = w * per_window, e = std::min<int64_t>(b + per_window, static_cast<int64_t>(tokens.size()));
    ids.assign(bos.begin(), bos.end());
    ids.insert(ids.end(), tokens.begin() + b, tokens.begin() + e);
    (void)engine->logits(ids, 0);  // every row through the output head, so result_norm covers all tokens
    progress.update(w + 1);
  }
  progress.finish();
  cal.tokens = static_cast<int64_t>(tokens.size()) + windows * static_cast<int64_t>(bos.size());
  cal.windows = windows;

  for (const auto& [key, stats] : by_intermediate) {
    if (key == "result_norm") {
      cal.inputs["output.weight"] = stats;
      continue;
    }
    const size_t dot = key.find('.', 4);
    const std::string layer = key.substr(0, dot + 1), what = key.substr(dot + 1);
    for (const Tap& t : taps())
      if (what == t.intermediate)
        for (const char* w : t.weights) cal.inputs[layer + w + ".weight"] = stats;
  }
  return cal;
}

}  // namespace tern::cli

namespace tern::cli {

void write_imatrix(const std::string& path, const Calibration& cal, const std::string& text_file) {
  gguf::Writer w;
  w.set_string("general.type", "imatrix");
  w.set_string_array("imatrix.datasets", {text_file});
  w.set_u32("imatrix.chunk_count", static_cast<uint32_t>(cal.windows));
  w.set_u32("imatrix.chunk_size", static_cast<uint32_t>(cal.windows ? cal.tokens / cal.windows : 0));
  for (const auto& [name, stats] : cal.inputs) {
    std::vector<float> sums(stats->sum_sq().begin(), stats->sum_sq().end());
    const float count = static_cast<float>(stats->count());
    w.add_tensor(name + ".in_sum2", DType::F32, {stats->n_in(), 1}, sums.data(), sums.size() * sizeof(float));
    w.add_tensor(name + ".counts", DType::F32, {1, 1}, &count, sizeof count);
  }
  w.write(path);
}

std::map<std::string, std::shared_ptr<quant::InputStats>> read_imatrix(const std::string& path) {
  const auto f = gguf::File::open(path);
  TERN_CHECK(f.has("general.type") && f.get_string("general.type") == "imatrix",
             "{}: not an importance matrix (general.type is not \"imatrix\")", path);
  std::map<std::string, std::shared_ptr<quant::InputStats>> out;
  for (const auto& t : f.tensors()) {
    constexpr std::string_view kSum = ".in_sum2";
    if (!t.name.ends_with(kSum)) continue;
    const std::string weight = t.name.substr(0, t.name.size() - kSum.size());
    const auto* c = f.find_tensor(weight + ".counts");
    TERN_CHECK(t.dtype == DType::F32 && t.ndim == 2 && t.ne[1] == 1, "{}: tensor '{}' is not F32 [n, 1]", path, t.name);
    TERN_CHECK(c && c->dtype == DType::F32 && c->nelements() == 1, "{}: '{}' has no F32 counts tensor", path, weight);
    float count;
    std::memcpy(&count, c->data, sizeof count);
    TERN_CHECK(count >= 0 && std::isfinite(count), "{}: '{}' has count {}", path, weight, count);
    std::vector<double> sums(static_cast<size_t>(t.ne[0]));
    for (int64_t i = 0; i < t.ne[0]; ++i) {
      float v;
      std::memcpy(&v, static_cast<const uint8_t*>(t.data) + i * sizeof v, sizeof v);
      TERN_CHECK(v >= 0 && std::isfinite(v), "{}: '{}' has a negative or non-finite sum of squares", path, t.name);
      sums[i] = v;
    }
    out[weight] = std::make_shared<quant::InputStats>(quant::InputStats::from_sum_sq(std::move(sums), static_cast<int64_t>(count)));
  }
  TERN_CHECK(!out.empty(), "{}: no '<weight>.in_sum2' tensors", path);
  return out;
}

}  // namespace tern::cli
