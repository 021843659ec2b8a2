// The calibrated quantisers on small matrices, for the numpy references in
// tests/python/test_quant_calibrated.py:
//   tool_quant_calibrated gptq TYPE ROWS N TOKENS ACT_ORDER W.f32 X.f32 OUT.f32
//       GPTQ (damp 0.01, grids by the type's plain rounding) of W [ROWS x N] with the Hessian of
//       X [TOKENS x N]; writes the dequantised result [ROWS x N].
//   tool_quant_calibrated awq TYPE ROWS N TOKENS W.f32 X.f32 OUT.f32
//       AWQ's scale search for W alone; writes alpha, then the N scales.
//   tool_quant_calibrated smoothquant q8_0 ROWS N TOKENS ALPHA W.f32 X.f32 OUT.f32
//       SmoothQuant's scales for W with the activation maxima of X; writes the N scales.
//   tool_quant_calibrated magnitude|wanda f32 ROWS N TOKENS PATTERN W.f32 X.f32 OUT.f32
//       Magnitude or Wanda pruning of W (Wanda with the input norms of X); writes the pruned W.
//   tool_quant_calibrated sparsegpt f32 ROWS N TOKENS PATTERN W.f32 X.f32 OUT.f32
//       SparseGPT (damp 0.01) of W with the Hessian of X; PATTERN a sparsity (0.5) or N:M (2:4);
//       writes the pruned W [ROWS x N].
// Inputs are raw little-endian f32, row-major.
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/error.h"
#include "quant/awq.h"
#include "quant/gptq.h"
#include "quant/input_stats.h"
#include "quant/prune.h"
#include "quant/smoothquant.h"
#include "quant/quant.h"

namespace {

std::vector<float> read_f32(const std::string& path, size_t count) {
  std::ifstream f(path, std::ios::binary);
  TERN_CHECK(f.good(), "cannot open {}", path);
  std::vector<char> bytes{std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
  TERN_CHECK(bytes.size() == count * sizeof(float), "{}: {} bytes, expected {} floats", path, bytes.size(), count);
  std::vector<float> out(count);
  std::memcpy(out.data(), bytes.data(), bytes.size());
  return out;
}

void write_f32(const std::string& path, const std::vector<float>& v) {
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(v.data()), static_cast<std::streamsize>(v.size() * sizeof(float)));
  TERN_CHECK(f.good(), "cannot write {}", path);
}

int run(int argc, char** argv) {
  TERN_CHECK(argc >= 8, "usage: see the header of tool_quant_calibrated.cpp");
  const std::string mode = argv[1];
  const auto type = tern::dtype_from_name(argv[2]);
  TERN_CHECK(type.has_value(), "unknown type {}", argv[2]);
  const int64_t rows = std::stoll(argv[3]), n = std::stoll(argv[4]), tokens = std::stoll(argv[5]);
  const bool prune = mode == "magnitude" || mode == "wanda" || mode == "sparsegpt";
  const int a = mode == "gptq" || prune || mode == "smoothquant" ? 7 : 6;
  TERN_CHECK(argc == a + 3, "wrong number of arguments for {}", mode);
  const auto w = read_f32(argv[a], static_cast<size_t>(rows * n));
  const auto x = read_f32(argv[a + 1], static_cast<size_t>(tokens * n));
  tern::quant::InputStats stats(n, true);
  stats.add(x.data(), tokens);
  const std::vector<double> h = stats.hessian();
  if (mode == "gptq") {
    tern::quant::GptqConfig cfg;
    cfg.act_order = std::string(argv[6]) == "1";
    cfg.weighted_grids = false;
    const auto factor = tern::quant::gptq_factor(h, n, cfg);
    const size_t rb = tern::row_bytes(*type, n);
    std::vector<uint8_t> q(rb * static_cast<size_t>(rows));
    tern::quant::gptq_quantize(*type, w.data(), rows, factor, cfg, q.data());
    std::vector<float> out(static_cast<size_t>(rows * n));
    for (int64_t r = 0; r < rows; ++r) tern::quant::dequantize_row(*type, q.data() + r * rb, out.data() + r * n, n);
    write_f32(argv[a + 2], out);
  } else if (mode == "awq") {
    std::vector<double> mean_abs(stats.sum_abs().begin(), stats.sum_abs().end());
    for (double& v : mean_abs) v /= static_cast<double>(tokens);
    const tern::quant::AwqMatrix m{w.data(), rows};
    const auto r = tern::quant::awq_search(*type, {&m, 1}, n, h, mean_abs, {});
    std::vector<float> out{static_cast<float>(r.alpha)};
    out.insert(out.end(), r.scales.begin(), r.scales.end());
    write_f32(argv[a + 2], out);
  } else if (mode == "smoothquant") {
    const tern::quant::AwqMatrix m{w.data(), rows};
    write_f32(argv[a + 2], tern::quant::smoothquant_scales(stats.max_abs(), {&m, 1}, n, std::stod(argv[6])));
  } else if (prune) {
    const std::string pattern = argv[6];
    const auto p = pattern.find(':') != std::string::npos ? tern::quant::parse_sparsity(pattern, 0.5)
                                                          : tern::quant::parse_sparsity("", std::stod(pattern));
    std::vector<float> out = w;
    if (mode == "magnitude") tern::quant::magnitude_prune(out.data(), rows, n, p);
    else if (mode == "wanda") tern::quant::wanda_prune(out.data(), rows, n, stats.sum_sq(), p);
    else tern::quant::sparsegpt_prune(out.data(), rows, n, tern::quant::gptq_factor(h, n, {}), p);
    write_f32(argv[a + 2], out);
  } else {
    tern::fail("unknown mode {}", mode);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tool_quant_calibrated: %s\n", e.what());
    return 1;
  }
}
