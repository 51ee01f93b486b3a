// Time for the engine, the online learner and the inference service,
// injected so that tests run on fake time: request timings, mode auto's
// measurements, the learner's time trigger and its CPU-share sleeps, the
// service's latency metrics and its drain wait all read or spend it here.
#ifndef GATI_RUNTIME_ENV_H_
#define GATI_RUNTIME_ENV_H_

#include <cstdint>

namespace gati::runtime {

class Env {
 public:
  virtual ~Env() = default;
  // Microseconds on a monotonic clock from any fixed origin. Thread-safe.
  virtual double NowMicros() = 0;
  // Lets `micros` pass (a real sleep, or fake time advancing). Thread-safe.
  virtual void SleepForMicros(double micros) = 0;
  // Milliseconds since the Unix epoch (wall time, for reports). Thread-safe.
  virtual int64_t UnixMillis() = 0;
  // std::chrono::steady_clock and std::this_thread::sleep_for; never deleted.
  static Env* Default();
};

}  // namespace gati::runtime

#endif  // GATI_RUNTIME_ENV_H_
