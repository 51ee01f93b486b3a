#include "runtime/env.h"

#include <chrono>
#include <thread>

namespace gati::runtime {
namespace {

class SteadyEnv final : public Env {
 public:
  double NowMicros() override {
    return std::chrono::duration<double, std::micro>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
  }
  void SleepForMicros(double micros) override {
    if (micros > 0) std::this_thread::sleep_for(std::chrono::duration<double, std::micro>(micros));
  }
  int64_t UnixMillis() override {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
  }
};

}  // namespace

Env* Env::Default() {
  static Env* const env = new SteadyEnv();
  return env;
}

}  // namespace gati::runtime
