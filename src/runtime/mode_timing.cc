#include "runtime/mode_timing.h"

#include <algorithm>
#include <chrono>
#include <memory>

#include "absl/strings/str_cat.h"
#include "gati/engine.h"

namespace gati::runtime {

absl::StatusOr<ModeTiming> TimeModes(const std::string& bundle_dir, const float* inputs,
                                     int64_t count, int intra_op_threads) {
  if (inputs == nullptr || count <= 0) {
    return absl::InvalidArgumentError("mode timing: no inputs");
  }
  EngineOptions options;
  options.intra_op_threads = intra_op_threads;
  options.feedback_rate = 0;
  options.auto_probe_requests = 0;
  options.learner.enabled = false;
  options.mode = LookupMode::kSequential;
  GATI_ASSIGN_OR_RETURN(std::unique_ptr<Engine> sequential, Engine::Create(bundle_dir, options));
  options.mode = LookupMode::kParallel;
  GATI_ASSIGN_OR_RETURN(std::unique_ptr<Engine> parallel, Engine::Create(bundle_dir, options));
  int64_t input_size = 1;
  for (int64_t d : sequential->input_shape()) input_size *= d;
  const std::vector<int>& taps = sequential->planned_taps();

  ModeTiming timing;
  timing.exit_slot.assign(count, static_cast<int>(taps.size()));
  double total_us[3] = {0, 0, 0};
  constexpr int64_t kBlock = 16;
  const int64_t blocks = (count + kBlock - 1) / kBlock;
  for (int64_t b = -1; b < blocks; ++b) {  // Block -1 warms up.
    const int64_t first = std::max<int64_t>(0, b) * kBlock;
    const int64_t end = std::min(count, first + kBlock);
    for (int k = 0; k < 3; ++k) {
      const int candidate = static_cast<int>((std::max<int64_t>(0, b) + k) % 3);
      const auto start = std::chrono::steady_clock::now();
      for (int64_t i = first; i < end; ++i) {
        const float* x = inputs + i * input_size;
        absl::StatusOr<InferResult> result =
            candidate == 0   ? sequential->Infer(x, input_size)
            : candidate == 1 ? parallel->Infer(x, input_size)
                             : sequential->InferBase(x, input_size);
        if (!result.ok()) {
          return absl::InternalError(
              absl::StrCat("mode timing: request ", i, ": ", result.status().message()));
        }
        if (candidate == 0 && result->exit_tap != kBaseExit) {
          const auto at = std::find(taps.begin(), taps.end(), result->exit_tap);
          timing.exit_slot[i] = static_cast<int>(at - taps.begin());
        }
      }
      // A parallel request's worker may still run a segment: that belongs
      // to parallel's block, not to the next candidate's.
      parallel->WaitForFeedback();
      const double us =
          std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start)
              .count();
      if (b >= 0) total_us[candidate] += us;
    }
  }
  timing.sequential_ms = total_us[0] / count / 1000;
  timing.parallel_ms = total_us[1] / count / 1000;
  timing.base_ms = total_us[2] / count / 1000;
  return timing;
}

}  // namespace gati::runtime
