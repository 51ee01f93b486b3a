#include "runtime/monitor.h"

#include "cache/calibration.h"

namespace gati::runtime {

TapMonitor::TapMonitor(std::vector<double> epsilons, int window, int min_checks,
                       double confidence)
    : epsilons_(std::move(epsilons)),
      window_(window),
      min_checks_(min_checks),
      confidence_(confidence) {
  for (size_t i = 0; i < epsilons_.size(); ++i) {
    auto tap = std::make_unique<Tap>();
    tap->window.assign(window, 0);
    taps_.push_back(std::move(tap));
  }
}

bool TapMonitor::Record(int slot, bool false_hit) {
  Tap& tap = *taps_[slot];
  MutexLock lock(&tap.mutex);
  ++tap.checked;
  tap.false_hits += false_hit;
  if (tap.filled == window_) {
    tap.window_false -= tap.window[tap.next];
  } else {
    ++tap.filled;
  }
  tap.window[tap.next] = false_hit;
  tap.window_false += false_hit;
  tap.next = (tap.next + 1) % window_;
  tap.lower = ClopperPearsonLower(tap.window_false, tap.filled, confidence_);
  if (!tap.disabled && tap.filled >= min_checks_ && tap.lower > epsilons_[slot]) {
    tap.disabled = true;
    ++tap.times_disabled;
    return true;
  }
  return false;
}

void TapMonitor::Reset(int slot) {
  Tap& tap = *taps_[slot];
  MutexLock lock(&tap.mutex);
  std::fill(tap.window.begin(), tap.window.end(), 0);
  tap.next = tap.filled = tap.window_false = 0;
  tap.lower = 0;
  tap.disabled = false;
}

bool TapMonitor::disabled(int slot) const {
  MutexLock lock(&taps_[slot]->mutex);
  return taps_[slot]->disabled;
}
double TapMonitor::lower_bound(int slot) const {
  MutexLock lock(&taps_[slot]->mutex);
  return taps_[slot]->lower;
}
int64_t TapMonitor::checked(int slot) const {
  MutexLock lock(&taps_[slot]->mutex);
  return taps_[slot]->checked;
}
int64_t TapMonitor::false_hits(int slot) const {
  MutexLock lock(&taps_[slot]->mutex);
  return taps_[slot]->false_hits;
}
int64_t TapMonitor::times_disabled(int slot) const {
  MutexLock lock(&taps_[slot]->mutex);
  return taps_[slot]->times_disabled;
}

}  // namespace gati::runtime
