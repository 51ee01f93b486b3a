// The engine's request path: segments on a worker, lookups on the lookup
// executor (parallel mode) or inline (sequential), first hit in tap order
// answers, feedback after the answer, monitor, hot swap of cache versions.
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <mutex>
#include <random>
#include <string_view>
#include <thread>

#include "absl/strings/str_cat.h"
#include "cache/kernels.h"
#include "runtime/engine_internal.h"
#include "runtime/exact_cache.h"
#include "runtime/feedback.h"
#include "runtime/learner.h"
#include "runtime/monitor.h"
#include "runtime/work_queue.h"
#include "spdlog/spdlog.h"

namespace gati::runtime {
namespace {

using Clock = std::chrono::steady_clock;

double MicrosSince(Clock::time_point start, Clock::time_point end = Clock::now()) {
  return std::chrono::duration<double, std::micro>(end - start).count();
}

std::vector<float> Softmax(const float* logits, int n) {
  std::vector<float> p(logits, logits + n);
  const float top = *std::max_element(p.begin(), p.end());
  float total = 0;
  for (float& v : p) total += (v = std::exp(v - top));
  for (float& v : p) v /= total;
  return p;
}

// One request in flight. Owned jointly by the caller, its worker and its
// queued lookups.
struct Request {
  std::vector<float> input;
  bool want_scores = false;
  bool feedback = false;  // Run every segment to learn the base answer.
  std::shared_ptr<const CacheSet> caches;
  Clock::time_point submitted;
  double queue_us = 0;  // Set before the request runs (0 on the caller's thread).

  // Tap activations (worker only), kept for feedback rows.
  std::vector<Activation> activations;

  struct LookupSlot {
    bool decided = false;  // Set up: done, queued, or skipped.
    bool done = false;
    LookupResult result;
    std::vector<float> probabilities;
  };
  std::atomic<bool> answered_flag{false};
  std::mutex mutex;
  std::condition_variable changed;
  bool answered = false;                 // Guarded by mutex.
  absl::StatusOr<InferResult> result;    // Guarded by mutex.
  std::vector<LookupSlot> lookups;       // Guarded by mutex.
  int resolved = 0;                      // Slots known to miss, in order.
  int pending = 0;                       // Queued lookups not yet done.
  int hit_slot = -1;
};

class EngineImpl final : public Engine {
 public:
  EngineImpl(EngineParts parts, const EngineOptions& options);
  ~EngineImpl() override;

  absl::StatusOr<InferResult> Infer(const float* input, int64_t count,
                                    const InferOptions& options) override;
  absl::StatusOr<InferResult> InferBase(const float* input, int64_t count) override;
  absl::StatusOr<int> UpdateNow() override;
  void WaitForFeedback() override;
  EngineStats Stats() const override;
  const ModelMetadata& metadata() const override { return parts_.metadata; }
  const std::vector<int>& planned_taps() const override { return parts_.taps; }
  double predicted_mean_ms() const override { return parts_.predicted_mean_ms; }
  double predicted_base_ms() const override { return parts_.predicted_base_ms; }
  bool learner_busy() const override { return learner_ && learner_->busy(); }

 private:
  int num_slots() const { return static_cast<int>(parts_.taps.size()); }
  absl::Status CheckInput(const float* input, int64_t count) const;
  std::shared_ptr<const CacheSet> Current() const { return std::atomic_load(&current_); }
  void Install(std::vector<std::pair<int, std::shared_ptr<const LearnedCache>>> updates);

  // Runs `request` from `first_segment` on `current` (ignored for segment
  // 0, which starts from the request's input) to its answer and, when it is
  // sampled for feedback or misses, on to the base model's answer, the
  // monitor and the feedback rings. `on_caller`: running on the caller's
  // thread (sequential mode), so work after the answer goes to a worker.
  void Run(const std::shared_ptr<Request>& request, int first_segment, Activation current,
           bool on_caller);
  // One request fewer in flight (WaitForFeedback waits for none).
  void FinishRequest();
  // Looks up `slot` and records the result; `queued` when it ran on the
  // lookup executor (counted in request.pending).
  void Lookup(Request& request, int slot, const Activation& activation, bool queued);
  void RecordLookup(Request& request, int slot, Request::LookupSlot slot_result,
                    bool queued);
  // REQUIRES: request.mutex held. Answers with the first hit in tap order
  // once every earlier tap is known to miss.
  void ResolveLocked(Request& request);
  void AnswerLocked(Request& request, absl::StatusOr<InferResult> result);
  void Answer(Request& request, absl::StatusOr<InferResult> result);
  void RecordFeedback(Request& request, const Activation& logits);

  const EngineOptions options_;
  EngineParts parts_;
  int num_classes_ = 0;
  int64_t input_size_ = 1;
  std::vector<double> epsilons_;  // Per slot.

  std::shared_ptr<const CacheSet> current_;  // std::atomic_load/store only.
  std::mutex install_mutex_;
  std::unique_ptr<std::atomic<bool>[]> disabled_;
  std::unique_ptr<std::atomic<int64_t>[]> lookups_;
  std::unique_ptr<std::atomic<int64_t>[]> hits_;

  std::unique_ptr<FeedbackStore> feedback_;
  std::unique_ptr<TapMonitor> monitor_;
  std::unique_ptr<ExactCache> exact_;

  std::atomic<int64_t> requests_{0}, errors_{0}, base_answers_{0}, cache_hits_{0},
      feedback_requests_{0};

  std::mutex inflight_mutex_;
  std::condition_variable inflight_cv_;
  int64_t inflight_ = 0;  // Guarded by inflight_mutex_.

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
  if (options.exact_cache_bytes > 0) {
    exact_ = std::make_unique<ExactCache>(options.exact_cache_bytes);
  }
  lookup_queue_ = std::make_unique<WorkQueue>(options.lookup_threads);
  workers_ = std::make_unique<WorkQueue>(options.workers);
  if (options.learner.enabled && slots > 0) {
    OnlineLearner::Hooks hooks;
    hooks.current = [this] { return Current(); };
    hooks.disabled = [this](int slot) { return disabled_[slot].load(); };
    hooks.install = [this](auto updates) { Install(std::move(updates)); };
    hooks.feedback_requests = [this] { return feedback_requests_.load(); };
    learner_ = std::make_unique<OnlineLearner>(
        feedback_.get(), std::move(parts_.trainer), std::move(parts_.replay),
        options.learner, epsilons_, parts_.bundle_confidence, std::move(hooks));
    learner_->Start();
  }
}

EngineImpl::~EngineImpl() {
  learner_.reset();
  workers_.reset();
  lookup_queue_.reset();
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
  const Clock::time_point start = Clock::now();
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
      found->timings = {MicrosSince(start), 0};
      return *found;
    }
  }
  auto request = std::make_shared<Request>();
  request->input.assign(input, input + count);
  request->want_scores = infer_options.want_scores;
  request->caches = Current();
  request->submitted = start;
  request->activations.resize(num_slots());
  request->lookups.resize(num_slots());
  if (num_slots() > 0 && options_.feedback_rate > 0) {
    thread_local std::mt19937_64 rng(
        options_.seed ^ std::hash<std::thread::id>()(std::this_thread::get_id()));
    request->feedback =
        std::uniform_real_distribution<double>(0, 1)(rng) < options_.feedback_rate;
  }
  {
    std::lock_guard<std::mutex> lock(inflight_mutex_);
    ++inflight_;
  }
  if (options_.mode == LookupMode::kSequential) {
    // Nothing runs beside the segments: the caller's thread is the request's
    // thread, and only work after the answer goes to a worker.
    Run(request, 0, {}, /*on_caller=*/true);
  } else {
    workers_->Submit([this, request] {
      request->queue_us = MicrosSince(request->submitted);
      Run(request, 0, {}, /*on_caller=*/false);
    });
  }
  absl::StatusOr<InferResult> result;
  {
    std::unique_lock<std::mutex> lock(request->mutex);
    request->changed.wait(lock, [&] { return request->answered; });
    result = request->result;
  }
  if (!result.ok()) {
    ++errors_;
    return result;
  }
  result->timings.total_us = MicrosSince(start);
  if (exact_) exact_->Insert(bytes, *result);
  return result;
}

void EngineImpl::AnswerLocked(Request& request, absl::StatusOr<InferResult> result) {
  if (request.answered) return;
  request.answered = true;
  request.answered_flag.store(true, std::memory_order_release);
  request.result = std::move(result);
  request.changed.notify_all();
}

void EngineImpl::Answer(Request& request, absl::StatusOr<InferResult> result) {
  std::lock_guard<std::mutex> lock(request.mutex);
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
  std::lock_guard<std::mutex> lock(request.mutex);
  result.decided = result.done = true;
  request.lookups[slot] = std::move(result);
  ResolveLocked(request);
  if (queued) {
    --request.pending;
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
    ++lookups_[slot];
  }
  RecordLookup(request, slot, std::move(out), queued);
}

void EngineImpl::Run(const std::shared_ptr<Request>& request_ptr, int first_segment,
                     Activation current, bool on_caller) {
  Request& request = *request_ptr;
  const bool parallel = options_.mode == LookupMode::kParallel;
  const int slots = num_slots();
  auto fail = [&](const absl::Status& status) {
    Answer(request, absl::InternalError(absl::StrCat("model failed: ", status.message())));
    // Lookups still queued hold the request; let them finish harmlessly.
    FinishRequest();
  };
  if (first_segment == 0) {
    auto input = parts_.runner->MakeInput(request.input.data(), 1);
    if (!input.ok()) return fail(input.status());
    current = std::move(*input);
  }
  for (int segment = first_segment; segment <= slots; ++segment) {
    if (request.answered_flag.load(std::memory_order_acquire)) {
      if (!request.feedback) return FinishRequest();  // The rest is dropped.
      if (on_caller) {
        // The caller has its answer; a worker learns the base model's.
        workers_->Submit([this, request_ptr, segment, current] {
          Run(request_ptr, segment, current, /*on_caller=*/false);
        });
        return;
      }
    }
    auto next = parts_.runner->RunSegment(segment, current);
    if (!next.ok()) return fail(next.status());
    current = std::move(*next);
    if (segment == slots) break;
    const int slot = segment;
    request.activations[slot] = current;
    const bool skip = request.answered_flag.load(std::memory_order_acquire) ||
                      disabled_[slot].load(std::memory_order_relaxed);
    if (skip) {
      RecordLookup(request, slot, {}, /*queued=*/false);
    } else if (parallel) {
      {
        std::lock_guard<std::mutex> lock(request.mutex);
        request.lookups[slot].decided = true;
        ++request.pending;
      }
      lookup_queue_->Submit([this, request_ptr, slot, current] {
        Lookup(*request_ptr, slot, current, /*queued=*/true);
      });
    } else {
      Lookup(request, slot, current, /*queued=*/false);
    }
  }
  // Every segment ran: `current` holds the base model's logits.
  const int base_label = cache_internal::ArgMax(current.data, num_classes_);
  int hit_slot = -1;
  int hit_label = -1;
  {
    std::unique_lock<std::mutex> lock(request.mutex);
    // Lookups still running could hit at an earlier tap than the base
    // answer; wait for them so that both modes answer alike.
    request.changed.wait(lock, [&] { return request.pending == 0; });
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
  auto learn = [this, request_ptr, current, hit_slot, hit_label, base_label] {
    if (hit_slot >= 0 && monitor_->Record(hit_slot, hit_label != base_label)) {
      disabled_[hit_slot] = true;
      spdlog::warn("live monitor: tap {} switched off: false-hit rate lower bound {:.4f} > {}",
                   parts_.taps[hit_slot], monitor_->lower_bound(hit_slot),
                   epsilons_[hit_slot]);
    }
    RecordFeedback(*request_ptr, current);
    FinishRequest();
  };
  if (on_caller && slots > 0) {
    workers_->Submit(std::move(learn));  // Off the caller's path.
  } else {
    learn();
  }
}

void EngineImpl::FinishRequest() {
  std::lock_guard<std::mutex> lock(inflight_mutex_);
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

absl::StatusOr<InferResult> EngineImpl::InferBase(const float* input, int64_t count) {
  const Clock::time_point start = Clock::now();
  absl::Status valid = CheckInput(input, count);
  if (!valid.ok()) return valid;
  auto activation = parts_.runner->MakeInput(input, 1);
  if (!activation.ok()) return activation.status();
  auto logits = parts_.runner->RunWhole(*activation);
  if (!logits.ok()) {
    return absl::InternalError(absl::StrCat("model failed: ", logits.status().message()));
  }
  InferResult result;
  result.label = cache_internal::ArgMax(logits->data, num_classes_);
  result.timings.total_us = MicrosSince(start);
  return result;
}

void EngineImpl::Install(
    std::vector<std::pair<int, std::shared_ptr<const LearnedCache>>> updates) {
  std::lock_guard<std::mutex> lock(install_mutex_);
  std::shared_ptr<const CacheSet> old = Current();
  auto next = std::make_shared<CacheSet>(*old);
  next->version = old->version + 1;
  for (auto& [slot, cache] : updates) next->caches[slot] = std::move(cache);
  std::atomic_store(&current_, std::shared_ptr<const CacheSet>(std::move(next)));
  for (const auto& update : updates) {
    monitor_->Reset(update.first);
    if (disabled_[update.first].exchange(false)) {
      spdlog::info("live monitor: tap {} back on after a validated update",
                   parts_.taps[update.first]);
    }
  }
}

absl::StatusOr<int> EngineImpl::UpdateNow() {
  if (!learner_) {
    return absl::FailedPreconditionError(
        "the online learner is not enabled (or the plan has no taps)");
  }
  return learner_->RunRound(/*throttled=*/false);
}

void EngineImpl::WaitForFeedback() {
  std::unique_lock<std::mutex> lock(inflight_mutex_);
  inflight_cv_.wait(lock, [this] { return inflight_ == 0; });
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
  stats.feedback_bytes = feedback_->bytes();
  stats.feedback_capacity_bytes = feedback_->capacity_bytes();
  std::shared_ptr<const CacheSet> set = Current();
  stats.cache_version = set->version;
  if (learner_) {
    stats.learner_rounds = learner_->rounds();
    stats.learner_busy_seconds = learner_->busy_seconds();
  }
  for (int s = 0; s < num_slots(); ++s) {
    TapStats tap;
    tap.tap = parts_.taps[s];
    tap.variant = set->caches[s]->weights().variant.name;
    tap.threshold = set->caches[s]->weights().threshold;
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
  if (!(o.feedback_rate >= 0 && o.feedback_rate <= 1)) return bad("feedback_rate must be in [0, 1]");
  if (o.feedback_memory_bytes < 0) return bad("feedback_memory_bytes must be >= 0");
  if (o.feedback_rows_per_tap < 0) return bad("feedback_rows_per_tap must be >= 0");
  if (o.monitor_window < 1) return bad("monitor_window must be >= 1");
  if (o.monitor_min_checks < 1 || o.monitor_min_checks > o.monitor_window) {
    return bad("monitor_min_checks must be in 1..monitor_window");
  }
  if (!(o.monitor_confidence > 0 && o.monitor_confidence < 1)) {
    return bad("monitor_confidence must be in (0, 1)");
  }
  if (!(o.epsilon >= 0 && o.epsilon < 1)) return bad("epsilon must be in [0, 1)");
  if (o.exact_cache_bytes < 0) return bad("exact_cache_bytes must be >= 0");
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
  return std::unique_ptr<Engine>(new EngineImpl(std::move(parts), options));
}

}  // namespace gati::runtime

namespace gati {
Engine::~Engine() = default;
}  // namespace gati
