// A progress line for long work (perplexity, calibration, quantisation): done/total, rate, elapsed
// and ETA. On a terminal it redraws one line; otherwise it prints a line every ~10% so logs stay short.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace tern::cli {

class Progress {
 public:
  Progress(std::string what, int64_t total, bool quiet = false);
  // `done` units finished; `extra` is appended to the line (e.g. the running perplexity).
  void update(int64_t done, const std::string& extra = {});
  void finish();  // ends the redrawn line
  double seconds() const;

 private:
  std::string what_;
  int64_t total_;
  bool quiet_, tty_;
  int last_decile_ = -1;
  bool drawn_ = false;
  std::chrono::steady_clock::time_point t0_ = std::chrono::steady_clock::now(), last_draw_{};
};

}  // namespace tern::cli
