#include "cli/progress_bar.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <string>

namespace gati::cli {

ProgressBar::ProgressBar(std::string label, int64_t total)
    : label_(std::move(label)),
      total_(std::max<int64_t>(total, 1)),
      terminal_(isatty(STDERR_FILENO) == 1),
      start_(std::chrono::steady_clock::now()) {}

namespace {

// "1m05s" or "42s".
std::string Duration(double seconds) {
  char text[32];
  long total = static_cast<long>(seconds + 0.5);
  if (total >= 60) {
    std::snprintf(text, sizeof(text), "%ldm%02lds", total / 60, total % 60);
  } else {
    std::snprintf(text, sizeof(text), "%lds", total);
  }
  return text;
}

}  // namespace

void ProgressBar::Update(int64_t done) {
  int percent = static_cast<int>(100 * std::min(done, total_) / total_);
  if (percent == last_percent_) return;
  if (!terminal_ && percent / 10 == last_percent_ / 10 && percent != 100) {
    return;
  }
  last_percent_ = percent;
  constexpr int kWidth = 30;
  int filled = percent * kWidth / 100;
  const double elapsed = std::chrono::duration<double>(
                             std::chrono::steady_clock::now() - start_)
                             .count();
  // The remaining time at the rate so far.
  std::string timing = Duration(elapsed);
  if (done > 0 && done < total_) {
    timing += ", ETA " + Duration(elapsed * (total_ - done) / done);
  }
  std::fprintf(stderr, "%s%s [%.*s%*s] %3d%% %lld/%lld (%s)%s",
               terminal_ ? "\r" : "", label_.c_str(), filled,
               "##############################", kWidth - filled, "", percent,
               static_cast<long long>(std::min(done, total_)),
               static_cast<long long>(total_), timing.c_str(),
               terminal_ ? "\x1b[K" : "\n");
  std::fflush(stderr);
}

void ProgressBar::Finish() {
  if (finished_) return;
  finished_ = true;
  if (terminal_) std::fputc('\n', stderr);
}

}  // namespace gati::cli
