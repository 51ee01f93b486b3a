#include "cli/progress_bar.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>

namespace gati::cli {

ProgressBar::ProgressBar(std::string label, int64_t total)
    : label_(std::move(label)),
      total_(std::max<int64_t>(total, 1)),
      terminal_(isatty(STDERR_FILENO) == 1) {}

void ProgressBar::Update(int64_t done) {
  int percent = static_cast<int>(100 * std::min(done, total_) / total_);
  if (percent == last_percent_) return;
  if (!terminal_ && percent / 10 == last_percent_ / 10 && percent != 100) {
    return;
  }
  last_percent_ = percent;
  constexpr int kWidth = 30;
  int filled = percent * kWidth / 100;
  std::fprintf(stderr, "%s%s [%.*s%*s] %3d%% %lld/%lld%s",
               terminal_ ? "\r" : "", label_.c_str(), filled,
               "##############################", kWidth - filled, "", percent,
               static_cast<long long>(std::min(done, total_)),
               static_cast<long long>(total_), terminal_ ? "" : "\n");
  std::fflush(stderr);
}

void ProgressBar::Finish() {
  if (finished_) return;
  finished_ = true;
  if (terminal_) std::fputc('\n', stderr);
}

}  // namespace gati::cli
