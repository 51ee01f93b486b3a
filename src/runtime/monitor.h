// The live agreement monitor: per tap, the outcomes (false hit or not) of
// its last `window` checked hits. A tap is switched off when the
// one-sided lower confidence bound (Clopper-Pearson) of its false-hit rate
// exceeds epsilon: with the given confidence, the tap is then really worse
// than its bound, not just unlucky.
#ifndef GATI_RUNTIME_MONITOR_H_
#define GATI_RUNTIME_MONITOR_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "runtime/mutex.h"

namespace gati::runtime {

class TapMonitor {
 public:
  // One tap per entry of `epsilons` (its bound); judges a tap once it has
  // `min_checks` outcomes in its window.
  // REQUIRES: window >= 1, 0 < epsilons[i] < 1, 0 < confidence < 1.
  TapMonitor(std::vector<double> epsilons, int window, int min_checks, double confidence);

  // Records one checked hit of `slot`; thread-safe. Returns true when this
  // record switched the tap off (it was on and now is not).
  bool Record(int slot, bool false_hit);
  // Switches `slot` back on with an empty window (after a validated update).
  void Reset(int slot);

  bool disabled(int slot) const;
  double lower_bound(int slot) const;
  int64_t checked(int slot) const;     // All checked hits since creation.
  int64_t false_hits(int slot) const;  // All false hits since creation.
  int64_t times_disabled(int slot) const;

 private:
  struct Tap {
    mutable Mutex mutex;
    std::vector<uint8_t> window ABSL_GUARDED_BY(mutex);  // Ring of outcomes.
    int64_t next ABSL_GUARDED_BY(mutex) = 0;
    int64_t filled ABSL_GUARDED_BY(mutex) = 0;
    int64_t window_false ABSL_GUARDED_BY(mutex) = 0;
    int64_t checked ABSL_GUARDED_BY(mutex) = 0;
    int64_t false_hits ABSL_GUARDED_BY(mutex) = 0;
    int64_t times_disabled ABSL_GUARDED_BY(mutex) = 0;
    double lower ABSL_GUARDED_BY(mutex) = 0;
    bool disabled ABSL_GUARDED_BY(mutex) = false;
  };
  std::vector<double> epsilons_;
  int window_;
  int min_checks_;
  double confidence_;
  std::vector<std::unique_ptr<Tap>> taps_;
};

}  // namespace gati::runtime

#endif  // GATI_RUNTIME_MONITOR_H_
