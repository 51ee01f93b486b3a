// Test doubles for the serving core: a fake engine (no LibTorch) and a
// factory that hands them out, shared by the serving tests.
#ifndef GATI_TESTS_SERVE_SERVE_TESTUTIL_H_
#define GATI_TESTS_SERVE_SERVE_TESTUTIL_H_

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "gati/engine.h"
#include "serve/model_repository.h"
#include "serve/oip_codec.h"

namespace gati::serve {

// Answers class = round(first input value) at tap 3 when that value is
// below 5, else by the base model; can hold requests until released.
class FakeEngine : public Engine {
 public:
  explicit FakeEngine(int64_t cache_version) : cache_version_(cache_version) {
    metadata_.input_shape = {1, 2, 2};
    metadata_.mean = {0.5f};
    metadata_.std = {0.25f};
    metadata_.class_names = {"a", "b", "c", "d", "e", "f", "g", "h", "i", "j"};
  }

  absl::StatusOr<InferResult> Infer(const float* input, int64_t count,
                                    const InferOptions& options) override {
    if (count != 4) return absl::InvalidArgumentError("wrong size");
    {
      std::unique_lock<std::mutex> lock(mu_);
      ++running_;
      cv_.notify_all();
      cv_.wait(lock, [this] { return !hold_; });
      --running_;
    }
    if (input[0] < 0) return absl::InternalError("model exploded");
    InferResult result;
    result.label = static_cast<int>(input[0]);
    result.exit_tap = input[0] < 5 ? 3 : kBaseExit;
    result.cache_hit = result.exit_tap != kBaseExit;
    result.cache_version = cache_version_;
    if (options.want_scores) {
      result.scores.assign(10, 0.0f);
      result.scores[result.label] = 1.0f;
    }
    result.timings.total_us = 300;
    result.timings.queue_us = 100;
    return result;
  }
  absl::StatusOr<InferResult> InferBase(const float* input, int64_t count) override {
    return Infer(input, count, {});
  }
  absl::StatusOr<int> UpdateNow() override { return 0; }
  void WaitForFeedback() override {}
  EngineStats Stats() const override {
    EngineStats stats;
    stats.cache_version = cache_version_;
    TapStats tap;
    tap.tap = 3;
    tap.lookups = 10;
    tap.hits = 4;
    stats.taps.push_back(tap);
    return stats;
  }
  const ModelMetadata& metadata() const override { return metadata_; }
  const std::vector<int>& planned_taps() const override { return taps_; }
  double predicted_mean_ms() const override { return 1; }
  double predicted_base_ms() const override { return 2; }
  int plan_batch() const override { return 1; }
  bool learner_busy() const override { return false; }
  LookupMode mode() const override { return LookupMode::kSequential; }
  bool serving_base() const override { return false; }
  bool batches_serving_base() const override { return false; }
  const std::string& mode_report() const override { return mode_report_; }

  void Hold() {
    std::lock_guard<std::mutex> lock(mu_);
    hold_ = true;
  }
  void Release() {
    std::lock_guard<std::mutex> lock(mu_);
    hold_ = false;
    cv_.notify_all();
  }
  void WaitRunning(int n) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return running_ >= n; });
  }

 private:
  ModelMetadata metadata_;
  std::vector<int> taps_ = {3};
  std::string mode_report_ = "sequential (fake)";
  int64_t cache_version_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool hold_ = false;
  int running_ = 0;
};

// Hands out FakeEngines and remembers the last; fails while `fail` is set.
struct FakeFactory {
  std::atomic<bool> fail{false};
  std::atomic<int> loads{0};
  FakeEngine* last = nullptr;

  EngineFactory Make() {
    return [this](const std::string& dir) -> absl::StatusOr<std::unique_ptr<Engine>> {
      if (fail) return absl::NotFoundError(dir + "/manifest.json: cannot open");
      auto engine = std::make_unique<FakeEngine>(++loads);
      last = engine.get();
      return std::unique_ptr<Engine>(std::move(engine));
    };
  }
};

// Dynamic batching of at most `max_batch_size` rows, no delays.
inline BatchingOptions DynamicBatching(int max_batch_size) {
  BatchingOptions options;
  options.dynamic = true;
  options.max_batch_size = max_batch_size;
  return options;
}

// A request for the fake model: one input "input" of `shape`, the outputs
// named (none: every output).
inline DecodedRequest Request(std::vector<int64_t> shape, std::vector<float> data,
                              std::vector<std::string> outputs = {}) {
  DecodedRequest request;
  request.id = "r1";
  request.inputs.push_back({"input", "FP32", std::move(shape), std::move(data)});
  for (const std::string& name : outputs) request.outputs.push_back({name, false});
  return request;
}

}  // namespace gati::serve

#endif  // GATI_TESTS_SERVE_SERVE_TESTUTIL_H_
