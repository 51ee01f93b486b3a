// The engine's request path: segments on a worker, lookups on the lookup
// executor (parallel mode) or everything inline on the caller's thread
// (sequential), first hit in tap order answers, sampled feedback after the
// answer, monitor, hot swap of cache versions, and the start-up timing that
// resolves mode kAuto.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <random>
#include <string_view>
#include <thread>

#include "absl/strings/str_cat.h"
#include "cache/calibration.h"
#include "cache/kernels.h"
#include "runtime/confidence_sequence.h"
#include "runtime/engine_internal.h"
#include "runtime/exact_cache.h"
#include "runtime/exit_drift.h"
#include "runtime/feedback.h"
#include "runtime/learner.h"
#include "runtime/monitor.h"
#include "runtime/mutex.h"
#include "runtime/recalibration.h"
#include "runtime/uniform_draw.h"
#include "runtime/work_queue.h"
#include "spdlog/spdlog.h"

namespace gati::runtime {
namespace {

std::vector<float> Softmax(const float* logits, int n) {
  std::vector<float> p(logits, logits + n);
  const float top = *std::max_element(p.begin(), p.end());
  float total = 0;
  for (float& v : p) total += (v = std::exp(v - top));
  for (float& v : p) v /= total;
  return p;
}

// One request in flight in parallel mode, or a sampled request's feedback
// work in either mode. Pooled by the engine (no allocation per request once
// the pool and the request's vectors have grown) and reference-counted by
// whoever holds it: the caller, its worker task, its queued lookups.
class EngineImpl;

struct Request {
  EngineImpl* engine = nullptr;
  std::atomic<int> refs{0};
  // The caller's input; valid until the request is answered (segment 0
  // reads it before any answer can exist).
  const float* input = nullptr;
  bool want_scores = false;
  bool feedback = false;  // Run every segment to learn the base answer.
  double feedback_rate = 0;  // The rate it was sampled at (feedback only).
  // Answered by the whole model during a false-hit cool-down: its check
  // says nothing about the policy the live sequence tests.
  bool cooled = false;
  // The live sequence this sampled request's answer belongs to: its check
  // counts only if no restart came between the answer and the check.
  uint64_t live_epoch = 0;
  std::shared_ptr<const CacheSet> caches;
  double submitted_us = 0;  // On the engine's clock.
  double queue_us = 0;  // Set before the request runs (0 on the caller's thread).

  // Tap activations (worker only), kept for feedback rows and read by the
  // tap's queued lookup.
  std::vector<Activation> activations;

  // Sequential mode's feedback handoff: where the remaining work starts.
  int feedback_next_segment = 0;
  Activation feedback_current;
  int feedback_hit_slot = -1;
  int feedback_hit_label = -1;

  struct LookupSlot {
    bool decided = false;  // Set up: done, queued, or skipped.
    bool done = false;
    LookupResult result;
    std::vector<float> probabilities;
  };
  std::atomic<bool> answered_flag{false};
  Mutex mutex;
  std::condition_variable changed;  // Answered, or a queued lookup done.
  bool answered ABSL_GUARDED_BY(mutex) = false;
  absl::StatusOr<InferResult> result ABSL_GUARDED_BY(mutex);
  std::vector<LookupSlot> lookups ABSL_GUARDED_BY(mutex);
  int resolved ABSL_GUARDED_BY(mutex) = 0;  // Slots known to miss, in order.
  int pending ABSL_GUARDED_BY(mutex) = 0;   // Queued lookups not yet done.
  std::atomic<int> pending_count{0};        // `pending`, for spinning on.
  int hit_slot ABSL_GUARDED_BY(mutex) = -1;

  // Ready for a new request with `slots` taps on `set`, keeping the
  // vectors' capacity. REQUIRES: nobody else holds it.
  void Reset(int slots, std::shared_ptr<const CacheSet> set) {
    input = nullptr;
    want_scores = feedback = false;
    feedback_rate = 0;
    cooled = false;
    caches = std::move(set);
    submitted_us = queue_us = 0;
    activations.resize(slots);
    feedback_next_segment = 0;
    feedback_hit_slot = feedback_hit_label = -1;
    answered_flag.store(false, std::memory_order_relaxed);
    MutexLock lock(&mutex);
    answered = false;
    result = InferResult{};  // Set again when answered (no allocation).
    lookups.resize(slots);
    for (LookupSlot& slot : lookups) {
      slot.decided = slot.done = false;
      slot.result = {};
      slot.probabilities.clear();
    }
    resolved = pending = 0;
    pending_count.store(0, std::memory_order_relaxed);
    hit_slot = -1;
  }
  // Drops what it holds of the model and the caches (before it goes back
  // to the pool).
  void Clear() {
    caches.reset();
    for (Activation& a : activations) a = {};
    feedback_current = {};
  }
};

enum class ThresholdSource { kPlan, kLive, kNone };

const char* SourceName(ThresholdSource source) {
  switch (source) {
    case ThresholdSource::kPlan: return "plan";
    case ThresholdSource::kLive: return "live";
    case ThresholdSource::kNone: return "none";
  }
  return "?";
}

class EngineImpl final : public Engine {
 public:
  EngineImpl(EngineParts parts, const EngineOptions& options);
  ~EngineImpl() override;

  absl::StatusOr<InferResult> Infer(const float* input, int64_t count,
                                    const InferOptions& options) override;
  std::vector<absl::StatusOr<InferResult>> InferBatch(const float* const* rows, int64_t n,
                                                      int64_t count, const InferOptions& options,
                                                      const RowAnswered& answered) override;
  absl::StatusOr<InferResult> InferBase(const float* input, int64_t count) override;
  absl::StatusOr<int> UpdateNow() override;
  void WaitForFeedback() override;
  EngineStats Stats() const override;
  const ModelMetadata& metadata() const override { return parts_.metadata; }
  const std::vector<int>& planned_taps() const override { return parts_.taps; }
  double predicted_mean_ms() const override {
    // A plan for batches predicts batches; one for single requests, them.
    if (parts_.plan_batch > 1 ? batch_base_ : serve_base_) return parts_.predicted_base_ms;
    if (mode_ != parts_.predicted_mode && parts_.predicted_other_mode_ms > 0) {
      return parts_.predicted_other_mode_ms;
    }
    return parts_.predicted_mean_ms;
  }
  double predicted_base_ms() const override { return parts_.predicted_base_ms; }
  int plan_batch() const override { return parts_.plan_batch; }
  bool learner_busy() const override { return learner_ && learner_->busy(); }
  LookupMode mode() const override { return mode_; }
  bool serving_base() const override { return serve_base_; }
  bool batches_serving_base() const override { return batch_base_; }
  const std::string& mode_report() const override { return mode_report_; }

  // Resolves the configured mode (kAuto: times the candidates on the probe
  // inputs), after WarmUpSegments. REQUIRES: called once, before the engine
  // serves.
  void ChooseMode();
  // kAuto, after the single-request timing: times batches cut against the
  // whole model on the first `probes` probe inputs (all of them: up to two
  // batches of the plan's size, beyond auto_probe_requests) and sets
  // batch_base_; returns the report's clause.
  std::string ChooseBatchPath(int64_t probes);
  // Runs every segment and the whole model on a probe input a few times.
  void WarmUpSegments();

 private:
  int num_slots() const { return static_cast<int>(parts_.taps.size()); }
  double NowUs() const { return parts_.env->NowMicros(); }
  absl::Status CheckInput(const float* input, int64_t count) const;
  std::shared_ptr<const CacheSet> Current() const { return std::atomic_load(&current_); }
  void Install(std::vector<std::pair<int, std::shared_ptr<const LearnedCache>>> updates);

  // Draws whether a request's base answer is learned: the rate it was
  // sampled at, or 0 for none.
  double SampleFeedback();
  // Sequential mode: the whole request on the caller's thread; a sampled
  // request's remaining work goes to a worker after the answer.
  // `caches`: the set (and thresholds) the request uses, read once.
  absl::StatusOr<InferResult> RunInline(std::shared_ptr<const CacheSet> caches,
                                        const float* input, bool want_scores, double feedback);
  // Parallel mode: the request on a worker, lookups on the lookup executor;
  // the caller waits for the answer.
  absl::StatusOr<InferResult> RunQueued(std::shared_ptr<const CacheSet> caches,
                                        const float* input, bool want_scores, double feedback,
                                        double start_us);
  // Batches (InferBatch), on the caller's thread. `todo`: the indices into
  // `rows` and `results` of the rows to compute; fills their results.
  // The whole model on the batch; with `caches` (every tap off, or cooling
  // down), sampled rows also run again, cut, on a worker for feedback.
  absl::Status RunBatchWhole(const std::shared_ptr<const CacheSet>& caches,
                             const float* const* rows, const std::vector<int64_t>& todo,
                             bool want_scores, bool cooled,
                             std::vector<absl::StatusOr<InferResult>>& results);
  // The batch through the segments; after each tap, the rows that hit are
  // answered and leave it.
  // `hand_over` (when set) gets the index of each row a cache answered,
  // at once.
  // `sample_feedback` false: no row is sampled (kAuto's timing).
  absl::Status RunBatchCut(std::shared_ptr<const CacheSet> caches, const float* const* rows,
                           const std::vector<int64_t>& todo, bool want_scores,
                           std::vector<absl::StatusOr<InferResult>>& results,
                           const std::function<void(int64_t)>& hand_over,
                           bool sample_feedback = true);
  // `rows[todo[...]]` copied into one batch input.
  absl::StatusOr<Activation> GatherInput(const float* const* rows,
                                         const std::vector<int64_t>& todo) const;
  // A sampled answer of the whole model (every tap off): `input` runs
  // again, cut, on a worker for its feedback; `epoch` is the live
  // sequence's when it was answered.
  void StartWholeFeedback(std::shared_ptr<const CacheSet> caches, const float* input,
                          double feedback, bool cooled, uint64_t epoch);
  // Every tap off: the whole model answers; a sampled request (`feedback`
  // its rate, 0 for none) runs again, cut, on a worker for its feedback.
  absl::StatusOr<InferResult> RunEveryTapOff(std::shared_ptr<const CacheSet> caches,
                                             const float* input, bool want_scores,
                                             double feedback, bool cooled);
  // The whole model as one segment; `count_answer` counts it as served.
  absl::StatusOr<InferResult> RunWholeModel(const float* input, bool want_scores,
                                            bool count_answer);
  // Hands a sampled request's remaining work to a worker: its segments from
  // `next_segment` on `current` to the logits, then the monitor (for a hit
  // at `hit_slot` with `hit_label`; -1 for none) and the feedback rings.
  void StartFeedback(Request* request, int next_segment, Activation current, int hit_slot,
                     int hit_label);
  void FinishFeedback(Request& request, int next_segment, Activation current, int hit_slot,
                      int hit_label);
  // Parallel mode, on a worker: runs `request` from `first_segment` on
  // `current` (ignored for segment 0, which starts from the request's input)
  // to its answer and, when it is sampled for feedback, on to the base
  // model's answer, the monitor and the feedback rings.
  void Run(Request& request);
  // WorkQueue tasks on a Request* (each holds one reference and drops it).
  static void RunTask(void* request, int64_t);
  static void LookupTask(void* request, int64_t slot);
  static void FeedbackTask(void* request, int64_t);
  // A pooled request, reset for `caches`, with one reference (the caller's).
  Request* Acquire(std::shared_ptr<const CacheSet> caches);
  // Drops one reference; the last one returns the request to the pool.
  void Release(Request* request);
  // Queues `run(request, arg)` on `queue`, with a reference for the task.
  void Schedule(WorkQueue& queue, void (*run)(void*, int64_t), Request* request, int64_t arg);
  // Zeroes the request counters (after ChooseMode's timing runs).
  void ResetCounters();
  // Waits until none of `request`'s lookups is queued or running.
  void WaitForLookups(Request& request);
  // One request fewer in flight (WaitForFeedback waits for none).
  void FinishRequest();
  // Looks up `slot` and records the result; `queued` when it ran on the
  // lookup executor (counted in request.pending).
  void Lookup(Request& request, int slot, const Activation& activation, bool queued);
  void RecordLookup(Request& request, int slot, Request::LookupSlot slot_result,
                    bool queued);
  // REQUIRES: request.mutex held. Answers with the first hit in tap order
  // once every earlier tap is known to miss.
  void ResolveLocked(Request& request) ABSL_EXCLUSIVE_LOCKS_REQUIRED(request.mutex);
  void AnswerLocked(Request& request, absl::StatusOr<InferResult> result)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(request.mutex);
  void Answer(Request& request, absl::StatusOr<InferResult> result);
  void RecordFeedback(Request& request, const Activation& logits);
  // One feedback-sampled answer for the live bound: whether it disagreed
  // with the base model (a hit at `hit_slot`, or -1 for the base model).
  // When the confidence sequence shows the disagreement over all answers
  // above answer_epsilon_, switches off the tap with the most sampled false
  // hits since the sequence last started, and starts it over.
  void RecordLive(int hit_slot, bool disagreed, uint64_t epoch, double rate);
  // Threshold recalibration. A tap is off when the monitor switched it off
  // or the policy in force has it off.
  bool TapOff(const CacheSet& set, int slot) const {
    return disabled_[slot].load(std::memory_order_relaxed) || set.thresholds[slot] > 1.0f ||
           requests_.load(std::memory_order_relaxed) <
               cooldown_until_.load(std::memory_order_relaxed);
  }
  static bool Hits(const CacheSet& set, int slot, const LookupResult& lookup) {
    return lookup.score >= set.thresholds[slot];
  }
  // The thresholds of `set` as planned (kThresholdOff for a disabled cache).
  static std::vector<float> PlanThresholds(const CacheSet& set);
  // Which taps the monitor switched off, into monitor_off_.
  void ReadMonitorOffLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(recal_mutex_);
  // Puts `policy` in force: publishes a cache set with its thresholds
  // (`caches`, or the current ones when null, at `version`); true when a
  // threshold changed.
  bool ApplyPolicyLocked(const ThresholdPolicy& policy, ThresholdSource source, double upper,
                         const CacheSet* caches = nullptr)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(install_mutex_, recal_mutex_);
  // An empty window (its samples are of `set`'s caches, or of caches no
  // longer in force).
  void ClearWindowLocked(const CacheSet& set) ABSL_EXCLUSIVE_LOCKS_REQUIRED(recal_mutex_);
  // Back to the plan's thresholds of `set`, with an empty window.
  void ResetRecalibrationLocked(const CacheSet& set)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(install_mutex_, recal_mutex_);
  // One sampled request into the window, as every tap saw it; recalibrates
  // every recalibration_every samples.
  void RecordWindow(Request& request, int base_label);
  void RecalibrationLoop();
  // The recalibration thread's result, unless `generation` is stale.
  void ApplyRecalibration(uint64_t generation, const PolicyEvaluation& in_force);
  // After a breach: every tap off, an empty window, feedback at
  // feedback_rate_withdrawn; then the live sequence starts over.
  void Withdraw();
  // Starts the live sequence over from outside live_mutex_.
  void RestartLive();
  // One answer for the drift check (while the plan's thresholds are in
  // force and no tap is switched off).
  void RecordExit(const InferResult& result);
  // Starts the live sequence over (the policy behind the answers changed).
  void RestartLiveLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(live_mutex_);

  const EngineOptions options_;
  EngineParts parts_;
  // Set by ChooseMode before serving; read-only afterwards.
  LookupMode mode_ = LookupMode::kSequential;
  bool serve_base_ = false;
  // Batches (n > 1) with the whole model alone; kAuto decides it apart from
  // serve_base_, otherwise the two agree.
  bool batch_base_ = false;
  std::string mode_report_;
  std::atomic<uint64_t> feedback_draws_{0};
  int num_classes_ = 0;
  int64_t input_size_ = 1;
  std::vector<double> epsilons_;  // Per slot.
  std::vector<char> inline_lookup_;  // Per slot (parallel mode).

  std::shared_ptr<const CacheSet> current_;  // std::atomic_load/store only.
  Mutex install_mutex_;
  std::unique_ptr<std::atomic<bool>[]> disabled_;
  std::unique_ptr<std::atomic<int64_t>[]> lookups_;
  std::unique_ptr<std::atomic<int64_t>[]> hits_;
  // A checked false hit switches every tap off until this request count
  // (false_hit_cooldown_requests): near-duplicates follow one another, and
  // where one cache is wrong on them the later ones often are too.
  std::atomic<int64_t> cooldown_until_{0};
  std::atomic<int64_t> cooldowns_{0};

  std::unique_ptr<FeedbackStore> feedback_;
  std::unique_ptr<TapMonitor> monitor_;
  // The live bound on the disagreement over all answers.
  double answer_epsilon_ = 0.01;
  mutable Mutex live_mutex_;
  std::unique_ptr<BettingConfidenceSequence> live_ ABSL_PT_GUARDED_BY(live_mutex_);
  // Per slot, this sequence: sampled hits, and those that were false.
  std::vector<int64_t> live_hits_ ABSL_GUARDED_BY(live_mutex_);
  std::vector<int64_t> live_false_ ABSL_GUARDED_BY(live_mutex_);
  int64_t live_disagreements_ ABSL_GUARDED_BY(live_mutex_) = 0;
  int64_t live_tightenings_ ABSL_GUARDED_BY(live_mutex_) = 0;
  // Since the last tightening, until the bound is certified again.
  bool after_tightening_ ABSL_GUARDED_BY(live_mutex_) = false;
  // The live bound is in doubt: SampleFeedback uses feedback_rate_in_doubt.
  std::atomic<bool> in_doubt_{false};
  // Incremented by every restart of the live sequence.
  std::atomic<uint64_t> live_epoch_{0};
  std::atomic<int64_t> boosted_feedback_{0};
  // Worker time spent on feedback after answers, and the recalibration
  // thread's time (µs).
  std::atomic<int64_t> feedback_busy_us_{0};
  std::atomic<int64_t> recalibration_busy_us_{0};
  // Inverse-rate weights of the sampled answers since the last restart,
  // and of those that disagreed.
  double live_weight_ ABSL_GUARDED_BY(live_mutex_) = 0;
  double live_weight_disagreed_ ABSL_GUARDED_BY(live_mutex_) = 0;

  // Recalibration. Lock order: install_mutex_, recal_mutex_, then
  // live_mutex_, drift_mutex_ or inflight_mutex_. The thresholds in force
  // live in the published CacheSet.
  PolicyCosts costs_;
  std::atomic<bool> withdrawn_{false};  // source_ == kNone.
  std::atomic<bool> plan_in_force_{true};
  // The live sequence certifies the bound now.
  std::atomic<bool> live_certified_{false};
  // Label-free drift of the exit shares from the plan's (exit_drift.h).
  mutable Mutex drift_mutex_;
  std::unique_ptr<ExitDrift> drift_ ABSL_PT_GUARDED_BY(drift_mutex_);
  std::vector<int64_t> drift_block_ ABSL_GUARDED_BY(drift_mutex_);
  static constexpr int kDriftBlock = 50;
  std::unique_ptr<std::atomic<int64_t>[]> exit_counts_;  // Per exit, this block.
  std::atomic<int64_t> exit_total_{0};
  std::atomic<bool> drifting_{false};
  mutable Mutex recal_mutex_;
  std::unique_ptr<RecalibrationWindow> window_ ABSL_PT_GUARDED_BY(recal_mutex_);
  std::vector<float> plan_thresholds_ ABSL_GUARDED_BY(recal_mutex_);
  int64_t window_version_ ABSL_GUARDED_BY(recal_mutex_) = 0;  // Of its samples' caches.
  ThresholdPolicy policy_ ABSL_GUARDED_BY(recal_mutex_);
  ThresholdSource source_ ABSL_GUARDED_BY(recal_mutex_) = ThresholdSource::kPlan;
  double policy_upper_ ABSL_GUARDED_BY(recal_mutex_) = 1;
  int64_t policy_samples_ ABSL_GUARDED_BY(recal_mutex_) = 0;  // It was chosen on.
  int64_t recalibrations_ ABSL_GUARDED_BY(recal_mutex_) = 0;
  int64_t since_recalibration_ ABSL_GUARDED_BY(recal_mutex_) = 0;
  std::vector<bool> monitor_off_ ABSL_GUARDED_BY(recal_mutex_);
  ThresholdPolicy candidate_ ABSL_GUARDED_BY(recal_mutex_);
  // The recalibration thread: woken every recalibration_every samples,
  // works on a snapshot of the window, off the request workers. Bumping
  // the generation (withdrawal, update, reset) voids a result in progress.
  std::condition_variable recalibration_cv_;
  bool recalibration_due_ ABSL_GUARDED_BY(recal_mutex_) = false;
  bool recalibration_stop_ ABSL_GUARDED_BY(recal_mutex_) = false;
  uint64_t recalibration_generation_ ABSL_GUARDED_BY(recal_mutex_) = 0;
  // The thread's own (reused: no allocation once grown).
  std::unique_ptr<RecalibrationWindow> snapshot_;
  std::vector<float> snapshot_plan_;
  std::vector<bool> snapshot_off_;
  ThresholdPolicy snapshot_policy_;
  Recalibration next_;
  ThresholdPolicy next_scratch_;
  std::thread recalibration_thread_;
  std::unique_ptr<ExactCache> exact_;

  std::atomic<int64_t> requests_{0}, errors_{0}, base_answers_{0}, cache_hits_{0},
      feedback_requests_{0};

  // Requests not in flight, for reuse. Declared before the queues: their
  // tasks return requests here while the queues drain.
  Mutex pool_mutex_;
  std::vector<std::unique_ptr<Request>> pool_ ABSL_GUARDED_BY(pool_mutex_);

  Mutex inflight_mutex_;
  std::condition_variable inflight_cv_;
  int64_t inflight_ ABSL_GUARDED_BY(inflight_mutex_) = 0;

  // Destruction order matters: the learner stops first, then the workers
  // drain (they may still queue lookups), then the lookup executor.
  std::unique_ptr<WorkQueue> lookup_queue_;
  std::unique_ptr<WorkQueue> workers_;
  std::unique_ptr<OnlineLearner> learner_;
};

EngineImpl::EngineImpl(EngineParts parts, const EngineOptions& options)
    : options_(options), parts_(std::move(parts)) {
  num_classes_ = static_cast<int>(parts_.metadata.class_names.size());
  for (int64_t d : parts_.metadata.input_shape) input_size_ *= d;
  const int slots = num_slots();
  for (int s = 0; s < slots; ++s) {
    epsilons_.push_back(options.epsilon > 0 ? options.epsilon
                        : s < static_cast<int>(parts_.tap_epsilon.size())
                            ? parts_.tap_epsilon[s]
                            : parts_.bundle_epsilon);
  }
  for (int s = 0; s < slots; ++s) {
    inline_lookup_.push_back(MedianLookupMicros(*parts_.caches[s], 15, options.seed, 5) <
                             options.inline_lookup_us);
  }
  auto set = std::make_shared<CacheSet>();
  set->version = 1;
  set->caches = parts_.caches;
  current_ = set;
  disabled_ = std::make_unique<std::atomic<bool>[]>(std::max(1, slots));
  lookups_ = std::make_unique<std::atomic<int64_t>[]>(std::max(1, slots));
  hits_ = std::make_unique<std::atomic<int64_t>[]>(std::max(1, slots));
  for (int s = 0; s < slots; ++s) {
    disabled_[s] = false;
    lookups_[s] = 0;
    hits_[s] = 0;
  }
  std::vector<int64_t> feature_sizes;
  for (const auto& cache : parts_.caches) feature_sizes.push_back(cache->training_input_size());
  feedback_ = std::make_unique<FeedbackStore>(feature_sizes, num_classes_,
                                              options.feedback_memory_bytes,
                                              options.feedback_rows_per_tap);
  monitor_ = std::make_unique<TapMonitor>(epsilons_, options.monitor_window,
                                          options.monitor_min_checks,
                                          options.monitor_confidence);
  answer_epsilon_ = options.answer_epsilon > 0 ? options.answer_epsilon : parts_.answer_epsilon;
  {
    MutexLock lock(&live_mutex_);
    live_ = std::make_unique<BettingConfidenceSequence>(1 - options.live_confidence,
                                                        std::vector<double>{answer_epsilon_});
    live_hits_.assign(slots, 0);
    live_false_.assign(slots, 0);
  }
  for (int s = 0; s < slots; ++s) {
    const double saving =
        s < static_cast<int>(parts_.exit_saving_ms.size())
            ? parts_.exit_saving_ms[s]
            : static_cast<double>(slots - s) / (slots + 1);
    costs_.exit_saving.push_back(std::max(saving, 1e-6));
    costs_.lookup.push_back(s < static_cast<int>(parts_.lookup_ms.size()) ? parts_.lookup_ms[s]
                                                                          : 0.0);
  }
  costs_.miss_overhead = parts_.miss_overhead_ms;
  {
    MutexLock install(&install_mutex_);
    MutexLock lock(&recal_mutex_);
    window_ = std::make_unique<RecalibrationWindow>(
        slots, options.recalibration ? options.recalibration_window : 1);
    ResetRecalibrationLocked(*set);
  }
  if (options.recalibration && slots > 0) {
    snapshot_ = std::make_unique<RecalibrationWindow>(slots, options.recalibration_window);
    recalibration_thread_ = std::thread([this] { RecalibrationLoop(); });
  }
  if (parts_.exit_share.size() == static_cast<size_t>(slots) + 1 && slots > 0 &&
      parts_.exit_share_samples > 0) {
    MutexLock lock(&drift_mutex_);
    drift_ = std::make_unique<ExitDrift>(parts_.exit_share, parts_.exit_share_samples,
                                         kDriftBlock);
    drift_block_.assign(slots + 1, 0);
    exit_counts_ = std::make_unique<std::atomic<int64_t>[]>(slots + 1);
    for (int e = 0; e <= slots; ++e) exit_counts_[e] = 0;
  }
  if (options.exact_cache_bytes > 0) {
    exact_ = std::make_unique<ExactCache>(options.exact_cache_bytes);
  }
  lookup_queue_ = std::make_unique<WorkQueue>(options.lookup_threads, options.spin_us);
  workers_ = std::make_unique<WorkQueue>(options.workers, options.spin_us);
  if (options.learner.enabled && slots > 0) {
    OnlineLearner::Hooks hooks;
    hooks.current = [this] { return Current(); };
    hooks.disabled = [this](int slot) { return disabled_[slot].load(); };
    hooks.install = [this](auto updates) { Install(std::move(updates)); };
    hooks.feedback_requests = [this] { return feedback_requests_.load(); };
    learner_ = std::make_unique<OnlineLearner>(
        feedback_.get(), std::move(parts_.trainer), std::move(parts_.replay),
        options.learner, epsilons_, parts_.bundle_confidence, std::move(hooks), parts_.env);
    learner_->Start();
  }
}

EngineImpl::~EngineImpl() {
  learner_.reset();
  workers_.reset();
  lookup_queue_.reset();
  if (recalibration_thread_.joinable()) {
    {
      MutexLock lock(&recal_mutex_);
      recalibration_stop_ = true;
    }
    recalibration_cv_.notify_all();
    recalibration_thread_.join();
  }
}

absl::Status EngineImpl::CheckInput(const float* input, int64_t count) const {
  if (input == nullptr || count != input_size_) {
    std::string shape;
    for (int64_t d : parts_.metadata.input_shape) absl::StrAppend(&shape, shape.empty() ? "" : "x", d);
    return absl::InvalidArgumentError(absl::StrCat(
        "input has ", count, " values; the model takes ", input_size_, " (", shape,
        " float32)"));
  }
  for (int64_t i = 0; i < count; ++i) {
    if (!std::isfinite(input[i])) {
      return absl::InvalidArgumentError(
          absl::StrCat("input value ", i, " is not finite (", input[i], ")"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<InferResult> EngineImpl::Infer(const float* input, int64_t count,
                                              const InferOptions& infer_options) {
  const double start = NowUs();
  ++requests_;
  absl::Status valid = CheckInput(input, count);
  if (!valid.ok()) {
    ++errors_;
    return valid;
  }
  const std::string_view bytes(reinterpret_cast<const char*>(input),
                               count * sizeof(float));
  if (exact_) {
    if (std::optional<InferResult> found = exact_->Find(bytes, infer_options.want_scores)) {
      if (!infer_options.want_scores) found->scores.clear();
      found->exact_hit = true;
      found->timings = {NowUs() - start, 0};
      return *found;
    }
  }
  const bool want_scores = infer_options.want_scores;
  const bool cooled = requests_.load(std::memory_order_relaxed) <
                      cooldown_until_.load(std::memory_order_relaxed);
  std::shared_ptr<const CacheSet> caches = serve_base_ ? nullptr : Current();
  absl::StatusOr<InferResult> result =
      serve_base_ ? RunWholeModel(input, want_scores, /*count_answer=*/true)
      // Every tap off, or cooling down after a false hit: the whole model.
      : caches->every_off || cooled
          ? RunEveryTapOff(std::move(caches), input, want_scores, SampleFeedback(), cooled)
      // Without taps there is no lookup to overlap: no handoff either.
      : mode_ == LookupMode::kSequential || num_slots() == 0
          ? RunInline(std::move(caches), input, want_scores, SampleFeedback())
          : RunQueued(std::move(caches), input, want_scores, SampleFeedback(), start);
  if (!result.ok()) {
    ++errors_;
    return result;
  }
  result->timings.total_us = NowUs() - start;
  if (exact_) exact_->Insert(bytes, *result);
  // A cool-down's base answers say nothing about where the plan's
  // thresholds send this stream.
  if (!serve_base_ && !cooled) RecordExit(*result);
  return result;
}

double EngineImpl::SampleFeedback() {
  if (num_slots() == 0) return 0;
  // Withdrawn thresholds (every tap off until the window certifies new
  // ones): feedback is what certifies them, at its own rate.
  const bool every = withdrawn_.load(std::memory_order_relaxed) && options_.feedback_rate > 0;
  const bool doubt = !every &&
                     (in_doubt_.load(std::memory_order_relaxed) ||
                      (drifting_.load(std::memory_order_relaxed) &&
                       plan_in_force_.load(std::memory_order_relaxed) &&
                       !live_certified_.load(std::memory_order_relaxed))) &&
                     options_.feedback_rate_in_doubt > options_.feedback_rate;
  const double rate = every  ? std::max(options_.feedback_rate_withdrawn, options_.feedback_rate)
                      : doubt ? options_.feedback_rate_in_doubt
                              : options_.feedback_rate;
  if (rate <= 0) return 0;
  const uint64_t draw = feedback_draws_.fetch_add(1, std::memory_order_relaxed);
  const bool sampled = UniformDraw(options_.seed, draw) < rate;
  if (sampled && rate > options_.feedback_rate) {
    boosted_feedback_.fetch_add(1, std::memory_order_relaxed);
  }
  return sampled ? rate : 0;
}

absl::StatusOr<InferResult> EngineImpl::RunInline(std::shared_ptr<const CacheSet> caches,
                                                  const float* input, bool want_scores,
                                                  double feedback) {
  const int slots = num_slots();
  auto failed = [](const absl::Status& status) {
    return absl::InternalError(absl::StrCat("model failed: ", status.message()));
  };
  absl::StatusOr<Activation> made = parts_.runner->MakeInput(input, 1);
  if (!made.ok()) return failed(made.status());
  Activation current = std::move(*made);
  // Only a sampled request keeps its activations (for its feedback rows).
  Request* sampled = nullptr;
  if (feedback > 0) {
    sampled = Acquire(caches);
    sampled->feedback = true;
    sampled->feedback_rate = feedback;
    sampled->live_epoch = live_epoch_.load(std::memory_order_acquire);
  }
  InferResult result;
  result.cache_version = caches->version;
  for (int segment = 0; segment <= slots; ++segment) {
    absl::StatusOr<Activation> next = parts_.runner->RunSegment(segment, current);
    if (!next.ok()) {
      if (sampled) Release(sampled);
      return failed(next.status());
    }
    current = std::move(*next);
    if (segment == slots) break;
    if (sampled) sampled->activations[segment] = current;
    if (TapOff(*caches, segment)) continue;
    const LearnedCache& cache = *caches->caches[segment];
    if (want_scores) result.scores.resize(cache.num_classes());
    const LookupResult lookup =
        cache.Lookup(current.data, want_scores ? result.scores.data() : nullptr);
    ++lookups_[segment];
    if (!Hits(*caches, segment, lookup)) continue;
    ++hits_[segment];
    ++cache_hits_;
    result.label = lookup.label;
    result.exit_tap = parts_.taps[segment];
    result.cache_hit = true;
    if (sampled) {
      StartFeedback(sampled, segment + 1, std::move(current), segment, lookup.label);
    }
    return result;
  }
  // Every segment ran: `current` holds the base model's logits.
  result.label = cache_internal::ArgMax(current.data, num_classes_);
  if (want_scores) result.scores = Softmax(current.data, num_classes_);
  ++base_answers_;
  if (sampled) StartFeedback(sampled, slots + 1, std::move(current), -1, -1);
  return result;
}

absl::StatusOr<InferResult> EngineImpl::RunQueued(std::shared_ptr<const CacheSet> caches,
                                                  const float* input, bool want_scores,
                                                  double feedback, double start_us) {
  Request* request = Acquire(std::move(caches));
  request->input = input;
  request->want_scores = want_scores;
  request->feedback = feedback > 0;
  request->feedback_rate = feedback;
  request->live_epoch = live_epoch_.load(std::memory_order_acquire);
  request->submitted_us = start_us;
  {
    MutexLock lock(&inflight_mutex_);
    ++inflight_;
  }
  Schedule(*workers_, &EngineImpl::RunTask, request, 0);
  // Spin for the answer first: a request answered within spin_us costs no
  // kernel wake-up.
  SpinUntil(options_.spin_us,
            [&] { return request->answered_flag.load(std::memory_order_acquire); });
  absl::StatusOr<InferResult> result;
  {
    MutexLock lock(&request->mutex);
    request->mutex.Await(request->changed,
                         [&]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return request->answered; });
    result = std::move(request->result);
  }
  Release(request);
  return result;
}

Request* EngineImpl::Acquire(std::shared_ptr<const CacheSet> caches) {
  std::unique_ptr<Request> request;
  {
    MutexLock lock(&pool_mutex_);
    if (!pool_.empty()) {
      request = std::move(pool_.back());
      pool_.pop_back();
    }
  }
  if (!request) request = std::make_unique<Request>();
  request->engine = this;
  request->Reset(num_slots(), std::move(caches));
  request->refs.store(1, std::memory_order_relaxed);
  return request.release();
}

void EngineImpl::Release(Request* request) {
  if (request->refs.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
  request->Clear();
  std::unique_ptr<Request> owned(request);
  constexpr size_t kMaxPooled = 256;
  MutexLock lock(&pool_mutex_);
  if (pool_.size() < kMaxPooled) pool_.push_back(std::move(owned));
}

void EngineImpl::Schedule(WorkQueue& queue, void (*run)(void*, int64_t), Request* request,
                          int64_t arg) {
  request->refs.fetch_add(1, std::memory_order_relaxed);
  queue.Submit(WorkQueue::Task{run, request, arg});
}

void EngineImpl::RunTask(void* object, int64_t) {
  Request& request = *static_cast<Request*>(object);
  EngineImpl& engine = *request.engine;
  request.queue_us = engine.NowUs() - request.submitted_us;
  engine.Run(request);
  engine.Release(&request);
}

void EngineImpl::LookupTask(void* object, int64_t slot) {
  Request& request = *static_cast<Request*>(object);
  EngineImpl& engine = *request.engine;
  engine.Lookup(request, static_cast<int>(slot), request.activations[slot], /*queued=*/true);
  engine.Release(&request);
}

void EngineImpl::FeedbackTask(void* object, int64_t) {
  Request& request = *static_cast<Request*>(object);
  EngineImpl& engine = *request.engine;
  engine.FinishFeedback(request, request.feedback_next_segment,
                        std::move(request.feedback_current), request.feedback_hit_slot,
                        request.feedback_hit_label);
  engine.Release(&request);
}

absl::StatusOr<InferResult> EngineImpl::RunWholeModel(const float* input, bool want_scores,
                                                      bool count_answer) {
  auto activation = parts_.runner->MakeInput(input, 1);
  if (!activation.ok()) {
    return absl::InternalError(absl::StrCat("model failed: ", activation.status().message()));
  }
  auto logits = parts_.runner->RunWhole(*activation);
  if (!logits.ok()) {
    return absl::InternalError(absl::StrCat("model failed: ", logits.status().message()));
  }
  InferResult result;
  result.label = cache_internal::ArgMax(logits->data, num_classes_);
  if (want_scores) result.scores = Softmax(logits->data, num_classes_);
  if (count_answer) {
    ++base_answers_;
    result.cache_version = Current()->version;
  }
  return result;
}

absl::StatusOr<InferResult> EngineImpl::RunEveryTapOff(std::shared_ptr<const CacheSet> caches,
                                                       const float* input, bool want_scores,
                                                       double feedback, bool cooled) {
  // The epoch of the policy that answers, read before it answers.
  const uint64_t epoch = live_epoch_.load(std::memory_order_acquire);
  absl::StatusOr<InferResult> result = RunWholeModel(input, want_scores, /*count_answer=*/true);
  if (!result.ok() || feedback <= 0) return result;
  StartWholeFeedback(std::move(caches), input, feedback, cooled, epoch);
  return result;
}

void EngineImpl::StartWholeFeedback(std::shared_ptr<const CacheSet> caches, const float* input,
                                    double feedback, bool cooled, uint64_t epoch) {
  absl::StatusOr<Activation> made = parts_.runner->MakeInput(input, 1);  // A copy.
  if (!made.ok()) return;
  Request* sampled = Acquire(std::move(caches));
  sampled->feedback = true;
  sampled->feedback_rate = feedback;
  sampled->cooled = cooled;
  sampled->live_epoch = epoch;
  StartFeedback(sampled, 0, std::move(*made), -1, -1);
}

std::vector<absl::StatusOr<InferResult>> EngineImpl::InferBatch(
    const float* const* rows, int64_t n, int64_t count, const InferOptions& infer_options,
    const RowAnswered& answered) {
  std::vector<absl::StatusOr<InferResult>> results;
  if (n <= 0) return results;
  // One row: the request path as it is.
  if (n == 1) {
    results.push_back(Infer(rows[0], count, infer_options));
    if (answered) answered(0, results[0]);
    return results;
  }
  const double start = NowUs();
  const bool want_scores = infer_options.want_scores;
  // A batch is cooled down (the whole model answers it) when its first
  // row would be: the rows count as requests one after another, and a
  // cool-down is never cut short by the size of the batch that meets it.
  const bool cooled = requests_.load(std::memory_order_relaxed) + 1 <
                      cooldown_until_.load(std::memory_order_relaxed);
  results.resize(n);
  // Rows handed over early (before the end of the call), by index.
  std::vector<bool> early(n, false);
  auto hand_over_known = [&](int64_t i) {
    early[i] = true;
    if (answered) answered(i, results[i]);
  };
  std::vector<int64_t> todo;
  todo.reserve(n);
  for (int64_t i = 0; i < n; ++i) {
    ++requests_;
    absl::Status valid = CheckInput(rows[i], count);
    if (!valid.ok()) {
      ++errors_;
      results[i] = std::move(valid);  // Its position in `results` names the row.
      hand_over_known(i);
      continue;
    }
    if (exact_) {
      const std::string_view bytes(reinterpret_cast<const char*>(rows[i]), count * sizeof(float));
      if (std::optional<InferResult> found = exact_->Find(bytes, want_scores)) {
        if (!want_scores) found->scores.clear();
        found->exact_hit = true;
        found->timings = {NowUs() - start, 0};
        results[i] = std::move(*found);
        hand_over_known(i);
        continue;
      }
    }
    todo.push_back(i);
  }
  if (todo.empty()) return results;
  std::shared_ptr<const CacheSet> caches = batch_base_ ? nullptr : Current();
  std::function<void(int64_t)> hand_over;
  if (answered) {
    // Everything that reads the row's input happens before it is handed
    // over: its caller may then free it.
    hand_over = [&](int64_t i) {
      results[i]->timings.total_us = NowUs() - start;
      early[i] = true;
      if (exact_) {
        exact_->Insert(std::string_view(reinterpret_cast<const char*>(rows[i]),
                                        count * sizeof(float)),
                       *results[i]);
      }
      if (!cooled) RecordExit(*results[i]);
      answered(i, results[i]);
    };
  }
  const absl::Status ran =
      batch_base_ || caches->every_off || cooled || num_slots() == 0
          ? RunBatchWhole(caches, rows, todo, want_scores, cooled, results)
          : RunBatchCut(std::move(caches), rows, todo, want_scores, results, hand_over);
  const double total_us = NowUs() - start;
  for (int64_t i : todo) {
    // A failure fails the rows still unanswered; rows that a cache
    // answered before it keep their answers (and their counts).
    if (!ran.ok() && !results[i].ok()) {
      ++errors_;
      results[i] = ran;
      continue;
    }
    if (early[i]) continue;  // Done when it was handed over.
    results[i]->timings.total_us = total_us;
    if (exact_) {
      exact_->Insert(std::string_view(reinterpret_cast<const char*>(rows[i]),
                                      count * sizeof(float)),
                     *results[i]);
    }
    if (!batch_base_ && !cooled) RecordExit(*results[i]);
  }
  if (answered) {
    for (int64_t i = 0; i < n; ++i) {
      if (!early[i]) answered(i, results[i]);
    }
  }
  return results;
}

absl::StatusOr<Activation> EngineImpl::GatherInput(const float* const* rows,
                                                   const std::vector<int64_t>& todo) const {
  // Per batch (not kept per thread: one large batch would pin its size on
  // every thread that ever led one).
  std::vector<float> gathered(todo.size() * input_size_);
  for (size_t j = 0; j < todo.size(); ++j) {
    std::copy(rows[todo[j]], rows[todo[j]] + input_size_, gathered.data() + j * input_size_);
  }
  return parts_.runner->MakeInput(gathered.data(), static_cast<int64_t>(todo.size()));
}

absl::Status EngineImpl::RunBatchWhole(const std::shared_ptr<const CacheSet>& caches,
                                       const float* const* rows,
                                       const std::vector<int64_t>& todo, bool want_scores,
                                       bool cooled,
                                       std::vector<absl::StatusOr<InferResult>>& results) {
  auto failed = [](const absl::Status& status) {
    return absl::InternalError(absl::StrCat("model failed: ", status.message()));
  };
  const uint64_t epoch = live_epoch_.load(std::memory_order_acquire);
  absl::StatusOr<Activation> input = GatherInput(rows, todo);
  if (!input.ok()) return failed(input.status());
  absl::StatusOr<Activation> logits = parts_.runner->RunWhole(*input);
  if (!logits.ok()) return failed(logits.status());
  const int64_t version = Current()->version;
  for (size_t j = 0; j < todo.size(); ++j) {
    const float* row = logits->data + j * logits->row_size;
    InferResult result;
    result.label = cache_internal::ArgMax(row, num_classes_);
    if (want_scores) result.scores = Softmax(row, num_classes_);
    result.cache_version = version;
    ++base_answers_;
    results[todo[j]] = std::move(result);
    if (caches == nullptr) continue;  // The base model alone: no feedback.
    const double feedback = SampleFeedback();
    if (feedback > 0) StartWholeFeedback(caches, rows[todo[j]], feedback, cooled, epoch);
  }
  return absl::OkStatus();
}

absl::Status EngineImpl::RunBatchCut(std::shared_ptr<const CacheSet> caches,
                                     const float* const* rows,
                                     const std::vector<int64_t>& todo, bool want_scores,
                                     std::vector<absl::StatusOr<InferResult>>& results,
                                     const std::function<void(int64_t)>& hand_over,
                                     bool sample_feedback) {
  const int slots = num_slots();
  auto failed = [](const absl::Status& status) {
    return absl::InternalError(absl::StrCat("model failed: ", status.message()));
  };
  absl::StatusOr<Activation> made = GatherInput(rows, todo);
  if (!made.ok()) return failed(made.status());
  Activation current = std::move(*made);
  // Per row of `current`: its index into `results`; its sampled request
  // (only a sampled row keeps its activations, for its rows); and, once a
  // sampled row has been answered by a hit, the hit. A sampled row that
  // hit stays in the batch as a passenger, for its feedback (the base
  // model's answer), while unanswered rows run on: on [B, ...] its
  // remaining segments cost a fraction of a run of its own.
  std::vector<int64_t> alive = todo;
  std::vector<Request*> sampled(alive.size(), nullptr);
  std::vector<int> hit_slot(alive.size(), -1);
  std::vector<int> hit_label(alive.size(), -1);
  for (Request*& request : sampled) {
    const double feedback = sample_feedback ? SampleFeedback() : 0;
    if (feedback <= 0) continue;
    request = Acquire(caches);
    request->feedback = true;
    request->feedback_rate = feedback;
    request->live_epoch = live_epoch_.load(std::memory_order_acquire);
  }
  auto release_all = [&] {
    for (Request* request : sampled) {
      if (request != nullptr) Release(request);
    }
  };
  auto row_of = [&](size_t j) -> absl::StatusOr<Activation> {
    return parts_.runner->SelectRows(current, {static_cast<int64_t>(j)});
  };
  // Hands row j's feedback to a worker, from `next_segment` on.
  auto start_feedback = [&](size_t j, int next_segment) {
    absl::StatusOr<Activation> row = row_of(j);
    if (row.ok()) {
      StartFeedback(sampled[j], next_segment, std::move(*row), hit_slot[j], hit_label[j]);
    } else {
      Release(sampled[j]);
    }
    sampled[j] = nullptr;
  };
  std::vector<LookupResult> lookups;
  std::vector<float> probabilities;
  std::vector<int64_t> keep;
  for (int segment = 0; segment <= slots; ++segment) {
    absl::StatusOr<Activation> next = parts_.runner->RunSegment(segment, current);
    if (!next.ok()) {
      release_all();
      return failed(next.status());
    }
    current = std::move(*next);
    if (segment == slots) break;
    for (size_t j = 0; j < alive.size(); ++j) {
      if (sampled[j] == nullptr) continue;
      absl::StatusOr<Activation> row = row_of(j);
      if (!row.ok()) {
        release_all();
        return failed(row.status());
      }
      sampled[j]->activations[segment] = std::move(*row);
    }
    if (TapOff(*caches, segment)) continue;
    const LearnedCache& cache = *caches->caches[segment];
    const int64_t batch = static_cast<int64_t>(alive.size());
    lookups.resize(batch);
    probabilities.resize(want_scores ? batch * cache.num_classes() : 0);
    cache.LookupBatch(batch, current.data, lookups.data(),
                      want_scores ? probabilities.data() : nullptr);
    keep.clear();
    int64_t unanswered = 0;
    for (int64_t j = 0; j < batch; ++j) {
      if (hit_slot[j] >= 0) {  // A passenger: answered already.
        keep.push_back(j);
        continue;
      }
      ++lookups_[segment];
      if (!Hits(*caches, segment, lookups[j])) {
        keep.push_back(j);
        ++unanswered;
        continue;
      }
      ++hits_[segment];
      ++cache_hits_;
      InferResult result;
      result.label = lookups[j].label;
      result.exit_tap = parts_.taps[segment];
      result.cache_hit = true;
      result.cache_version = caches->version;
      if (want_scores) {
        const float* p = probabilities.data() + j * cache.num_classes();
        result.scores.assign(p, p + cache.num_classes());
      }
      results[alive[j]] = std::move(result);
      if (hand_over) hand_over(alive[j]);
      if (sampled[j] != nullptr) {
        hit_slot[j] = segment;
        hit_label[j] = lookups[j].label;
        keep.push_back(j);
      }
    }
    if (unanswered == 0) {
      // Only passengers are left: their feedback runs on a worker, off
      // the caller's path.
      for (int64_t j : keep) start_feedback(j, segment + 1);
      return absl::OkStatus();
    }
    if (keep.size() == alive.size()) continue;
    // The rows that hit (and were not sampled) leave the batch.
    absl::StatusOr<Activation> rest = parts_.runner->SelectRows(current, keep);
    if (!rest.ok()) {
      release_all();
      return failed(rest.status());
    }
    current = std::move(*rest);
    for (size_t k = 0; k < keep.size(); ++k) {
      alive[k] = alive[keep[k]];
      sampled[k] = sampled[keep[k]];
      hit_slot[k] = hit_slot[keep[k]];
      hit_label[k] = hit_label[keep[k]];
    }
    alive.resize(keep.size());
    sampled.resize(keep.size());
    hit_slot.resize(keep.size());
    hit_label.resize(keep.size());
  }
  // Every segment ran: `current` holds the base model's logits.
  for (size_t j = 0; j < alive.size(); ++j) {
    if (hit_slot[j] < 0) {
      const float* row = current.data + j * current.row_size;
      InferResult result;
      result.label = cache_internal::ArgMax(row, num_classes_);
      if (want_scores) result.scores = Softmax(row, num_classes_);
      result.cache_version = caches->version;
      ++base_answers_;
      results[alive[j]] = std::move(result);
    }
    if (sampled[j] != nullptr) start_feedback(j, slots + 1);
  }
  return absl::OkStatus();
}

void EngineImpl::StartFeedback(Request* request, int next_segment, Activation current,
                               int hit_slot, int hit_label) {
  {
    MutexLock lock(&inflight_mutex_);
    ++inflight_;
  }
  request->feedback_next_segment = next_segment;
  request->feedback_current = std::move(current);
  request->feedback_hit_slot = hit_slot;
  request->feedback_hit_label = hit_label;
  Schedule(*workers_, &EngineImpl::FeedbackTask, request, 0);
  Release(request);  // The caller's reference.
}

void EngineImpl::FinishFeedback(Request& request, int next_segment, Activation current,
                                int hit_slot, int hit_label) {
  const double start_us = NowUs();
  struct Busy {
    EngineImpl* engine;
    double start_us;
    ~Busy() {
      engine->feedback_busy_us_.fetch_add(static_cast<int64_t>(engine->NowUs() - start_us),
                                          std::memory_order_relaxed);
    }
  } busy{this, start_us};
  const int slots = num_slots();
  for (int segment = next_segment; segment <= slots; ++segment) {
    auto next = parts_.runner->RunSegment(segment, current);
    if (!next.ok()) {
      spdlog::warn("feedback: segment {} failed: {}", segment,
                   std::string(next.status().message()));
      return FinishRequest();
    }
    current = std::move(*next);
    if (segment < slots) request.activations[segment] = current;
  }
  const int base_label = cache_internal::ArgMax(current.data, num_classes_);
  // The live sequence tests the policy's own answers: a cool-down's agree
  // by construction, so the disagreement over all answers is at most what
  // it shows.
  if (!request.cooled) {
    RecordLive(hit_slot, hit_slot >= 0 && hit_label != base_label, request.live_epoch,
               request.feedback_rate);
  }
  if (hit_slot >= 0 && hit_label != base_label && options_.false_hit_cooldown_requests > 0) {
    // The latest end wins (checks land out of order).
    const int64_t until = requests_.load() + options_.false_hit_cooldown_requests + 1;
    int64_t now = cooldown_until_.load(std::memory_order_relaxed);
    while (now < until && !cooldown_until_.compare_exchange_weak(now, until)) {
    }
    ++cooldowns_;
  }
  if (hit_slot >= 0 && monitor_->Record(hit_slot, hit_label != base_label)) {
    disabled_[hit_slot] = true;
    spdlog::warn("live monitor: tap {} switched off: false-hit rate lower bound {:.4f} > {}",
                 parts_.taps[hit_slot], monitor_->lower_bound(hit_slot), epsilons_[hit_slot]);
  }
  RecordFeedback(request, current);
  if (options_.recalibration) RecordWindow(request, base_label);
  FinishRequest();
}

void EngineImpl::RestartLiveLocked() {
  live_epoch_.fetch_add(1, std::memory_order_acq_rel);
  live_->Reset();
  live_disagreements_ = 0;
  live_weight_ = live_weight_disagreed_ = 0;
  live_certified_.store(false, std::memory_order_relaxed);
  std::fill(live_hits_.begin(), live_hits_.end(), 0);
  std::fill(live_false_.begin(), live_false_.end(), 0);
}

void EngineImpl::RecordLive(int hit_slot, bool disagreed, uint64_t epoch, double rate) {
  std::vector<int> switch_off;
  double lower = 0;
  bool withdraw = false;
  do {
    MutexLock lock(&live_mutex_);
    // An answer given before the last restart came from another policy.
    if (epoch != live_epoch_.load(std::memory_order_acquire)) return;
    live_->Add(disagreed ? 1.0 : 0.0);
    const double weight = rate > 0 ? 1 / rate : 1;
    live_weight_ += weight;
    if (disagreed) live_weight_disagreed_ += weight;
    if (hit_slot >= 0) ++live_hits_[hit_slot];
    if (disagreed) {
      ++live_disagreements_;
      ++live_false_[hit_slot];
    }
    const bool certified = live_->Below(answer_epsilon_);
    live_certified_.store(certified, std::memory_order_relaxed);
    if (certified) after_tightening_ = false;
    in_doubt_.store(!certified && (after_tightening_ || live_->mean() > 0.5 * answer_epsilon_),
                    std::memory_order_relaxed);
    if (!options_.live_tightening || !live_->Above(answer_epsilon_)) return;
    lower = live_->lower();
    if (options_.recalibration) {
      // The thresholds in force are shown wrong for this stream: all of
      // them go, until the window certifies new ones.
      withdraw = true;
      ++live_tightenings_;
      after_tightening_ = true;
      in_doubt_.store(true, std::memory_order_relaxed);
      RestartLiveLocked();
      break;
    }
    // Off: the tap with the most sampled false hits, and every other tap
    // whose own false-hit rate is shown above the bound the plan holds it to
    // (Clopper-Pearson lower bound at the live confidence).
    int most = -1;
    for (int s = 0; s < num_slots(); ++s) {
      if (disabled_[s].load() || live_false_[s] == 0) continue;
      if (most < 0 || live_false_[s] > live_false_[most]) most = s;
      if (ClopperPearsonLower(live_false_[s], live_hits_[s], options_.live_confidence) >
          epsilons_[s]) {
        switch_off.push_back(s);
      }
    }
    if (most >= 0 && std::find(switch_off.begin(), switch_off.end(), most) == switch_off.end()) {
      switch_off.push_back(most);
    }
    lower = live_->lower();
    if (!switch_off.empty()) {
      ++live_tightenings_;
      after_tightening_ = true;
      in_doubt_.store(true, std::memory_order_relaxed);
    }
    // The answers after this come from another policy (or, with no tap
    // left to switch off, from taps the per-tap monitor switched off).
    RestartLiveLocked();
  } while (false);
  if (withdraw) {
    spdlog::warn("live bound: disagreement over all answers is above {} (lower bound {:.4f}); "
                 "thresholds withdrawn until feedback certifies new ones",
                 answer_epsilon_, lower);
    return Withdraw();
  }
  for (int s : switch_off) {
    if (!disabled_[s].exchange(true)) {
      spdlog::warn("live bound: disagreement over all answers is above {} (lower bound "
                   "{:.4f}); tap {} switched off",
                   answer_epsilon_, lower, parts_.taps[s]);
    }
  }
}

void EngineImpl::AnswerLocked(Request& request, absl::StatusOr<InferResult> result) {
  if (request.answered) return;
  request.answered = true;
  request.answered_flag.store(true, std::memory_order_release);
  request.result = std::move(result);
  request.changed.notify_all();
}

void EngineImpl::Answer(Request& request, absl::StatusOr<InferResult> result) {
  MutexLock lock(&request.mutex);
  AnswerLocked(request, std::move(result));
}

void EngineImpl::ResolveLocked(Request& request) {
  while (!request.answered && request.resolved < num_slots()) {
    Request::LookupSlot& slot = request.lookups[request.resolved];
    if (!slot.decided || !slot.done) return;
    if (slot.result.hit) {
      const int s = request.resolved;
      request.hit_slot = s;
      InferResult result;
      result.label = slot.result.label;
      result.exit_tap = parts_.taps[s];
      result.cache_hit = true;
      result.cache_version = request.caches->version;
      result.scores = std::move(slot.probabilities);
      result.timings.queue_us = request.queue_us;
      ++hits_[s];
      ++cache_hits_;
      AnswerLocked(request, std::move(result));
      return;
    }
    ++request.resolved;
  }
}

void EngineImpl::RecordLookup(Request& request, int slot, Request::LookupSlot result,
                              bool queued) {
  MutexLock lock(&request.mutex);
  result.decided = result.done = true;
  request.lookups[slot] = std::move(result);
  ResolveLocked(request);
  if (queued) {
    --request.pending;
    request.pending_count.fetch_sub(1, std::memory_order_release);
    request.changed.notify_all();  // The worker may wait for pending lookups.
  }
}

void EngineImpl::Lookup(Request& request, int slot, const Activation& activation,
                        bool queued) {
  Request::LookupSlot out;
  if (!request.answered_flag.load(std::memory_order_acquire)) {
    const LearnedCache& cache = *request.caches->caches[slot];
    if (request.want_scores) out.probabilities.resize(cache.num_classes());
    out.result = cache.Lookup(activation.data,
                              request.want_scores ? out.probabilities.data() : nullptr);
    out.result.hit = Hits(*request.caches, slot, out.result);
    ++lookups_[slot];
  }
  RecordLookup(request, slot, std::move(out), queued);
}

void EngineImpl::Run(Request& request) {
  const int slots = num_slots();
  auto fail = [&](const absl::Status& status) {
    Answer(request, absl::InternalError(absl::StrCat("model failed: ", status.message())));
    // Lookups still queued hold the request; let them finish harmlessly.
    FinishRequest();
  };
  absl::StatusOr<Activation> input = parts_.runner->MakeInput(request.input, 1);
  if (!input.ok()) return fail(input.status());
  Activation current = std::move(*input);
  for (int segment = 0; segment <= slots; ++segment) {
    if (request.answered_flag.load(std::memory_order_acquire) && !request.feedback) {
      // The rest is dropped; lookups still queued finish first, so that
      // WaitForFeedback covers their counters too.
      WaitForLookups(request);
      return FinishRequest();
    }
    auto next = parts_.runner->RunSegment(segment, current);
    if (!next.ok()) return fail(next.status());
    current = std::move(*next);
    if (segment == slots) break;
    const int slot = segment;
    request.activations[slot] = current;
    const bool skip =
        request.answered_flag.load(std::memory_order_acquire) || TapOff(*request.caches, slot);
    if (skip) {
      RecordLookup(request, slot, {}, /*queued=*/false);
      continue;
    }
    if (inline_lookup_[slot]) {
      Lookup(request, slot, current, /*queued=*/false);
      continue;
    }
    {
      MutexLock lock(&request.mutex);
      request.lookups[slot].decided = true;
      ++request.pending;
      request.pending_count.fetch_add(1, std::memory_order_relaxed);
    }
    Schedule(*lookup_queue_, &EngineImpl::LookupTask, &request, slot);
  }
  // Every segment ran: `current` holds the base model's logits.
  const int base_label = cache_internal::ArgMax(current.data, num_classes_);
  int hit_slot = -1;
  int hit_label = -1;
  // Lookups still running could hit at an earlier tap than the base
  // answer; wait for them so that both modes answer alike.
  WaitForLookups(request);
  {
    MutexLock lock(&request.mutex);
    ResolveLocked(request);
    if (!request.answered) {
      InferResult result;
      result.label = base_label;
      result.cache_version = request.caches->version;
      result.timings.queue_us = request.queue_us;
      if (request.want_scores) result.scores = Softmax(current.data, num_classes_);
      ++base_answers_;
      AnswerLocked(request, std::move(result));
    } else if (request.hit_slot >= 0) {
      hit_slot = request.hit_slot;
      hit_label = request.lookups[hit_slot].result.label;
    }
  }
  if (!request.feedback) return FinishRequest();
  FinishFeedback(request, slots + 1, std::move(current), hit_slot, hit_label);
}

void EngineImpl::WaitForLookups(Request& request) {
  SpinUntil(options_.spin_us,
            [&] { return request.pending_count.load(std::memory_order_acquire) == 0; });
  MutexLock lock(&request.mutex);
  request.mutex.Await(request.changed,
                      [&]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return request.pending == 0; });
}

void EngineImpl::FinishRequest() {
  MutexLock lock(&inflight_mutex_);
  if (--inflight_ == 0) inflight_cv_.notify_all();
}

void EngineImpl::RecordFeedback(Request& request, const Activation& logits) {
  if (num_slots() == 0) return;
  thread_local std::vector<float> features;
  for (int slot = 0; slot < num_slots(); ++slot) {
    const LearnedCache& cache = *request.caches->caches[slot];
    features.resize(cache.training_input_size());
    cache.ExtractTrainingInput(request.activations[slot].data, features.data());
    feedback_->Add(slot, features.data(), logits.data);
  }
  ++feedback_requests_;
}

std::vector<float> EngineImpl::PlanThresholds(const CacheSet& set) {
  std::vector<float> thresholds;
  for (const auto& cache : set.caches) {
    thresholds.push_back(cache->weights().enabled ? cache->weights().threshold : kThresholdOff);
  }
  return thresholds;
}

void EngineImpl::ReadMonitorOffLocked() {
  monitor_off_.resize(num_slots());
  for (int s = 0; s < num_slots(); ++s) monitor_off_[s] = disabled_[s].load();
}

bool EngineImpl::ApplyPolicyLocked(const ThresholdPolicy& policy, ThresholdSource source,
                                   double upper, const CacheSet* caches) {
  std::shared_ptr<const CacheSet> old = Current();
  if (caches == nullptr) caches = old.get();
  const bool changed = caches != old.get() || old->thresholds != policy.thresholds;
  if (changed) {
    auto next = std::make_shared<CacheSet>();
    next->version = caches->version;
    next->caches = caches->caches;
    next->thresholds = policy.thresholds;
    next->every_off = num_slots() > 0 && !policy.any_on();
    std::atomic_store(&current_, std::shared_ptr<const CacheSet>(std::move(next)));
  }
  if (source != ThresholdSource::kPlan) drifting_.store(false, std::memory_order_relaxed);
  withdrawn_.store(source == ThresholdSource::kNone, std::memory_order_relaxed);
  plan_in_force_.store(source == ThresholdSource::kPlan, std::memory_order_relaxed);
  policy_.thresholds.assign(policy.thresholds.begin(), policy.thresholds.end());
  policy_.taps_off = policy.taps_off;
  policy_.offset = policy.offset;
  source_ = source;
  policy_upper_ = upper;
  return changed;
}

void EngineImpl::ClearWindowLocked(const CacheSet& set) {
  window_->Clear();
  window_version_ = set.version;
  since_recalibration_ = 0;
  ++recalibration_generation_;
}

void EngineImpl::ResetRecalibrationLocked(const CacheSet& set) {
  plan_thresholds_ = PlanThresholds(set);
  ClearWindowLocked(set);
  if (drift_) {
    MutexLock lock(&drift_mutex_);
    drift_->Reset();
    for (int e = 0; e <= num_slots(); ++e) exit_counts_[e] = 0;
    drifting_ = false;
  }
  candidate_.thresholds = plan_thresholds_;
  candidate_.taps_off = 0;
  candidate_.offset = 0;
  ApplyPolicyLocked(candidate_, ThresholdSource::kPlan, 1, &set);
}

void EngineImpl::RecordWindow(Request& request, int base_label) {
  const int slots = num_slots();
  if (slots == 0) return;
  thread_local std::vector<float> scores;
  thread_local std::vector<int> labels;
  scores.resize(slots);
  labels.resize(slots);
  for (int s = 0; s < slots; ++s) {
    const LookupResult lookup = request.caches->caches[s]->Lookup(request.activations[s].data);
    scores[s] = lookup.score;
    labels[s] = lookup.label;
  }
  {
    MutexLock lock(&recal_mutex_);
    // Scores of replaced caches say nothing about the ones in force.
    if (request.caches->version != window_version_) return;
    window_->Add(scores.data(), labels.data(), base_label);
    if (++since_recalibration_ < options_.recalibration_every || recalibration_due_) return;
    since_recalibration_ = 0;
    recalibration_due_ = true;
    MutexLock inflight(&inflight_mutex_);  // WaitForFeedback waits for it too.
    ++inflight_;
  }
  recalibration_cv_.notify_one();
}

void EngineImpl::RecalibrationLoop() {
  for (;;) {
    uint64_t generation = 0;
    {
      MutexLock lock(&recal_mutex_);
      recal_mutex_.Await(recalibration_cv_, [this]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
        return recalibration_due_ || recalibration_stop_;
      });
      if (!recalibration_due_) return;  // Stopping, nothing left to do.
      recalibration_due_ = false;
      // A copy to work on without the lock (the workers keep adding).
      *snapshot_ = *window_;
      snapshot_plan_ = plan_thresholds_;
      ReadMonitorOffLocked();
      snapshot_off_ = monitor_off_;
      // The plan's policy as it serves: without the taps the monitor has off.
      FillPolicy(snapshot_plan_, snapshot_off_, 0, 0, &snapshot_policy_);
      generation = recalibration_generation_;
    }
    const double start_us = NowUs();
    Recalibrate(*snapshot_, snapshot_plan_, snapshot_off_, costs_, answer_epsilon_,
                options_.live_confidence, &next_, &next_scratch_);
    const PolicyEvaluation in_force = Evaluate(*snapshot_, snapshot_policy_, costs_);
    recalibration_busy_us_.fetch_add(static_cast<int64_t>(NowUs() - start_us),
                                     std::memory_order_relaxed);
    ApplyRecalibration(generation, in_force);
    FinishRequest();
  }
}

void EngineImpl::ApplyRecalibration(uint64_t generation, const PolicyEvaluation& in_force) {
  const Recalibration& next = next_;
  bool changed = false;
  std::string description;
  int64_t samples = 0;
  {
    MutexLock install(&install_mutex_);
    MutexLock lock(&recal_mutex_);
    // A withdrawal, an update or a reset came in between: the snapshot is
    // of another window.
    if (generation != recalibration_generation_) return;
    if (source_ == ThresholdSource::kPlan) {
      // The plan's thresholds are certified at build time. The window
      // replaces them with a certified policy that saves more; or, once the
      // exit shares have drifted from the plan's and the plan's policy
      // disagrees more than epsilon on the window, with what it certifies.
      // Either way the replacement is a certified policy that saves: from
      // the plan, only a breach of the live bound withdraws thresholds.
      const PolicyEvaluation& plan = in_force;
      const bool better = next.certified && next.evaluation.saving > plan.saving;
      const bool worse = drifting_.load() && next.certified &&
                         plan.disagreements > answer_epsilon_ * plan.samples;
      if (!better && !worse) return;
    }
    // Certified; or every tap off, as the full window's informed choice
    // (nothing that saves is certified on it); kNone while the window
    // certifies nothing that saves and is not full.
    const bool informed = snapshot_->size() == snapshot_->capacity();
    const ThresholdSource source =
        next.certified || informed ? ThresholdSource::kLive : ThresholdSource::kNone;
    samples = snapshot_->size();
    policy_samples_ = samples;
    changed = ApplyPolicyLocked(next.policy, source, next.upper_bound);
    if (changed) {
      ++recalibrations_;
      description = next.policy.Describe(parts_.taps);
    }
  }
  if (!changed) return;
  spdlog::info("recalibration: {} (on the last {} sampled requests)", description, samples);
  RestartLive();
}

void EngineImpl::Withdraw() {
  MutexLock install(&install_mutex_);
  MutexLock lock(&recal_mutex_);
  ClearWindowLocked(*Current());
  ReadMonitorOffLocked();
  FillPolicy(plan_thresholds_, monitor_off_, num_slots(), 0, &candidate_);
  ApplyPolicyLocked(candidate_, ThresholdSource::kNone, 1);
  // Answers between the breach and now came from the breached thresholds.
  MutexLock live(&live_mutex_);
  RestartLiveLocked();
}

void EngineImpl::RecordExit(const InferResult& result) {
  if (!drift_ || result.exact_hit || !plan_in_force_.load(std::memory_order_relaxed)) return;
  for (int s = 0; s < num_slots(); ++s) {
    if (disabled_[s].load(std::memory_order_relaxed)) return;
  }
  int exit = num_slots();
  for (int s = 0; s < num_slots(); ++s) {
    if (result.cache_hit && parts_.taps[s] == result.exit_tap) exit = s;
  }
  // Counted with atomics; the request that completes a block judges it.
  exit_counts_[exit].fetch_add(1, std::memory_order_relaxed);
  if ((exit_total_.fetch_add(1, std::memory_order_relaxed) + 1) % kDriftBlock != 0) return;
  bool alarm = false;
  double z = 0;
  int at = -1;
  {
    MutexLock lock(&drift_mutex_);
    for (int e = 0; e <= num_slots(); ++e) {
      drift_block_[e] = exit_counts_[e].exchange(0, std::memory_order_relaxed);
    }
    alarm = drift_->RecordBlock(drift_block_);
    drifting_.store(drift_->drifting(), std::memory_order_relaxed);
    z = drift_->last_z();
    at = drift_->last_exit();
  }
  if (alarm) {
    spdlog::info("drift: answers no longer exit where the plan predicted ({} z = {:.1f}); "
                 "feedback raised until the live bound certifies the bound",
                 at >= 0 && at < num_slots() ? absl::StrCat("tap ", parts_.taps[at])
                                             : std::string("base model"),
                 z);
  }
}

void EngineImpl::RestartLive() {
  MutexLock lock(&live_mutex_);
  RestartLiveLocked();
}

absl::StatusOr<InferResult> EngineImpl::InferBase(const float* input, int64_t count) {
  const double start = NowUs();
  absl::Status valid = CheckInput(input, count);
  if (!valid.ok()) return valid;
  absl::StatusOr<InferResult> result =
      RunWholeModel(input, /*want_scores=*/false, /*count_answer=*/false);
  if (result.ok()) result->timings.total_us = NowUs() - start;
  return result;
}

void EngineImpl::ResetCounters() {
  requests_ = 0;
  errors_ = 0;
  base_answers_ = 0;
  cache_hits_ = 0;
  for (int s = 0; s < num_slots(); ++s) {
    lookups_[s] = 0;
    hits_[s] = 0;
  }
  cooldown_until_ = 0;
  {
    MutexLock install(&install_mutex_);
    MutexLock lock(&recal_mutex_);
    ResetRecalibrationLocked(*Current());
  }
  MutexLock lock(&live_mutex_);
  RestartLiveLocked();
  after_tightening_ = false;
  in_doubt_ = false;
}

void EngineImpl::WarmUpSegments() {
  // Every segment and the whole model, a few times: LibTorch's profiling
  // executor optimizes (and its fuser compiles) a module only after its
  // first runs, and a request that exits early never reaches the later
  // segments, so without this the first requests to pass a tap pay the
  // compilation (milliseconds) long after start-up.
  if (parts_.probe_count < 1) return;
  const float* x = parts_.probe_inputs.data();
  auto pass = [this, x] {
    absl::StatusOr<Activation> current = parts_.runner->MakeInput(x, 1);
    if (!current.ok()) return;
    absl::StatusOr<Activation> whole = parts_.runner->RunWhole(*current);
    if (!whole.ok()) return;
    for (int segment = 0; segment < parts_.runner->num_segments(); ++segment) {
      absl::StatusOr<Activation> next = parts_.runner->RunSegment(segment, *current);
      if (!next.ok()) return;
      current = std::move(next);
    }
  };
  constexpr int kRuns = 6;
  for (int run = 0; run < kRuns; ++run) pass();
  // Each worker too (they run feedback work, and parallel mode's
  // requests): a thread's first model run sets up its own state. The tasks
  // wait for one another, so that every worker takes one.
  std::atomic<int> started{0};
  const int workers = options_.workers;
  for (int w = 0; w < workers; ++w) {
    {
      MutexLock lock(&inflight_mutex_);
      ++inflight_;
    }
    workers_->Submit([this, &started, workers, pass] {
      ++started;
      SpinUntil(1e6, [&] { return started.load() >= workers; });
      pass();
      FinishRequest();
    });
  }
  WaitForFeedback();
}

void EngineImpl::ChooseMode() {
  WarmUpSegments();
  if (options_.mode != LookupMode::kAuto) {
    mode_ = options_.mode;
    mode_report_ = absl::StrCat(LookupModeName(mode_), " (as configured)");
    return;
  }
  mode_ = LookupMode::kSequential;
  const int64_t probes = std::min<int64_t>(options_.auto_probe_requests, parts_.probe_count);
  if (num_slots() == 0) {
    // The whole model, as InferBase runs it: nothing to look up, nothing
    // to cut.
    serve_base_ = batch_base_ = true;
    mode_report_ = "auto: the base model alone (the plan has no taps)";
    return;
  }
  if (probes <= 0) {
    mode_report_ = "auto: sequential, untimed (no replay sample to time the modes on)";
    return;
  }
  // Candidates: 0 sequential, 1 parallel, 2 the whole base model. Each input
  // runs on all three, in an order that rotates per input, so that the
  // machine's drift and cache warmth fall on every candidate alike.
  const int64_t input_size = input_size_;  // CreateEngine checked the buffer.
  auto run = [&](int candidate, const float* x) -> absl::StatusOr<double> {
    const double start = NowUs();
    absl::StatusOr<InferResult> result =
        candidate == 0   ? RunInline(Current(), x, false, 0.0)
        : candidate == 1 ? RunQueued(Current(), x, false, 0.0, start)
                         : RunWholeModel(x, false, false);
    if (!result.ok()) return result.status();
    return NowUs() - start;
  };
  double total_us[3] = {0, 0, 0};
  const int64_t warmup = std::min<int64_t>(5, probes);
  for (int64_t step = 0; step < warmup + probes; ++step) {
    const bool timed = step >= warmup;
    const int64_t i = timed ? step - warmup : step;
    const float* x = parts_.probe_inputs.data() + i * input_size;
    for (int k = 0; k < 3; ++k) {
      const int candidate = static_cast<int>((i + k) % 3);
      absl::StatusOr<double> us = run(candidate, x);
      // A parallel request's worker may still finish a segment after the
      // answer; that must not land in the next candidate's time.
      WaitForFeedback();
      if (!us.ok()) {
        WaitForFeedback();
        ResetCounters();
        mode_report_ = absl::StrCat("auto: sequential, untimed (timing failed: ",
                                    us.status().message(), ")");
        parts_.probe_inputs.clear();
        parts_.probe_inputs.shrink_to_fit();
        return;
      }
      if (timed) total_us[candidate] += *us;
    }
  }
  WaitForFeedback();
  ResetCounters();
  const double sequential_ms = total_us[0] / probes / 1000;
  const double parallel_ms = total_us[1] / probes / 1000;
  const double base_ms = total_us[2] / probes / 1000;
  // A few percent is within the probe's noise, and a near-tie must not buy
  // the worse tail: parallel mode's handoffs and the cut model's miss path.
  constexpr double kParallelMargin = 0.95;  // Parallel must be 5% faster.
  constexpr double kCacheMargin = 0.97;     // The caches must be 3% faster.
  const bool parallel_wins = parallel_ms < kParallelMargin * sequential_ms;
  const double best_ms = parallel_wins ? parallel_ms : sequential_ms;
  char line[360];
  if (best_ms < kCacheMargin * base_ms) {
    mode_ = parallel_wins ? LookupMode::kParallel : LookupMode::kSequential;
    std::snprintf(line, sizeof(line),
                  "auto: %s on %lld replay-sample requests (sequential %.3f ms, parallel "
                  "%.3f ms, base model %.3f ms at the mean; parallel needs 5%% less than "
                  "sequential, the caches 3%% less than the base model)",
                  LookupModeName(mode_), static_cast<long long>(probes), sequential_ms,
                  parallel_ms, base_ms);
  } else {
    serve_base_ = true;
    std::snprintf(line, sizeof(line),
                  "auto: the base model alone, since neither mode was 3%% faster than it at "
                  "the mean on %lld replay-sample requests (sequential %.3f ms, parallel "
                  "%.3f ms, base model %.3f ms)",
                  static_cast<long long>(probes), sequential_ms, parallel_ms, base_ms);
  }
  mode_report_ = line;
  batch_base_ = serve_base_;
  mode_report_ += ChooseBatchPath(parts_.probe_count);
  parts_.probe_inputs.clear();
  parts_.probe_inputs.shrink_to_fit();
}

std::string EngineImpl::ChooseBatchPath(int64_t probes) {
  // Batches of the plan's batch size (16 for a plan made for single
  // requests), as many as the probe inputs fill, each run cut and whole in
  // an order that alternates per batch; two passes after a warm-up one.
  constexpr int64_t kDefaultProbeBatch = 16;
  const int64_t batch = std::min<int64_t>(
      probes, parts_.plan_batch > 1 ? parts_.plan_batch : kDefaultProbeBatch);
  if (batch < 2) return "; batches as single requests (too few probe inputs to time batches)";
  std::vector<const float*> rows(probes);
  for (int64_t i = 0; i < probes; ++i) rows[i] = parts_.probe_inputs.data() + i * input_size_;
  std::vector<absl::StatusOr<InferResult>> results(probes);
  std::vector<int64_t> todo(batch);
  double total_us[2] = {0, 0};
  int64_t timed_rows = 0;
  int64_t block = 0;
  for (int pass = 0; pass < 3; ++pass) {
    for (int64_t first = 0; first + batch <= probes; first += batch, ++block) {
      for (int64_t j = 0; j < batch; ++j) todo[j] = first + j;
      for (int k = 0; k < 2; ++k) {
        const int candidate = static_cast<int>((block + k) % 2);  // 0 cut, 1 whole.
        const double start = NowUs();
        const absl::Status ran =
            candidate == 0
                ? RunBatchCut(Current(), rows.data(), todo, false, results, nullptr,
                              /*sample_feedback=*/false)
                : RunBatchWhole(nullptr, rows.data(), todo, false, false, results);
        const double us = NowUs() - start;
        if (!ran.ok()) {
          ResetCounters();
          return absl::StrCat("; batches as single requests (timing batches failed: ",
                              ran.message(), ")");
        }
        if (pass > 0) total_us[candidate] += us;
      }
      if (pass > 0) timed_rows += batch;
    }
  }
  ResetCounters();
  const double cut_ms = total_us[0] / timed_rows / 1000;
  const double whole_ms = total_us[1] / timed_rows / 1000;
  constexpr double kCacheMargin = 0.97;  // As for single requests.
  batch_base_ = !(cut_ms < kCacheMargin * whole_ms);
  char line[240];
  std::snprintf(line, sizeof(line),
                "; batches of %lld: %s (%.3f ms per row cut, %.3f ms per row for the base "
                "model)",
                static_cast<long long>(batch),
                batch_base_ ? "the base model alone" : "the caches", cut_ms, whole_ms);
  return line;
}

void EngineImpl::Install(
    std::vector<std::pair<int, std::shared_ptr<const LearnedCache>>> updates) {
  MutexLock lock(&install_mutex_);
  if (updates.empty()) return;
  std::shared_ptr<const CacheSet> old = Current();
  CacheSet next;
  next.version = old->version + 1;
  next.caches = old->caches;
  std::vector<int> updated;
  for (auto& [slot, cache] : updates) {
    next.caches[slot] = std::move(cache);
    updated.push_back(slot);
  }
  {
    // Published with the thresholds it serves at. The update was validated
    // at its own threshold; the window's scores are of the caches it
    // replaced. From the plan's thresholds, the plan's for the new caches;
    // otherwise the policy in force stays (withdrawn stays withdrawn; a
    // recalibrated offset and the taps it has off stay).
    MutexLock recal_lock(&recal_mutex_);
    if (source_ == ThresholdSource::kPlan) {
      ResetRecalibrationLocked(next);
    } else {
      plan_thresholds_ = PlanThresholds(next);
      ClearWindowLocked(next);
      ReadMonitorOffLocked();
      for (int slot : updated) monitor_off_[slot] = false;  // Back on below.
      FillPolicy(plan_thresholds_, monitor_off_,
                 source_ == ThresholdSource::kNone ? num_slots() : policy_.taps_off,
                 policy_.offset, &candidate_);
      for (int s = 0; s < num_slots(); ++s) {
        if (policy_.thresholds[s] > 1.0f) candidate_.thresholds[s] = kThresholdOff;
      }
      ApplyPolicyLocked(candidate_, source_, policy_upper_, &next);
    }
  }
  for (const auto& update : updates) {
    monitor_->Reset(update.first);
    if (disabled_[update.first].exchange(false)) {
      spdlog::info("live monitor: tap {} back on after a validated update",
                   parts_.taps[update.first]);
    }
  }
  // Answers from here on come from another policy.
  MutexLock live_lock(&live_mutex_);
  RestartLiveLocked();
}

absl::StatusOr<int> EngineImpl::UpdateNow() {
  if (!learner_) {
    return absl::FailedPreconditionError(
        "the online learner is not enabled (or the plan has no taps)");
  }
  return learner_->RunRound(/*throttled=*/false);
}

void EngineImpl::WaitForFeedback() {
  MutexLock lock(&inflight_mutex_);
  inflight_mutex_.Await(inflight_cv_,
                        [this]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return inflight_ == 0; });
}

EngineStats EngineImpl::Stats() const {
  EngineStats stats;
  stats.requests = requests_;
  stats.errors = errors_;
  stats.base_answers = base_answers_;
  stats.cache_hits = cache_hits_;
  if (exact_) {
    stats.exact_hits = exact_->hits();
    stats.exact_misses = exact_->misses();
    stats.exact_bytes = exact_->bytes();
  }
  stats.feedback_requests = feedback_requests_;
  stats.feedback_boosted_requests = boosted_feedback_;
  stats.false_hit_cooldowns = cooldowns_;
  stats.feedback_busy_seconds = feedback_busy_us_.load() * 1e-6;
  stats.recalibration_busy_seconds = recalibration_busy_us_.load() * 1e-6;
  stats.feedback_in_doubt =
      (withdrawn_ && options_.feedback_rate_withdrawn > options_.feedback_rate) ||
      ((in_doubt_ || (drifting_ && plan_in_force_ && !live_certified_)) &&
       options_.feedback_rate_in_doubt > options_.feedback_rate);
  stats.exit_drift = drifting_;
  if (drift_) {
    MutexLock lock(&drift_mutex_);
    stats.exit_drift_alarms = drift_->alarms();
  }
  stats.feedback_bytes = feedback_->bytes();
  stats.feedback_capacity_bytes = feedback_->capacity_bytes();
  std::shared_ptr<const CacheSet> set = Current();
  stats.cache_version = set->version;
  if (learner_) {
    stats.learner_rounds = learner_->rounds();
    stats.learner_busy_seconds = learner_->busy_seconds();
  }
  stats.answer_epsilon = answer_epsilon_;
  {
    MutexLock lock(&live_mutex_);
    stats.live_checked = live_->count();
    stats.live_disagreements = live_disagreements_;
    stats.live_disagreement_lower = live_->lower();
    stats.live_disagreement_upper = live_->upper();
    stats.live_tightenings = live_tightenings_;
    stats.live_disagreement_weighted =
        live_weight_ > 0 ? live_weight_disagreed_ / live_weight_ : 0;
  }
  {
    MutexLock lock(&recal_mutex_);
    stats.threshold_source = SourceName(source_);
    stats.threshold_policy = policy_.Describe(parts_.taps);
    stats.recalibration_samples = policy_samples_;
    stats.recalibration_upper = policy_upper_;
    stats.recalibrations = recalibrations_;
  }
  for (int s = 0; s < num_slots(); ++s) {
    TapStats tap;
    tap.tap = parts_.taps[s];
    tap.variant = set->caches[s]->weights().variant.name;
    tap.threshold = set->thresholds[s];
    tap.plan_threshold = set->caches[s]->weights().threshold;
    tap.epsilon = epsilons_[s];
    tap.lookups = lookups_[s];
    tap.hits = hits_[s];
    tap.feedback_hits = monitor_->checked(s);
    tap.feedback_false_hits = monitor_->false_hits(s);
    tap.live_false_hit_lower = monitor_->lower_bound(s);
    tap.disabled = disabled_[s];
    tap.times_disabled = monitor_->times_disabled(s);
    tap.feedback_rows = feedback_->rows(s);
    if (learner_) {
      tap.updates_accepted = learner_->accepted(s);
      tap.updates_rejected = learner_->rejected(s);
    }
    stats.updates_accepted += tap.updates_accepted;
    stats.updates_rejected += tap.updates_rejected;
    stats.taps.push_back(tap);
  }
  return stats;
}

}  // namespace

absl::Status ValidateEngineOptions(const EngineOptions& o) {
  auto bad = [](const std::string& what) { return absl::InvalidArgumentError(what); };
  if (o.intra_op_threads < 1) return bad("intra_op_threads must be >= 1");
  if (o.workers < 1 || o.workers > 256) return bad("workers must be in 1..256");
  if (o.lookup_threads < 1 || o.lookup_threads > 64) return bad("lookup_threads must be in 1..64");
  if (!(o.spin_us >= 0 && o.spin_us <= 100000)) return bad("spin_us must be in [0, 100000]");
  if (!(o.inline_lookup_us >= 0)) return bad("inline_lookup_us must be >= 0");
  if (!(o.feedback_rate >= 0 && o.feedback_rate <= 1)) return bad("feedback_rate must be in [0, 1]");
  if (!(o.feedback_rate_in_doubt >= 0 && o.feedback_rate_in_doubt <= 1)) {
    return bad("feedback_rate_in_doubt must be in [0, 1]");
  }
  if (o.false_hit_cooldown_requests < 0) return bad("false_hit_cooldown_requests must be >= 0");
  if (!(o.feedback_rate_withdrawn >= 0 && o.feedback_rate_withdrawn <= 1)) {
    return bad("feedback_rate_withdrawn must be in [0, 1]");
  }
  if (o.feedback_memory_bytes < 0) return bad("feedback_memory_bytes must be >= 0");
  if (o.feedback_rows_per_tap < 0) return bad("feedback_rows_per_tap must be >= 0");
  if (o.monitor_window < 1) return bad("monitor_window must be >= 1");
  if (o.monitor_min_checks < 1 || o.monitor_min_checks > o.monitor_window) {
    return bad("monitor_min_checks must be in 1..monitor_window");
  }
  if (!(o.live_confidence > 0 && o.live_confidence < 1)) {
    return bad("live_confidence must be in (0, 1)");
  }
  if (!(o.answer_epsilon >= 0 && o.answer_epsilon < 1)) {
    return bad("answer_epsilon must be in [0, 1)");
  }
  if (o.recalibration_window < 1 || o.recalibration_window > 100000) {
    return bad("recalibration_window must be in 1..100000");
  }
  if (o.recalibration_every < 1 || o.recalibration_every > o.recalibration_window) {
    return bad("recalibration_every must be in 1..recalibration_window");
  }
  if (!(o.monitor_confidence > 0 && o.monitor_confidence < 1)) {
    return bad("monitor_confidence must be in (0, 1)");
  }
  if (!(o.epsilon >= 0 && o.epsilon < 1)) return bad("epsilon must be in [0, 1)");
  if (o.exact_cache_bytes < 0) return bad("exact_cache_bytes must be >= 0");
  if (o.auto_probe_requests < 0 || o.auto_probe_requests > 100000) {
    return bad("auto_probe_requests must be in 0..100000");
  }
  const LearnerOptions& l = o.learner;
  if (l.trigger_rows < 1) return bad("learner trigger_rows must be >= 1");
  if (!(l.trigger_seconds > 0)) return bad("learner trigger_seconds must be > 0");
  if (l.min_rows < 10) return bad("learner min_rows must be >= 10");
  if (!(l.holdout_share > 0 && l.holdout_share < 1)) return bad("learner holdout_share must be in (0, 1)");
  if (!(l.selector_share > 0 && l.selector_share < 1)) {
    return bad("learner selector_share must be in (0, 1)");
  }
  if (!(l.replay_ratio >= 0)) return bad("learner replay_ratio must be >= 0");
  if (l.epochs < 1 || l.batch < 1) return bad("learner epochs and batch must be >= 1");
  if (!(l.learning_rate > 0)) return bad("learner learning_rate must be > 0");
  if (!(l.max_cpu_share > 0 && l.max_cpu_share <= 1)) {
    return bad("learner max_cpu_share must be in (0, 1]");
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Engine>> CreateEngine(EngineParts parts,
                                                     const EngineOptions& options) {
  GATI_RETURN_IF_ERROR(ValidateEngineOptions(options));
  if (!parts.runner) return absl::InvalidArgumentError("engine: no segment runner");
  if (parts.env == nullptr) return absl::InvalidArgumentError("engine: no env");
  int64_t input_size = 1;
  for (int64_t d : parts.metadata.input_shape) input_size *= d;
  if (parts.probe_count < 0 ||
      static_cast<int64_t>(parts.probe_inputs.size()) != parts.probe_count * input_size) {
    return absl::InvalidArgumentError(absl::StrCat(
        "engine: ", parts.probe_inputs.size(), " probe values for ", parts.probe_count,
        " inputs of ", input_size));
  }
  if (parts.taps.size() != parts.caches.size() ||
      (!parts.tap_epsilon.empty() && parts.tap_epsilon.size() != parts.taps.size())) {
    return absl::InvalidArgumentError("engine: one cache per planned tap needed");
  }
  if (parts.runner->num_segments() != static_cast<int>(parts.taps.size()) + 1) {
    return absl::InvalidArgumentError("engine: segments do not match the planned taps");
  }
  for (size_t s = 0; s < parts.taps.size(); ++s) {
    if (!parts.caches[s] || parts.caches[s]->weights().tap != parts.taps[s] ||
        parts.caches[s]->num_classes() !=
            static_cast<int>(parts.metadata.class_names.size()) ||
        (s > 0 && parts.taps[s] <= parts.taps[s - 1])) {
      return absl::InvalidArgumentError(
          absl::StrCat("engine: cache for planned tap ", parts.taps[s], " does not fit"));
    }
  }
  for (double epsilon : parts.tap_epsilon) {
    if (!(epsilon > 0 && epsilon < 1)) {
      return absl::InvalidArgumentError("engine: tap epsilons must lie in (0, 1)");
    }
  }
  if (options.learner.enabled && !parts.taps.empty() && !parts.trainer) {
    return absl::InvalidArgumentError("engine: the learner needs a trainer");
  }
  auto engine = std::make_unique<EngineImpl>(std::move(parts), options);
  engine->ChooseMode();
  return std::unique_ptr<Engine>(std::move(engine));
}

}  // namespace gati::runtime

namespace gati {
Engine::~Engine() = default;

std::vector<absl::StatusOr<InferResult>> Engine::InferBatch(const float* const* rows, int64_t n,
                                                            int64_t count,
                                                            const InferOptions& options,
                                                            const RowAnswered& answered) {
  std::vector<absl::StatusOr<InferResult>> results;
  for (int64_t i = 0; i < n; ++i) {
    results.push_back(Infer(rows[i], count, options));
    if (answered) answered(i, results.back());
  }
  return results;
}
}  // namespace gati
