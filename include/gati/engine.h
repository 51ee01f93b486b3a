// The engine: serves one bundle with early exits at the planned taps.
//
// Per request, the base model runs as frozen segments cut at the planned
// taps, on one of the engine's workers (the request's thread). After each
// segment the tap's features and lookup go to the lookup executor while the
// next segment starts; the first hit, in tap order, answers the request at
// once and later work for it is dropped. On a miss the last segment answers
// with the base model's class. Mode `sequential` runs the request on the
// caller's thread and does each lookup before the next segment instead (no
// handoff, no per-request allocation of the engine's own; workers only
// finish sampled feedback); both modes answer identically. Mode `auto`, the
// default, times both on the bundle's replay sample when the engine starts,
// beside the whole base model, and serves in the faster; when neither beats
// the base model at the mean, it serves the base model alone (mode() and
// mode_report() say which and why). It also times batches (InferBatch) of
// the plan's batch size, cut against the whole model, and serves batches
// with the caches only where they win there.
//
// Feedback: the base model's answer for a `feedback_rate` sample of requests
// (on a sampled hit the remaining segments keep running after the answer was
// returned, off the caller's path; a sampled miss has it already). Requests
// not sampled cost nothing beyond their answer. Feedback rows go to bounded per-tap ring
// buffers, feed the live monitor (a tap whose false-hit rate is shown to
// exceed its bound is switched off) and, when enabled, the online learner,
// which fine-tunes caches in the background and swaps in those that pass a
// validation gate. Readers never wait for the learner: a swap is a pointer
// swap and every request sees one whole cache version.
#ifndef GATI_ENGINE_H_
#define GATI_ENGINE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "gati/model.h"
#include "gati/plan.h"
#include "gati/status.h"

namespace gati {

struct LearnerOptions {
  // Run the online learner (off: caches stay as built; feedback still feeds
  // the monitor).
  bool enabled = false;
  // An update round starts after this many new feedback rows ...
  int64_t trigger_rows = 1024;
  // ... or this many seconds after the last round, whichever comes first
  // (rounds with too few rows per tap change nothing).
  double trigger_seconds = 30;
  // Fewest feedback rows a tap needs before the learner touches it.
  int64_t min_rows = 600;
  // Share of a tap's recent rows held out for recalibration and the gate;
  // of the rest, `selector_share` trains the selector, the remainder the
  // predictor.
  double holdout_share = 0.5;
  double selector_share = 0.25;
  // Replay rows from the bundle's build-time sample per feedback training
  // row (0 = feedback only).
  double replay_ratio = 1.0;
  // Fine-tuning: epochs over the training rows, Adam learning rate, batch.
  int epochs = 4;
  double learning_rate = 2e-3;
  int batch = 64;
  // Largest share of one core the learner may use: after each slice of
  // work it sleeps so that busy / (busy + sleep) <= max_cpu_share.
  double max_cpu_share = 0.25;
  // The learner thread runs under SCHED_IDLE (only when a core is idle);
  // where that is refused, at this niceness (0..19).
  int nice = 19;
  uint64_t seed = 1;
};

struct EngineOptions {
  // LibTorch intra-op threads (process-wide).
  int intra_op_threads = 1;
  // "cpu", or "cuda"/"cuda:N" with a CUDA build of LibTorch.
  std::string device = "cpu";
  // Parallel mode: requests computed at once (the requests' threads); more
  // callers queue. Both modes: the threads that finish feedback work.
  int workers = 2;
  // Threads of the lookup executor (parallel mode).
  int lookup_threads = 1;
  // Parallel mode: how long a thread that waits for an answer or for work
  // spins (yielding its core) before it sleeps, so that a handoff costs no
  // kernel wake-up; 0 = sleep at once.
  double spin_us = 100;
  // Parallel mode: a tap whose lookup takes less than this (timed once when
  // the engine starts) is looked up on the request's worker, since a
  // handoff to the lookup executor would cost more than it overlaps.
  double inline_lookup_us = 20;
  // kAuto: measure kParallel and kSequential when the engine starts (see
  // auto_probe_requests) and serve in the faster, or the base model alone
  // when neither beats it. Near-ties go to the better tail: parallel needs
  // a mean 5% below sequential's, the caches one 3% below the base model's.
  LookupMode mode = LookupMode::kAuto;
  // Replay-sample requests timed per candidate (parallel, sequential, base
  // model) by kAuto, after a few warm-up runs; 0 = pick sequential untimed.
  int auto_probe_requests = 48;
  // false: serve the base model alone, as if the plan had no taps.
  bool use_caches = true;
  // Share of requests whose base-model answer is learned (for hits, the
  // remaining segments still run, off the critical path): the monitor's and
  // the learner's input.
  double feedback_rate = 0.05;
  // While the live bound has seen answers disagree (its running rate above
  // half of answer_epsilon) and cannot yet certify the bound, or since it
  // last switched a tap off until it certifies the bound again, requests
  // are sampled at this rate instead (when higher): feedback goes where the
  // bound is in doubt. Its cost is in Stats() (feedback_requests,
  // feedback_boosted_requests).
  double feedback_rate_in_doubt = 0.25;
  // While thresholds are withdrawn (every tap off after a breach of the
  // live bound, see recalibration), the whole model answers and this share
  // of requests also runs cut on a worker, for the feedback that certifies
  // new thresholds: CPU, not latency.
  double feedback_rate_withdrawn = 0.5;
  // A checked false hit switches every tap off for the next this many
  // requests (0 = never): streams with temporal locality send bursts of
  // near-duplicates, a cache wrong on one frame is wrong on the rest, and
  // so, often, are the later caches. Only fewer hits; counted in Stats().
  int64_t false_hit_cooldown_requests = 100;
  // Cap on the feedback ring buffers, all taps together, and on rows per tap.
  int64_t feedback_memory_bytes = 64ll << 20;
  int64_t feedback_rows_per_tap = 4096;
  // Live monitor: outcomes of the last `monitor_window` checked hits per
  // tap; once `monitor_min_checks` are in, the tap is switched off when the
  // lower confidence bound of its false-hit rate exceeds epsilon. The test
  // repeats after every check, hence the high default confidence.
  int monitor_window = 1000;
  int monitor_min_checks = 50;
  double monitor_confidence = 0.99;
  // The live bound on the disagreement over all answers, the bound the
  // user chose: every feedback-sampled request adds whether its answer
  // disagreed with the base model to an anytime-valid confidence sequence
  // (betting; valid however often it is read) at `live_confidence`. When
  // the sequence shows the disagreement above answer_epsilon (with
  // live_tightening), the thresholds are withdrawn (recalibration below)
  // or, without recalibration, the tap with the most sampled false hits
  // since the sequence started is switched off, with every tap whose own
  // false-hit rate is shown above its bound; the sequence starts over; a validated update
  // switches it back on and starts it over too. Checks of answers given
  // before a restart are dropped. Validity is per sequence: each restart
  // spends a fresh 1 - live_confidence. answer_epsilon 0 = the plan's.
  double answer_epsilon = 0;
  double live_confidence = 0.95;
  bool live_tightening = true;
  // Threshold recalibration from feedback (src/runtime/recalibration.h):
  // every feedback-sampled request is kept, as each planned tap saw it
  // (score and class), in a window of the last `recalibration_window`
  // samples. Every `recalibration_every` samples the engine tests fixed
  // candidate policies (the plan's thresholds shifted by a common logit
  // offset, the first k taps off) on the window, Learn-then-Test at
  // live_confidence against answer_epsilon, and keeps the certified one
  // that saves most by the plan's costs (every tap off, the whole model,
  // when none saves anything). While the plan's thresholds are in force
  // (certified at build time) a certified policy replaces them only when it
  // saves more, or once the exit shares have drifted from the plan's
  // (exit_drift.h). Once the live bound has shown a breach, every tap is
  // off and the window starts empty (feedback_rate_withdrawn) until it
  // certifies a policy; from then on the window's choice is in force,
  // tighter or looser. false: the live bound switches off the tap with the
  // most false hits instead (see above).
  bool recalibration = true;
  int64_t recalibration_window = 2000;
  int64_t recalibration_every = 50;
  // Per-tap bound on the false-hit rate among hits (monitor and learner);
  // 0 = per tap, the bound the plan holds it to: the upper confidence bound
  // of its false-hit rate on the planning split at the planned threshold
  // (the bundle's build epsilon when the bundle has no planning records).
  double epsilon = 0;
  // Exact-match front cache (LRU on the input bytes); 0 bytes = off.
  int64_t exact_cache_bytes = 0;
  LearnerOptions learner;
  // Seeds the feedback sampling (per engine: two engines with the same seed
  // and the same call order sample the same requests).
  uint64_t seed = 1;
};

// The tap reported for answers of the base model.
inline constexpr int kBaseExit = -1;

struct InferOptions {
  // Also return class probabilities (the predictor's on a hit, the base
  // model's otherwise).
  bool want_scores = false;
};

struct InferTimings {
  double total_us = 0;  // Call to answer.
  double queue_us = 0;  // Waiting for a worker.
};

struct InferResult {
  int label = -1;
  std::vector<float> scores;  // Empty unless InferOptions::want_scores.
  int exit_tap = kBaseExit;   // The answering tap, or kBaseExit.
  bool cache_hit = false;     // Answered by a learned cache.
  bool exact_hit = false;     // Answered by the exact-match front cache.
  int64_t cache_version = 0;  // The cache version the request used.
  InferTimings timings;
};

struct TapStats {
  int tap = 0;
  std::string variant;
  float threshold = 1.0f;       // In force now (recalibration); > 1 = off.
  float plan_threshold = 1.0f;  // The plan's (or the last validated update's).
  double epsilon = 0;  // The tap's false-hit bound (monitor and gate).
  int64_t lookups = 0;
  int64_t hits = 0;  // Requests this tap answered.
  // Among feedback-sampled hits of this tap: checked, and false.
  int64_t feedback_hits = 0;
  int64_t feedback_false_hits = 0;
  // Monitor window: lower confidence bound of the false-hit rate.
  double live_false_hit_lower = 0;
  bool disabled = false;
  int64_t times_disabled = 0;
  int64_t feedback_rows = 0;  // Rows held in the tap's ring buffer now.
  int64_t updates_accepted = 0;
  int64_t updates_rejected = 0;
};

struct EngineStats {
  int64_t requests = 0;
  int64_t errors = 0;  // Rejected inputs and failed requests.
  int64_t base_answers = 0;
  int64_t cache_hits = 0;
  int64_t exact_hits = 0;
  int64_t exact_misses = 0;
  int64_t exact_bytes = 0;
  int64_t feedback_requests = 0;  // Requests whose base answer was learned.
  // Requests drawn for feedback at a rate above feedback_rate:
  // feedback_rate_in_doubt, or feedback_rate_withdrawn while thresholds
  // are withdrawn (counted when drawn; their checks may still be running).
  int64_t feedback_boosted_requests = 0;
  bool feedback_in_doubt = false;  // The higher rate is in force now.
  int64_t false_hit_cooldowns = 0;  // Taps switched off for a while by a false hit.
  // What feedback costs: worker time after the answers (remaining
  // segments, or the cut re-run while thresholds are withdrawn; checks;
  // rows; the window's lookups), and the recalibration thread's time.
  double feedback_busy_seconds = 0;
  double recalibration_busy_seconds = 0;
  // Label-free drift (src/runtime/exit_drift.h): the exit shares of recent
  // answers differ from the plan's now; alarms raised so far.
  bool exit_drift = false;
  int64_t exit_drift_alarms = 0;
  int64_t feedback_bytes = 0;     // Held by the ring buffers now.
  int64_t feedback_capacity_bytes = 0;
  int64_t cache_version = 0;
  int64_t updates_accepted = 0;  // Over all taps and rounds.
  int64_t updates_rejected = 0;
  int64_t learner_rounds = 0;
  double learner_busy_seconds = 0;
  // The live bound (EngineOptions::answer_epsilon): feedback-sampled
  // answers since the sequence last started, those that disagreed with the
  // base model, the confidence sequence's bounds on the disagreement rate
  // over all answers, and how often it switched a tap off.
  double answer_epsilon = 0;
  int64_t live_checked = 0;
  int64_t live_disagreements = 0;
  double live_disagreement_lower = 0;
  double live_disagreement_upper = 1;
  int64_t live_tightenings = 0;
  // The sampled answers' disagreement weighted by the inverse of the rate
  // each was sampled at (the rate varies): an estimate over all answers
  // since the sequence last started.
  double live_disagreement_weighted = 0;
  // Recalibration: where the thresholds in force come from ("plan",
  // "live": chosen on the window, "none": withdrawn, every tap off), the
  // policy ("plan thresholds +1.0 logits, taps 2 off"), the window samples
  // it was chosen on and the upper confidence bound of its disagreement
  // there (1 for the plan's, and for every tap off), how often a
  // recalibration changed the thresholds.
  std::string threshold_source = "plan";
  std::string threshold_policy = "plan thresholds";
  int64_t recalibration_samples = 0;
  double recalibration_upper = 1;
  int64_t recalibrations = 0;
  std::vector<TapStats> taps;  // One per planned tap, in tap order.
};

class Engine {
 public:
  // Loads the bundle at `bundle_dir` (Bundle::Load checks), cuts its base
  // model at the plan's taps and starts the workers, lookup executor and,
  // when enabled, the learner. A bundle without a plan serves the base model
  // alone. Fails with the load error, or InvalidArgument naming the bad
  // option.
  static absl::StatusOr<std::unique_ptr<Engine>> Create(
      const std::string& bundle_dir, const EngineOptions& options);

  // Stops the learner, waits for in-flight requests and feedback work.
  virtual ~Engine();

  // Classifies one input: `count` float32 values in the model's input shape
  // (input_shape()), normalized as the model expects. Thread-safe; any
  // number of callers. InvalidArgument for a wrong size or a non-finite
  // value; Internal when the model fails. The engine keeps serving either way.
  virtual absl::StatusOr<InferResult> Infer(const float* input, int64_t count,
                                            const InferOptions& options = {}) = 0;

  // Classifies `n` inputs as one batch: rows[i] points at input i's
  // `count` values (as for Infer). One result per row, in order: a row
  // with a bad value gets Infer's InvalidArgument (its position says
  // which row), and the other rows are still answered; a wrong `count`
  // fails every row; a model failure fails the rows not yet answered.
  // The batch runs through the segments together; after each tap the rows
  // that hit are answered and leave the batch, so later segments run on
  // the rows that missed (batch shrinking). Each row gets the exit and
  // class Infer gives it alone, up to the float rounding of batched
  // kernels (probabilities within 1e-4), with sampled feedback as Infer's;
  // a batch that meets a false-hit cool-down is cooled whole. In either
  // mode the batch runs on the caller's thread, lookups between segments.
  // Thread-safe. `answered`, when set, is called on the calling thread
  // once per row as soon as the row's answer is known: a row that hits is
  // handed over before the batch's later segments run (a caller can
  // answer its client while the rest computes); timings.total_us is the
  // time from the call to that moment. This default runs Infer per row.
  using RowAnswered = std::function<void(int64_t row, const absl::StatusOr<InferResult>&)>;
  virtual std::vector<absl::StatusOr<InferResult>> InferBatch(
      const float* const* rows, int64_t n, int64_t count, const InferOptions& options = {},
      const RowAnswered& answered = nullptr);

  // The whole base model, frozen and optimized as one segment, run on the
  // caller's thread: the reference every speedup is measured against.
  // Thread-safe. Same errors as Infer.
  virtual absl::StatusOr<InferResult> InferBase(const float* input,
                                                int64_t count) = 0;

  // Runs one learner round now, on the caller's thread, whatever the
  // triggers say; returns the number of caches installed. FailedPrecondition
  // when the learner is not enabled.
  virtual absl::StatusOr<int> UpdateNow() = 0;

  // Waits until feedback work of answered requests has finished and its
  // rows are recorded.
  virtual void WaitForFeedback() = 0;

  // Counters since Create and the state of every planned tap; a consistent
  // snapshot per counter, not across counters. Thread-safe.
  virtual EngineStats Stats() const = 0;
  // The base model's metadata: input shape (one input, without the batch
  // dimension, e.g. {1, 28, 28}), normalization, class names.
  virtual const ModelMetadata& metadata() const = 0;
  const std::vector<int64_t>& input_shape() const { return metadata().input_shape; }
  int num_classes() const { return static_cast<int>(metadata().class_names.size()); }
  // Planned taps in use (empty with use_caches = false or no plan).
  virtual const std::vector<int>& planned_taps() const = 0;
  // The planner's predicted mean latency (ms) in the mode the engine serves
  // in (the base model's when it serves the base model alone), and the base
  // model's latency it was predicted against (as profiled at build time);
  // 0 without a plan. For a plan made for batches (plan_batch() > 1) both
  // are per row of a batch of that size, not a single request's latency.
  virtual double predicted_mean_ms() const = 0;
  virtual double predicted_base_ms() const = 0;
  // The batch size the plan was made for (`gati plan --batch`); 1 for plans
  // made for single requests, and without a plan.
  virtual int plan_batch() const = 0;
  // True while a learner round is running (for reports that separate
  // latency during training from latency at rest).
  virtual bool learner_busy() const = 0;
  // The mode requests run in: kParallel or kSequential (kAuto resolved at
  // Create). serving_base() is true when kAuto found the caches slower than
  // the base model and serves single requests with the base model alone;
  // batches_serving_base() the same for batches (InferBatch with n > 1),
  // which kAuto times on their own (a cut model that loses at batch 1 may
  // win in batches, and the reverse).
  virtual LookupMode mode() const = 0;
  virtual bool serving_base() const = 0;
  virtual bool batches_serving_base() const = 0;
  // How the mode was chosen, with the times measured (one line).
  virtual const std::string& mode_report() const = 0;
};

}  // namespace gati

#endif  // GATI_ENGINE_H_
