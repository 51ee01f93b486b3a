// A progress bar on stderr with elapsed time and ETA: redrawn in place on a
// terminal, one line per 10% otherwise (logs, CI).
#ifndef GATI_CLI_PROGRESS_BAR_H_
#define GATI_CLI_PROGRESS_BAR_H_

#include <chrono>
#include <cstdint>
#include <string>

namespace gati::cli {

class ProgressBar {
 public:
  ProgressBar(std::string label, int64_t total);
  // Reports that `done` of `total` items are finished.
  void Update(int64_t done);
  // Ends the bar's line.
  void Finish();

 private:
  std::string label_;
  int64_t total_;
  bool terminal_;
  int last_percent_ = -1;
  bool finished_ = false;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace gati::cli

#endif  // GATI_CLI_PROGRESS_BAR_H_
