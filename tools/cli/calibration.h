// Runs a model over calibration text and gathers, for every weight matrix, statistics of the
// activations entering it (quant/input_stats.h): what `tern imatrix` writes and what the calibrated
// quantisers (GPTQ, AWQ) learn from. Matrices that read the same activations share one InputStats.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "quant/input_stats.h"

namespace tern::cli {

struct CalibrationOptions {
  std::string model_path;
  std::string text_file;
  int64_t tokens = 16384;  // calibration tokens (the text's first ones), in windows of ctx
  int ctx = 512;
  int threads = 0;
  bool hessian = false;  // also the full E[x x^T] per input (GPTQ, AWQ)
  bool quiet = false;
};

struct Calibration {
  // Weight tensor name (e.g. "blk.3.attn_q.weight") -> the statistics of its input.
  std::map<std::string, std::shared_ptr<quant::InputStats>> inputs;
  int64_t tokens = 0, windows = 0;
};

Calibration calibrate(const CalibrationOptions& options);

// Importance matrix files, in llama.cpp's GGUF layout (general.type "imatrix"; per weight a tensor
// "<weight>.in_sum2" [n_in, 1] of summed squared inputs and "<weight>.counts" [1, 1]).
void write_imatrix(const std::string& path, const Calibration& cal, const std::string& text_file);
std::map<std::string, std::shared_ptr<quant::InputStats>> read_imatrix(const std::string& path);

}  // namespace tern::cli
