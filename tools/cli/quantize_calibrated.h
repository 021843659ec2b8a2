// The calibrated methods of `tern quantize`: what they decide before any tensor is written
// (AWQ's scales for every input, GPTQ's Hessians, an importance matrix) and how each tensor is then
// converted. Plain round-to-nearest without an importance matrix never comes here: it streams rows.
#pragma once

#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "calibration.h"
#include "core/dtype.h"
#include "formats/gguf/gguf.h"
#include "quant/gptq.h"
#include "quant/prune.h"

namespace tern {
class ThreadPool;
}

namespace tern::cli {

struct MethodOptions {
  std::string method = "rtn";  // rtn, gptq, awq, smoothquant; magnitude, wanda, sparsegpt (pruning)
  quant::GptqConfig gptq;
  quant::SparsityPattern sparsity;
  double alpha = 0.5;  // SmoothQuant's migration strength
  bool prunes() const { return method == "magnitude" || method == "wanda" || method == "sparsegpt"; }
};

class CalibratedQuantizer {
 public:
  // `inputs`: per weight, its input statistics (from calibration or an imatrix file); with method
  // rtn they serve as importance only.
  CalibratedQuantizer(const gguf::File& file, DType target, MethodOptions method,
                      std::map<std::string, std::shared_ptr<quant::InputStats>> inputs, ThreadPool& pool, bool quiet);
  ~CalibratedQuantizer();

  // Whether tensor `name` is converted here (a matrix with statistics or a scale, a norm vector
  // that absorbs AWQ scales, or a block's matrix to prune) rather than copied or streamed through
  // plain RTN.
  bool handles(const std::string& name) const;
  // Writes tensor t converted to dst (a matrix) or, for an absorbing norm vector, its new F32 values.
  void convert(const gguf::TensorInfo& t, DType dst, std::span<uint8_t> out);
  // A one-line account of what the method did (errors against plain RTN, chosen alphas).
  std::string summary() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tern::cli
