#include "quantize_calibrated.h"

#include <fmt/format.h>

#include <cstring>

#include "core/error.h"
#include "core/thread_pool.h"
#include "quant/awq.h"
#include "quant/prune.h"
#include "quant/quant.h"
#include "quant/smoothquant.h"

namespace tern::cli {

namespace {

// The matrices pruning applies to: the linear layers of the transformer blocks (the papers' choice;
// embeddings and the output head stay dense).
bool prunable(const gguf::TensorInfo* t) {
  if (!t || t->ndim != 2) return false;
  const std::string& n = t->name;
  if (n.rfind("blk.", 0) != 0) return false;
  for (const char* s : {".attn_q.weight", ".attn_k.weight", ".attn_v.weight", ".attn_output.weight", ".ffn_gate.weight",
                        ".ffn_up.weight", ".ffn_down.weight"})
    if (n.size() > std::strlen(s) && n.compare(n.size() - std::strlen(s), std::string::npos, s) == 0) return true;
  return false;
}

std::vector<float> to_f32(const gguf::TensorInfo& t) {
  const int64_t ne0 = t.ne[0], rows = t.nelements() / ne0;
  std::vector<float> out(static_cast<size_t>(t.nelements()));
  const size_t rb = row_bytes(t.dtype, ne0);
  for (int64_t r = 0; r < rows; ++r)
    quant::dequantize_row(t.dtype, static_cast<const uint8_t*>(t.data) + r * rb, out.data() + r * ne0, ne0);
  return out;
}

}  // namespace

struct CalibratedQuantizer::Impl {
  const gguf::File& file;
  DType target;
  MethodOptions method;
  std::map<std::string, std::shared_ptr<quant::InputStats>> inputs;
  ThreadPool& pool;
  bool quiet;

  // AWQ, SmoothQuant: columns of a matrix times s; rows of a matrix divided by s; a norm vector
  // divided by s.
  std::map<std::string, std::vector<float>> col_scale, row_div, vec_div;
  // GPTQ: one factor per input, dropped once its last matrix is written.
  struct Factor {
    std::shared_ptr<quant::GptqFactor> f;
    int users_left = 0;
  };
  std::map<const quant::InputStats*, Factor> factors;
  double rtn_error = 0, method_error = 0;
  int n_matrices = 0;
  int64_t pruned = 0, pruned_of = 0;  // zeros written, weights pruned
  std::vector<double> alphas;

  const gguf::TensorInfo* tensor(const std::string& name) const { return file.find_tensor(name); }

  // The input scales of AWQ or SmoothQuant, per group of matrices sharing an input.
  void plan_scales();
  void scale_group(const std::string& prev, bool prev_is_rows, const std::vector<std::string>& mats);
  // Prunes w (t's weights as f32) in place by the method, and accounts for it.
  void prune(const gguf::TensorInfo& t, std::vector<float>& w, const quant::InputStats* stats);
};

void CalibratedQuantizer::Impl::prune(const gguf::TensorInfo& t, std::vector<float>& w, const quant::InputStats* stats) {
  const int64_t n = t.ne[0], rows = t.nelements() / n;
  const std::string& how = method.method;
  TERN_CHECK(how == "magnitude" || stats, "{}: no calibration statistics for {} (its input was never seen)", how, t.name);
  const std::vector<float> before = stats && stats->has_hessian() ? w : std::vector<float>{};
  if (how == "magnitude") {
    quant::magnitude_prune(w.data(), rows, n, method.sparsity);
  } else if (how == "wanda") {
    quant::wanda_prune(w.data(), rows, n, stats->sum_sq(), method.sparsity);
  } else {
    Factor& f = factors[stats];
    quant::GptqConfig cfg = method.gptq;
    cfg.act_order = false;  // SparseGPT sweeps the columns in their own order
    if (!f.f) f.f = std::make_shared<quant::GptqFactor>(quant::gptq_factor(stats->hessian(), n, cfg));
    quant::sparsegpt_prune(w.data(), rows, n, *f.f, method.sparsity, &pool);
    if (--f.users_left == 0) f.f.reset();
  }
  int64_t zeros = 0;
  for (float v : w) zeros += v == 0.0f;
  pruned += zeros;
  pruned_of += static_cast<int64_t>(w.size());
  if (!before.empty()) {
    const double e = quant::output_error(DType::F32, before.data(), w.data(), rows, n, stats->hessian());
    method_error += e;
    ++n_matrices;
    if (!quiet) fmt::print(stderr, "{}: {:<28} {:.1f}% zeros, output error {:.4g}\n", how, t.name, 100.0 * zeros / w.size(), e);
  } else if (!quiet) {
    fmt::print(stderr, "{}: {:<28} {:.1f}% zeros\n", how, t.name, 100.0 * zeros / w.size());
  }
}

CalibratedQuantizer::CalibratedQuantizer(const gguf::File& file, DType target, MethodOptions method,
                                         std::map<std::string, std::shared_ptr<quant::InputStats>> inputs,
                                         ThreadPool& pool, bool quiet)
    : impl_(new Impl{file, target, std::move(method), std::move(inputs), pool, quiet}) {
  Impl& m = *impl_;
  // A tied output head is the embedding table: it gets the head's statistics. (GPTQ then optimises
  // the table for its role as the head; measured on SmolLM2 Q4_0 that still beats plain rounding of
  // the table by a wide margin: perplexity 42.7 against 47.4.)
  if (!file.find_tensor("output.weight") && m.inputs.count("output.weight")) {
    m.inputs["token_embd.weight"] = m.inputs["output.weight"];
    m.inputs.erase("output.weight");
  }
  if (m.method.method == "awq" || m.method.method == "smoothquant") m.plan_scales();
  if (m.method.method == "gptq" || m.method.method == "sparsegpt")
    for (const auto& [name, stats] : m.inputs)
      if (m.method.method == "gptq" || prunable(file.find_tensor(name))) ++m.factors[stats.get()].users_left;
}

CalibratedQuantizer::~CalibratedQuantizer() = default;

// AWQ's groups in a llama-style block: q/k/v behind attn_norm, gate/up behind ffn_norm, down behind
// up's rows (silu(gate) * up is linear in up), and the output projection behind v's rows when every
// query head has its own value head (with GQA a value channel feeds several heads; AutoAWQ skips it
// too). SmoothQuant smooths the two groups behind the norms, as the paper's code does for Llama.
void CalibratedQuantizer::Impl::plan_scales() {
  const bool awq = method.method == "awq";
  for (int l = 0;; ++l) {
    const std::string p = fmt::format("blk.{}.", l);
    if (!tensor(p + "attn_q.weight")) break;
    scale_group(p + "attn_norm.weight", false, {p + "attn_q.weight", p + "attn_k.weight", p + "attn_v.weight"});
    scale_group(p + "ffn_norm.weight", false, {p + "ffn_gate.weight", p + "ffn_up.weight"});
    if (!awq) continue;
    scale_group(p + "ffn_up.weight", true, {p + "ffn_down.weight"});
    const auto* v = tensor(p + "attn_v.weight");
    const auto* o = tensor(p + "attn_output.weight");
    if (v && o && v->ne[1] == o->ne[0]) scale_group(p + "attn_v.weight", true, {p + "attn_output.weight"});
  }
}

void CalibratedQuantizer::Impl::scale_group(const std::string& prev, bool prev_is_rows,
                                           const std::vector<std::string>& mats) {
  const auto* pt = tensor(prev);
  if (!pt || !inputs.count(mats[0])) return;
  const auto& stats = *inputs.at(mats[0]);
  const int64_t n = stats.n_in();
  if (prev_is_rows ? (pt->ndim < 2 || pt->ne[1] != n) : (pt->dtype != DType::F32 || pt->nelements() != n)) return;
  std::vector<std::vector<float>> floats;
  std::vector<quant::AwqMatrix> am;
  for (const auto& name : mats) {
    const auto* t = tensor(name);
    TERN_CHECK(t && t->ne[0] == n, "{}: {} does not read {} inputs", method.method, name, n);
    floats.push_back(to_f32(*t));
    am.push_back({floats.back().data(), t->nelements() / n});
  }
  std::vector<float> scales;
  if (method.method == "smoothquant") {
    TERN_CHECK(!stats.max_abs().empty(), "smoothquant: no activation maxima for {} (calibrate with --calib)", mats[0]);
    scales = quant::smoothquant_scales(stats.max_abs(), am, n, method.alpha);
    if (!quiet) {
      const auto [lo, hi] = std::minmax_element(scales.begin(), scales.end());
      fmt::print(stderr, "smoothquant: {:<28} scales {:.3g} .. {:.3g}\n", mats[0], *lo, *hi);
    }
  } else {
    std::vector<double> mean_abs(stats.sum_abs().begin(), stats.sum_abs().end());
    for (double& v : mean_abs) v /= static_cast<double>(std::max<int64_t>(1, stats.count()));
    const auto r = quant::awq_search(target, am, n, stats.hessian(), mean_abs, {}, &pool);
    scales = r.scales;
    rtn_error += r.plain_error;
    method_error += r.error;
    ++n_matrices;
    alphas.push_back(r.alpha);
    if (!quiet)
      fmt::print(stderr, "awq: {:<28} alpha {:.2f}, output error {:.4g} -> {:.4g} ({:+.1f}%)\n", mats[0], r.alpha,
                 r.plain_error, r.error, r.plain_error > 0 ? 100 * (r.error / r.plain_error - 1) : 0.0);
  }
  for (const auto& name : mats) col_scale[name] = scales;
  (prev_is_rows ? row_div : vec_div)[prev] = scales;
}

bool CalibratedQuantizer::handles(const std::string& name) const {
  const Impl& m = *impl_;
  if (m.method.prunes() && prunable(m.tensor(name))) return true;
  return m.inputs.count(name) || m.col_scale.count(name) || m.row_div.count(name) || m.vec_div.count(name);
}

void CalibratedQuantizer::convert(const gguf::TensorInfo& t, DType dst, std::span<uint8_t> out) {
  Impl& m = *impl_;
  if (auto it = m.vec_div.find(t.name); it != m.vec_div.end()) {  // a norm vector absorbing 1 / s
    TERN_CHECK(dst == DType::F32 && out.size() == it->second.size() * sizeof(float), "{}: {} is not an F32 vector",
               m.method.method, t.name);
    std::vector<float> v = to_f32(t);
    for (size_t i = 0; i < v.size(); ++i) v[i] /= it->second[i];
    std::memcpy(out.data(), v.data(), out.size());
    return;
  }
  const int64_t n = t.ne[0], rows = t.nelements() / n;
  std::vector<float> w = to_f32(t);
  if (auto it = m.col_scale.find(t.name); it != m.col_scale.end())
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t i = 0; i < n; ++i) w[r * n + i] *= it->second[i];
  if (auto it = m.row_div.find(t.name); it != m.row_div.end()) {
    TERN_CHECK(static_cast<int64_t>(it->second.size()) == rows, "{}: {} has {} rows, the scales {}", m.method.method,
               t.name, rows, it->second.size());
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t i = 0; i < n; ++i) w[r * n + i] /= it->second[r];
  }
  const size_t rb = row_bytes(dst, n);
  const auto stats_it = m.inputs.find(t.name);
  const quant::InputStats* stats = stats_it != m.inputs.end() ? stats_it->second.get() : nullptr;

  if (m.method.prunes() && prunable(&t)) {
    m.prune(t, w, stats);
  } else if (m.method.method == "gptq" && stats && traits(dst).quantized) {
    Impl::Factor& f = m.factors[stats];
    if (!f.f) f.f = std::make_shared<quant::GptqFactor>(quant::gptq_factor(stats->hessian(), n, m.method.gptq));
    quant::gptq_quantize(dst, w.data(), rows, *f.f, m.method.gptq, out.data(), &m.pool);
    // Against plain RTN with the same grid rule, on a sample of rows.
    std::vector<uint8_t> rtn(out.size());
    const std::vector<double> h = stats->hessian();
    for (int64_t r = 0; r < rows; ++r) quant::quantize_row(dst, w.data() + r * n, rtn.data() + r * rb, n);
    const double e_rtn = quant::output_error(dst, w.data(), rtn.data(), rows, n, h);
    const double e = quant::output_error(dst, w.data(), out.data(), rows, n, h);
    m.rtn_error += e_rtn;
    m.method_error += e;
    ++m.n_matrices;
    if (!m.quiet)
      fmt::print(stderr, "gptq: {:<28} output error {:.4g} (rtn {:.4g}, {:+.1f}%)\n", t.name, e, e_rtn,
                 e_rtn > 0 ? 100 * (e / e_rtn - 1) : 0.0);
    if (--f.users_left == 0) f.f.reset();
    return;
  }
  if (m.method.method == "awq" && stats && traits(dst).quantized && stats->has_hessian()) {
    // AWQ's clipping search through the rescaled inputs' second moment: H_ij / (s_i s_j).
    std::vector<double> h = stats->hessian();
    if (auto it = m.col_scale.find(t.name); it != m.col_scale.end())
      for (int64_t i = 0; i < n; ++i)
        for (int64_t j = 0; j < n; ++j) h[i * n + j] /= static_cast<double>(it->second[i]) * it->second[j];
    quant::awq_clip_quantize(dst, w.data(), rows, n, h, out.data(), &m.pool);
    return;
  }
  // Round to nearest; with method rtn weighted by the input's mean square (the imatrix rule). AWQ
  // and the pruning methods round plainly (a pruned zero stays exactly zero in the symmetric types:
  // f32, f16, bf16, q8_0, q4_0, q5_0; the affine ones round it to their nearest level).
  std::vector<float> importance;
  if (stats && m.method.method == "rtn") {
    importance.resize(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i)
      importance[i] = static_cast<float>(stats->sum_sq()[i] / static_cast<double>(std::max<int64_t>(1, stats->count())));
  }
  auto work = [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r)
      quant::quantize_row(dst, w.data() + r * n, out.data() + r * rb, n, importance.empty() ? nullptr : importance.data());
  };
  m.pool.parallel_for(rows, work);
}

std::string CalibratedQuantizer::summary() const {
  const Impl& m = *impl_;
  if (m.method.prunes()) {
    std::string s = fmt::format("{}: {:.2f}% of the blocks' matrix weights zeroed", m.method.method,
                                m.pruned_of ? 100.0 * m.pruned / m.pruned_of : 0.0);
    if (m.n_matrices) s += fmt::format(", mean output error {:.4g} over {} matrices", m.method_error / m.n_matrices, m.n_matrices);
    return s;
  }
  if (m.n_matrices == 0) return {};
  std::string s = fmt::format("{}: mean output error {:.4g} against plain RTN's {:.4g} ({:+.1f}%) over {} {}",
                              m.method.method, m.method_error / m.n_matrices, m.rtn_error / m.n_matrices,
                              m.rtn_error > 0 ? 100 * (m.method_error / m.rtn_error - 1) : 0.0, m.n_matrices,
                              m.method.method == "awq" ? "groups" : "matrices");
  return s;
}

}  // namespace tern::cli
