// The dynamic batcher of one served model version: concurrent requests are
// merged into one Engine::InferBatch call, as Triton's dynamic batcher
// merges them, with Triton's settings (the model's config.json, or the
// `gati serve` defaults):
//   max_batch_size                 most rows in one batch (0: no batching;
//                                  each request runs alone, as before);
//   preferred_batch_size           sizes run as soon as they can be formed;
//   max_queue_delay_microseconds   longest a request waits for others to
//                                  join its batch (0: none, so a batch is
//                                  what queued while earlier ones computed).
// A client's own batch is never split: it joins a batch whole, or runs alone
// when it is larger than max_batch_size. At most `max_concurrent` batches
// compute at once; the rest queue in arrival order.
//
// There is no batching thread: the waiting callers take turns. The caller
// whose request is at the head of the queue, once a computing slot is free
// and the batch is due, takes the batch (its own request first), runs it
// on its own thread and hands every member its rows' answers, so a request
// that finds the model idle pays no handoff.
#ifndef GATI_SERVE_BATCHER_H_
#define GATI_SERVE_BATCHER_H_

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "gati/engine.h"
#include "gati/status.h"
#include "runtime/mutex.h"

namespace gati::serve {

struct BatchingOptions {
  // false: no batcher; each request runs alone (max_batch_size is then
  // only what the model config reports).
  bool dynamic = false;
  int max_batch_size = 0;
  std::vector<int> preferred_batch_sizes;  // Ascending, each in 1..max_batch_size.
  int64_t max_queue_delay_us = 0;
  // While another batch computes, how long the head waits at most for
  // company before its batch runs in a free slot (gati's own setting, not
  // Triton's; never beyond max_queue_delay_us when that is longer). An idle
  // model runs a request at once whatever this says; under load it keeps
  // a slot that frees from taking the first request to arrive alone, while
  // the clients just answered are still sending their next ones.
  int64_t busy_delay_us = 0;
  int max_concurrent = 1;  // Batches computing at once (>= 1).
};

// InvalidArgument naming the field when `options` is inconsistent.
absl::Status ValidateBatching(const BatchingOptions& options);

// Reads Triton's batching fields from a model config in JSON
// (`max_batch_size`, `dynamic_batching.preferred_batch_size`,
// `dynamic_batching.max_queue_delay_microseconds`) over `defaults`; the
// other fields of a Triton config are left to it. `where` names the source
// in errors. A config without dynamic_batching batches nothing, as in
// Triton.
absl::StatusOr<BatchingOptions> ParseBatchingConfig(const std::string& json,
                                                    const BatchingOptions& defaults,
                                                    const std::string& where);

class Batcher {
 public:
  // `executions`, when not null, counts the batches run (the model's
  // metrics; must outlive the batcher).
  Batcher(Engine* engine, BatchingOptions options, std::atomic<int64_t>* executions = nullptr);
  Batcher(const Batcher&) = delete;
  Batcher& operator=(const Batcher&) = delete;

  // Answers `n` rows (rows[i]: `count` floats, as for Engine::InferBatch)
  // within a batch; blocks until they are answered (n = 0: none, at once).
  // A `count` other than
  // the model's input size fails every row (InvalidArgument). When
  // `waited_us` is not null it receives the time from the call to the
  // start of its batch (queue time). Thread-safe.
  std::vector<absl::StatusOr<InferResult>> Run(const float* const* rows, int64_t n,
                                               int64_t count, bool want_scores,
                                               double* waited_us = nullptr)
      ABSL_LOCKS_EXCLUDED(mu_);

  const BatchingOptions& options() const { return options_; }
  // Batches run and the rows in them, since the start.
  int64_t batches() const { return batches_.load(std::memory_order_relaxed); }
  int64_t batched_rows() const { return batched_rows_.load(std::memory_order_relaxed); }
  // Rows waiting for a batch now.
  int64_t queued_rows() const {
    runtime::MutexLock lock(&mu_);
    return queued_rows_;
  }

 private:
  using Clock = std::chrono::steady_clock;
  struct Pending {
    const float* const* rows = nullptr;
    int64_t n = 0;
    int64_t count = 0;
    bool want_scores = false;
    Clock::time_point enqueued;
    Clock::time_point started;  // When its batch began.
    std::vector<absl::StatusOr<InferResult>> results;
    bool taken = false;  // In a batch (off the queue).
    bool done = false;   // Its results are in.
    // Signalled when done, when it became the queue's head, and (as the
    // head) when a slot freed or more rows queued.
    std::condition_variable wake;
  };
  // REQUIRES: mu_. Whether the head of the queue should run now, and when
  // it will be due otherwise.
  bool DueLocked(Clock::time_point now, Clock::time_point* due) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // REQUIRES: mu_. Takes the next batch off the queue: whole requests in
  // arrival order, up to max_batch_size rows (a larger request alone).
  std::vector<Pending*> TakeLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // REQUIRES: mu_. Signals the owner of the queue's head.
  void WakeHeadLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Runs `batch` on the engine and hands each member its rows' answers
  // as soon as they are all known (rows that hit early, before the batch
  // ends). REQUIRES: mu_ not held.
  void Execute(const std::vector<Pending*>& batch) ABSL_LOCKS_EXCLUDED(mu_);

  Engine* const engine_;
  const BatchingOptions options_;
  const int64_t input_size_;  // Floats per row.
  std::atomic<int64_t>* const executions_;
  // runtime::Mutex (std::mutex underneath): ThreadSanitizer sees through
  // it (make tsan runs the batcher's tests), and -Wthread-safety checks it.
  mutable runtime::Mutex mu_;
  std::deque<Pending*> queue_ ABSL_GUARDED_BY(mu_);
  int64_t queued_rows_ ABSL_GUARDED_BY(mu_) = 0;
  int computing_ ABSL_GUARDED_BY(mu_) = 0;
  std::atomic<int64_t> batches_{0};
  std::atomic<int64_t> batched_rows_{0};
};

}  // namespace gati::serve

#endif  // GATI_SERVE_BATCHER_H_
