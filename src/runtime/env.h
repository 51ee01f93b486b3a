// Time for the engine and the online learner, injected so that tests run on
// fake time: request timings, mode auto's measurements, the learner's time
// trigger and its CPU-share sleeps all read or spend it here.
#ifndef GATI_RUNTIME_ENV_H_
#define GATI_RUNTIME_ENV_H_

namespace gati::runtime {

class Env {
 public:
  virtual ~Env() = default;
  // Microseconds on a monotonic clock from any fixed origin. Thread-safe.
  virtual double NowMicros() = 0;
  // Lets `micros` pass (a real sleep, or fake time advancing). Thread-safe.
  virtual void SleepForMicros(double micros) = 0;
  // std::chrono::steady_clock and std::this_thread::sleep_for; never deleted.
  static Env* Default();
};

}  // namespace gati::runtime

#endif  // GATI_RUNTIME_ENV_H_
