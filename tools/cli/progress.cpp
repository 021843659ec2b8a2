#include "progress.h"

#include <fmt/format.h>
#include <unistd.h>

#include <cstdio>

namespace tern::cli {

namespace {
std::string clock_time(double s) {
  const auto t = static_cast<int64_t>(s + 0.5);
  return t >= 3600 ? fmt::format("{}:{:02}:{:02}", t / 3600, t / 60 % 60, t % 60) : fmt::format("{}:{:02}", t / 60, t % 60);
}
}  // namespace

Progress::Progress(std::string what, int64_t total, bool quiet)
    : what_(std::move(what)), total_(total), quiet_(quiet), tty_(isatty(fileno(stderr)) != 0) {}

double Progress::seconds() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
}

void Progress::update(int64_t done, const std::string& extra) {
  if (quiet_ || total_ <= 0) return;
  const auto now = std::chrono::steady_clock::now();
  const int decile = static_cast<int>(10 * done / total_);
  if (tty_ ? (done < total_ && now - last_draw_ < std::chrono::milliseconds(200)) : decile == last_decile_) return;
  last_draw_ = now;
  last_decile_ = decile;
  const double s = seconds(), frac = static_cast<double>(done) / total_;
  const std::string eta = done > 0 ? clock_time(s / frac - s) : "?";
  constexpr int kWidth = 24;
  const int filled = static_cast<int>(frac * kWidth);
  const std::string bar = std::string(filled, '#') + std::string(kWidth - filled, '.');
  const std::string line = fmt::format("{} [{}] {}/{} {} elapsed, ETA {}{}{}", what_, bar, done, total_, clock_time(s), eta,
                                       extra.empty() ? "" : ", ", extra);
  if (tty_) {
    fmt::print(stderr, "\r{}\x1b[K", line);
    drawn_ = true;
  } else {
    fmt::print(stderr, "{}\n", line);
  }
  std::fflush(stderr);
}

void Progress::finish() {
  if (drawn_) fmt::print(stderr, "\n");
  drawn_ = false;
}

}  // namespace tern::cli
