// tern quantize: rewrite a GGUF file with its weight matrices in another type (round-to-nearest).
// Every row goes through the reference converters in src/quant (dequantize_row to f32, then
// quantize_row), so the result is bit-compatible with llama.cpp's blocks. The output is streamed
// one tensor at a time through gguf::Writer's TensorSource: memory is the mmapped input plus one
// output tensor and one f32 row per thread, never a second copy of the model.
#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <exception>
#include <filesystem>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

#include "calibration.h"
#include "common.h"
#include "core/thread_pool.h"
#include "quantize_calibrated.h"
#include "core/dtype.h"
#include "core/error.h"
#include "formats/gguf/gguf.h"
#include "quant/quant.h"

namespace tern::cli {
namespace {

struct QuantizeOptions {
  std::string in, out;
  std::string type;
  MethodOptions method;
  std::string calib;          // calibration text (gptq, awq; rtn: importance from it)
  int64_t calib_tokens = 16384;
  int calib_ctx = 512;
  std::string imatrix;        // importance matrix file (rtn)
  int group_size = 0;         // 0: the type's own
  double sparsity = 0.5;      // pruning: the share of weights zeroed (unstructured)
  std::string pattern;        // pruning: "N:M" (N of every M kept) instead
  int threads = 0;
  bool quiet = false;
};

// llama.cpp's LLAMA_FTYPE for a file whose matrices are all of one type (general.file_type). For the
// K-quants that have _S/_M/_L mixes, the pure file is closest to the _S variant.
const std::map<DType, uint32_t>& llama_ftypes() {
  static const std::map<DType, uint32_t> m = {
      {DType::F32, 0},   {DType::F16, 1},   {DType::Q4_0, 2},  {DType::Q4_1, 3},  {DType::Q8_0, 7},
      {DType::Q5_0, 8},  {DType::Q5_1, 9},  {DType::Q2_K, 10}, {DType::Q3_K, 11}, {DType::Q4_K, 14},
      {DType::Q5_K, 16}, {DType::Q6_K, 18}, {DType::BF16, 32},
  };
  return m;
}

// A K-quant mix: llama.cpp's rule (llama_tensor_get_type, for Llama-like models) for which matrices
// get more bits than the base type. Only tensors the rule names differ from the base.
struct Mix {
  const char* name;
  DType base;
  uint32_t ftype;  // LLAMA_FTYPE
};
const Mix kMixes[] = {{"q3_k_m", DType::Q3_K, 12}, {"q4_k_m", DType::Q4_K, 15}, {"q5_k_m", DType::Q5_K, 17}};

// What --type names: one type for every matrix, or a mix.
struct Target {
  DType base;
  const Mix* mix = nullptr;
  std::string name() const { return mix ? mix->name : std::string(dtype_name(base)); }
  uint32_t ftype() const { return mix ? mix->ftype : llama_ftypes().at(base); }
};

Target parse_target(const std::string& name) {
  std::string lower = name;
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
  for (const Mix& m : kMixes)
    if (lower == m.name) return {m.base, &m};
  const auto t = dtype_from_name(lower);
  if (t && llama_ftypes().count(*t) && quant::is_weight_type(*t) && quant::can_quantize(*t)) return {*t};
  std::string names;
  for (const auto& [d, ftype] : llama_ftypes())
    if (quant::is_weight_type(d) && quant::can_quantize(d)) names += (names.empty() ? "" : ", ") + std::string(dtype_name(d));
  for (const Mix& m : kMixes) names += std::string(", ") + m.name;
  fail("--type {}: not a type tern can quantize to (supported: {})", name, names);
}

// llama.cpp's layers that get more bits in the _M mixes: the first and last eighth, and every third
// in between.
bool use_more_bits(int layer, int n_layers) {
  return layer < n_layers / 8 || layer >= 7 * n_layers / 8 || (layer - n_layers / 8) % 3 == 2;
}

// The type a mix gives one matrix (layer: its blk.N index, -1 for none; has_output: the file has an
// output.weight, so token_embd is not also the output head).
DType mix_type(const Mix& m, const std::string& name, int layer, int n_layers, bool has_output) {
  const bool is_output = name == "output.weight" || (!has_output && name == "token_embd.weight");
  if (is_output) return DType::Q6_K;
  if (layer < 0) return m.base;
  const auto has = [&](const char* part) { return name.find(part) != std::string::npos; };
  if (m.base == DType::Q3_K) {
    if (has("attn_v.weight")) return layer < 2 ? DType::Q5_K : DType::Q4_K;
    if (has("ffn_down")) return layer < n_layers / 16 ? DType::Q5_K : DType::Q4_K;
    if (has("attn_output.weight")) return DType::Q4_K;
    return m.base;
  }
  if ((has("attn_v.weight") || has("ffn_down")) && use_more_bits(layer, n_layers)) return DType::Q6_K;
  return m.base;
}

// A K-quant for a matrix whose rows are not whole 256-element super-blocks (SmolLM2's 576): llama.cpp's
// fallback (Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0), except Q3_K, whose fallback there is IQ4_NL,
// which tern does not write: Q4_0 instead. Rows that are not whole 32-element blocks either: F16.
DType mix_fallback(DType t, int64_t row) {
  if (row % traits(t).block_elems == 0) return t;
  const DType f = t == DType::Q4_K ? DType::Q5_0 : t == DType::Q5_K ? DType::Q5_1 : t == DType::Q6_K ? DType::Q8_0 : DType::Q4_0;
  return row % traits(f).block_elems == 0 ? f : DType::F16;
}

// The blk.N index of a tensor name, or -1.
int layer_of(const std::string& name) {
  int layer = -1, used = 0;
  if (std::sscanf(name.c_str(), "blk.%d.%n", &layer, &used) == 1 && used > 0 && layer >= 0) return layer;
  return -1;
}

bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

std::string human(double bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (bytes >= 1024 && u < 4) bytes /= 1024, ++u;
  return fmt::format("{:.2f} {}", bytes, units[u]);
}

std::string shape_of(const gguf::TensorInfo& t) {
  std::string s = fmt::format("{}", t.ne[0]);
  for (int d = 1; d < t.ndim; ++d) s += fmt::format(" x {}", t.ne[d]);
  return s;
}

// What happens to one tensor.
struct Plan {
  const gguf::TensorInfo* src;
  DType dst;
  bool convert;     // false: bytes copied verbatim
  const char* why;  // why it is kept, for the progress line
};

// Matrices (any tensor of 2+ dims named *.weight) follow the target type; vectors (norms, biases)
// and the MoE router keep theirs, as in llama.cpp. A matrix whose rows are not whole blocks of the
// target keeps its type (llama.cpp would pick a fallback type; keeping it is always valid).
Plan plan_tensor(const gguf::TensorInfo& t, DType target) {
  if (t.ndim < 2 || !ends_with(t.name, ".weight")) return {&t, t.dtype, false, "not a matrix"};
  if (t.name.find("ffn_gate_inp.") != std::string::npos) return {&t, t.dtype, false, "router"};
  if (t.ne[0] % traits(target).block_elems != 0) return {&t, t.dtype, false, "rows not whole blocks"};
  if (t.dtype == target) return {&t, t.dtype, false, "already target type"};
  return {&t, target, true, nullptr};
}

// Converts every row of `t` (ne[0] elements each) to dst_type, into dst, on n_threads threads. Each
// row is converted on its own, so the bytes do not depend on the thread count.
void convert_rows(const gguf::TensorInfo& t, DType dst_type, uint8_t* dst, int n_threads) {
  const int64_t ne0 = t.ne[0], rows = t.nelements() / ne0;
  const size_t src_row = row_bytes(t.dtype, ne0), dst_row = row_bytes(dst_type, ne0);
  const auto* src = static_cast<const uint8_t*>(t.data);
  const int64_t chunk = std::max<int64_t>(1, std::min<int64_t>(64, rows / (4 * n_threads)));
  std::atomic<int64_t> next{0};
  std::exception_ptr error;
  std::mutex error_mutex;
  auto work = [&] {
    std::vector<float> row(static_cast<size_t>(ne0));
    try {
      for (int64_t r0; (r0 = next.fetch_add(chunk)) < rows;) {
        for (int64_t r = r0; r < std::min(rows, r0 + chunk); ++r) {
          quant::dequantize_row(t.dtype, src + static_cast<size_t>(r) * src_row, row.data(), ne0);
          quant::quantize_row(dst_type, row.data(), dst + static_cast<size_t>(r) * dst_row, ne0);
        }
      }
    } catch (...) {
      std::lock_guard lock(error_mutex);
      if (!error) error = std::current_exception();
      next = rows;  // the others stop at their next chunk
    }
  };
  const int n = static_cast<int>(std::min<int64_t>(n_threads, (rows + chunk - 1) / chunk));
  std::vector<std::thread> pool;
  for (int i = 1; i < n; ++i) pool.emplace_back(work);
  work();
  for (auto& th : pool) th.join();
  if (error) std::rethrow_exception(error);
}

void quantize(QuantizeOptions& o) {
  const std::string& method = o.method.method;
  const bool prunes = o.method.prunes();
  TERN_CHECK(method == "rtn" || method == "gptq" || method == "awq" || method == "smoothquant" || prunes,
             "--method {}: unknown (rtn, gptq, awq, smoothquant, magnitude, wanda, sparsegpt)", method);
  if (prunes) o.method.sparsity = quant::parse_sparsity(o.pattern, o.sparsity);
  TERN_CHECK(prunes || o.pattern.empty(), "--pattern is for the pruning methods (magnitude, wanda, sparsegpt)");
  const Target tgt = parse_target(o.type);
  const DType target = tgt.base;
  TERN_CHECK(!tgt.mix || method == "rtn", "--type {}: the K-quant mixes are written with --method rtn, not {}",
             tgt.name(), method);
  if (o.group_size > 0) {
    const int g = quant::grid_group_size(target);
    TERN_CHECK(g == o.group_size, "--group-size {}: {} stores groups of {} (pick a type with that group size)",
               o.group_size, dtype_name(target), g > 0 ? g : traits(target).block_elems);
  }
  TERN_CHECK(method != "gptq" || quant::grid_group_size(target) > 0,
             "--method gptq: {} is not a type GPTQ can write (q4_0, q4_1, q5_0, q5_1, q8_0, q3_k, q4_k, q5_k)",
             dtype_name(target));
  TERN_CHECK(method != "awq" || traits(target).quantized, "--method awq: {} is not a quantised type", dtype_name(target));
  TERN_CHECK(method != "smoothquant" || target == DType::Q8_0,
             "--method smoothquant: W8A8 stores q8_0 (8-bit weights, 8-bit activations at run time), not {}",
             dtype_name(target));
  const bool needs_calib = method == "gptq" || method == "awq" || method == "sparsegpt" || method == "smoothquant";
  const bool needs_hessian = method == "gptq" || method == "awq" || method == "sparsegpt";
  TERN_CHECK(!needs_calib || !o.calib.empty(), "--method {} needs calibration text: --calib FILE (scripts/fetch-eval-text)",
             method);
  TERN_CHECK(method != "wanda" || !o.calib.empty() || !o.imatrix.empty(),
             "--method wanda needs the inputs' norms: --calib FILE or --imatrix FILE");
  TERN_CHECK(method != "magnitude" || (o.calib.empty() && o.imatrix.empty()), "--method magnitude uses no calibration");
  TERN_CHECK(o.imatrix.empty() || method == "rtn" || method == "wanda",
             "--imatrix is for --method rtn and wanda ({} collects its own statistics)", method);
  TERN_CHECK(o.imatrix.empty() || o.calib.empty(), "give --imatrix or --calib, not both");
  namespace fs = std::filesystem;
  std::error_code ec;
  TERN_CHECK(o.in != o.out && !(fs::exists(o.out, ec) && fs::equivalent(o.in, o.out, ec)),
             "{}: refusing to overwrite the input file (give another output path)", o.out);
  const auto f = gguf::File::open(o.in);
  const int n_threads = o.threads > 0 ? o.threads : std::max(1u, std::thread::hardware_concurrency());
  ThreadPool pool(n_threads);

  // Calibrated methods and importance-weighted RTN decide what they need before anything is written.
  std::unique_ptr<CalibratedQuantizer> calibrated;
  if (!o.calib.empty() || !o.imatrix.empty() || prunes) {
    std::map<std::string, std::shared_ptr<quant::InputStats>> inputs;
    if (!o.imatrix.empty()) {
      inputs = read_imatrix(o.imatrix);
    } else if (!o.calib.empty()) {
      inputs = calibrate({.model_path = o.in, .text_file = o.calib, .tokens = o.calib_tokens, .ctx = o.calib_ctx,
                          .threads = n_threads, .hessian = needs_hessian, .quiet = o.quiet})
                   .inputs;
    }
    calibrated = std::make_unique<CalibratedQuantizer>(f, target, o.method, std::move(inputs), pool, o.quiet);
  }

  gguf::Writer w(3, f.alignment());
  for (const auto& key : f.keys()) w.copy_key(f, key);
  w.set_u32("general.file_type", tgt.ftype());
  if (traits(target).quantized) w.set_u32("general.quantization_version", 2);  // ggml's GGML_QNT_VERSION
  w.set_string("tern.quantize.method", method + (calibrated && method == "rtn" ? "+imatrix" : ""));
  if (prunes)
    w.set_string("tern.quantize.sparsity", o.pattern.empty() ? fmt::format("{:g}", o.sparsity) : o.pattern);
  if (method == "smoothquant") w.set_f32("tern.quantize.smoothquant_alpha", static_cast<float>(o.method.alpha));
  if (!o.calib.empty()) w.set_string("tern.quantize.calibration", o.calib);

  // Plan every tensor first, and try one block of each conversion, so an unsupported input type
  // fails before anything is written rather than halfway through a large file.
  int n_layers = 0;
  bool has_output = false;
  for (const auto& t : f.tensors()) {
    n_layers = std::max(n_layers, layer_of(t.name) + 1);
    has_output = has_output || t.name == "output.weight";
  }
  std::vector<Plan> plans;
  for (const auto& t : f.tensors()) {
    const DType want =
        tgt.mix ? mix_fallback(mix_type(*tgt.mix, t.name, layer_of(t.name), n_layers, has_output), t.ne[0]) : target;
    plans.push_back(plan_tensor(t, want));
    Plan& p = plans.back();
    // A calibrated method rewrites every matrix it has statistics for (even one already of the
    // target type) and the norm vectors that absorb AWQ's scales (kept F32).
    if (calibrated && calibrated->handles(t.name)) {
      if (t.ndim < 2)
        p = {&t, DType::F32, true, nullptr};
      else if (p.why && std::string_view(p.why) == "already target type")
        p = {&t, want, true, nullptr};
    }
    try {
      if (p.convert) {
        std::vector<float> probe(static_cast<size_t>(traits(t.dtype).block_elems));
        quant::dequantize_row(t.dtype, t.data, probe.data(), static_cast<int64_t>(probe.size()));
      }
      w.declare_tensor(t.name, p.dst, std::vector<int64_t>(t.ne.begin(), t.ne.begin() + t.ndim));
    } catch (const std::exception& e) {
      fail("{}: tensor '{}' ({} {}): {}", o.in, t.name, dtype_name(t.dtype), shape_of(t), e.what());
    }
  }

  const auto t0 = std::chrono::steady_clock::now();
  size_t in_bytes = 0, out_bytes = 0, converted_in_bytes = 0, n_converted = 0;
  const size_t n = plans.size();
  w.write(o.out, [&](size_t i, std::span<uint8_t> out) {
    const Plan& p = plans[i];
    const gguf::TensorInfo& t = *p.src;
    try {
      if (p.convert && calibrated && calibrated->handles(t.name)) {
        calibrated->convert(t, p.dst, out);
        converted_in_bytes += t.nbytes;
        ++n_converted;
      } else if (p.convert) {
        convert_rows(t, p.dst, out.data(), n_threads);
        converted_in_bytes += t.nbytes;
        ++n_converted;
      } else {
        TERN_CHECK(out.size() == t.nbytes, "size mismatch copying {} bytes", t.nbytes);  // cannot happen
        std::memcpy(out.data(), t.data, t.nbytes);
      }
    } catch (const std::exception& e) {
      fail("{}: tensor '{}' ({} {}): {}", o.in, t.name, dtype_name(t.dtype), shape_of(t), e.what());
    }
    in_bytes += t.nbytes;
    out_bytes += out.size();
    if (!o.quiet) {
      std::string line = fmt::format("[{:>{}}/{}] {:<32} {:<5} -> {:<5} {:<18} {:>10} -> {:<10}", i + 1,
                                     fmt::formatted_size("{}", n), n, t.name, dtype_name(t.dtype), dtype_name(p.dst),
                                     shape_of(t), human(static_cast<double>(t.nbytes)), human(static_cast<double>(out.size())));
      if (p.why) line += fmt::format("  kept: {}", p.why);
      line.erase(line.find_last_not_of(' ') + 1);
      fmt::print(stderr, "{}\n", line);
    }
  });
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  fmt::print(stderr,
             "tern quantize: {} -> {} ({}, {}): converted {} of {} tensors, {} -> {} in {:.1f} s "
             "({:.0f} MB/s of converted input, {} threads)\n",
             o.in, o.out, tgt.name(), method, n_converted, n, human(static_cast<double>(in_bytes)),
             human(static_cast<double>(out_bytes)), s, s > 0 ? static_cast<double>(converted_in_bytes) / 1e6 / s : 0.0,
             n_threads);
  if (calibrated && !calibrated->summary().empty()) fmt::print(stderr, "tern quantize: {}\n", calibrated->summary());
  if (n_converted == 0)
    fmt::print(stderr, "tern quantize: warning: no tensor was converted to {} (see the 'kept' reasons above)\n",
               tgt.name());
}

}  // namespace

void register_quantize(CLI::App& app) {
  auto o = std::make_shared<QuantizeOptions>();
  CLI::App* cmd = app.add_subcommand("quantize", "rewrite a GGUF file with its weight matrices in another type");
  cmd->footer(
      "Every tensor of two or more dims named *.weight is converted to --type, token_embd.weight and\n"
      "output.weight included (llama.cpp would keep output.weight / a tied token_embd at Q6_K for most\n"
      "types; a single type makes sizes and speeds easier to compare). Norms, biases and other vectors,\n"
      "the MoE router (ffn_gate_inp) and matrices whose rows are not whole blocks of --type keep their\n"
      "type. Metadata is copied, with general.file_type set to llama.cpp's LLAMA_FTYPE for the type\n"
      "(the _S variant for q3_k/q4_k/q5_k). Tensors are written as they are converted, so memory is\n"
      "the mmapped input plus one output tensor.\n"
      "q3_k_m, q4_k_m and q5_k_m are llama.cpp's mixes (rtn only): output.weight (or a tied token_embd)\n"
      "in q6_k; q4_k_m/q5_k_m give q6_k to attn_v and ffn_down in the first and last eighth of the\n"
      "layers and every third layer between; q3_k_m gives attn_v q5_k in layers 0-1 and q4_k after,\n"
      "ffn_down q5_k in the first sixteenth and q4_k after, attn_output q4_k. In a mix, a matrix whose\n"
      "rows are not whole 256-element super-blocks takes llama.cpp's fallback (q4_k -> q5_0, q5_k -> q5_1,\n"
      "q6_k -> q8_0; q3_k -> q4_0, where llama.cpp writes iq4_nl).");
  cmd->add_option("input", o->in, "GGUF file to read (any weight types tern loads)")->required();
  cmd->add_option("output", o->out, "GGUF file to write (not the input; written to OUTPUT.tmp, then renamed)")->required();
  cmd->add_option("--type", o->type,
                  "target type: f32, f16, bf16, q4_0, q4_1, q5_0, q5_1, q8_0, q2_k, q3_k, q4_k, q5_k, q6_k, or a mix: "
                  "q3_k_m, q4_k_m, q5_k_m")
      ->required();
  cmd->add_option("--method", o->method.method,
                  "rtn (round to nearest), gptq (error feedback through calibration Hessians), awq "
                  "(activation-aware channel scales folded into the norms), smoothquant (W8A8: activation outliers "
                  "migrated into the q8_0 weights); pruning the blocks' matrices, then "
                  "rtn: magnitude, wanda (|w| times the input's norm) or sparsegpt (pruning with error feedback)")
      ->check(CLI::IsMember({"rtn", "gptq", "awq", "smoothquant", "magnitude", "wanda", "sparsegpt"}));
  cmd->add_option("--calib", o->calib,
                  "calibration text for gptq, awq, smoothquant, wanda and sparsegpt (rtn: weight the rounding by its "
                  "activations)");
  cmd->add_option("--calib-tokens", o->calib_tokens, "calibration tokens (default 16384)")->check(CLI::Range(int64_t{1}, int64_t{1} << 30));
  cmd->add_option("--calib-ctx", o->calib_ctx, "tokens per calibration window (default 512)")->check(CLI::Range(8, 1 << 16));
  cmd->add_option("--imatrix", o->imatrix, "importance matrix from tern imatrix (rtn, wanda)");
  cmd->add_option("--group-size", o->group_size, "elements per quantisation group; must be the type's own (32 for "
                                                 "q4_0..q8_0 and q4_k, 16 for q3_k)")
      ->check(CLI::Range(0, 1 << 16));
  cmd->add_option("--alpha", o->method.alpha, "smoothquant: migration strength (default 0.5)")->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--sparsity", o->sparsity, "pruning: the share of each row zeroed (default 0.5)")
      ->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--pattern", o->pattern, "pruning: N:M keeps N of every M consecutive weights of a row (e.g. 2:4) "
                                           "instead of --sparsity");
  cmd->add_flag("--act-order", o->method.gptq.act_order, "gptq: quantise columns in order of decreasing activation energy");
  cmd->add_option("--damp", o->method.gptq.damp, "gptq: Hessian damping as a fraction of its mean diagonal (default 0.01)")
      ->check(CLI::Range(0.0, 10.0));
  cmd->add_option("-t,--threads", o->threads, "threads (default: all hardware threads)")->check(CLI::Range(0, 1024));
  cmd->add_flag("-q,--quiet", o->quiet, "no per-tensor progress lines");
  cmd->callback([o] { quantize(*o); });
}

}  // namespace tern::cli
