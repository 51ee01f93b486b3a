#include "runtime/learner.h"

#include <pthread.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <functional>
#include <chrono>
#include <numeric>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "cache/kernels.h"
#include "spdlog/spdlog.h"

namespace gati::runtime {
namespace {



struct Scored {
  std::vector<float> scores;
  std::vector<bool> agrees;
  std::vector<bool> hits;  // At the cache's own threshold.
};

Scored Score(const LearnedCache& cache, const TrainingRows& rows) {
  Scored out;
  std::vector<float> logits(cache.num_classes());
  for (int64_t i = 0; i < rows.count; ++i) {
    cache.PredictFromTrainingInput(rows.features.data() + i * rows.feature_size,
                                   logits.data());
    const int label = cache_internal::ArgMax(logits.data(), cache.num_classes());
    const float score = cache.SelectorScore(logits.data());
    out.scores.push_back(score);
    out.agrees.push_back(label == rows.label(i));
    out.hits.push_back(cache.weights().enabled && score >= cache.weights().threshold);
  }
  return out;
}

}  // namespace

GateDecision ValidateUpdate(const LearnedCache& current, bool current_disabled,
                            CacheWeights candidate, const TrainingRows& reference,
                            const TrainingRows& holdout, double epsilon,
                            double confidence) {
  GateDecision decision;
  if (holdout.count == 0) {
    decision.reason = "no held-out rows";
    return decision;
  }
  candidate.enabled = false;
  candidate.threshold = 1.0f;
  auto scored_cache = LearnedCache::Create(candidate);
  if (!scored_cache.ok()) {
    decision.reason = std::string(scored_cache.status().message());
    return decision;
  }
  const Scored reference_scores = Score(**scored_cache, reference);
  const Scored held = Score(**scored_cache, holdout);
  std::vector<float> candidates = CandidateThresholds(
      reference_scores.scores.empty() ? held.scores : reference_scores.scores,
      holdout.count, epsilon, confidence);
  // The threshold in force is fixed before the slice is seen too; offering
  // it lets an equally good candidate match the current hit rate exactly.
  if (current.weights().enabled) candidates.push_back(current.weights().threshold);
  std::sort(candidates.begin(), candidates.end(), std::greater<float>());
  candidates.erase(std::unique(candidates.begin(), candidates.end()), candidates.end());
  // The candidates come from rows the selector was trained on, where it is
  // overconfident, so the strictest may hit too few held-out rows to ever
  // certify and would end the fixed-sequence scan at once. Start at the
  // first one with enough hits: that choice depends on the held-out scores
  // only, not on agreement, so each test in the sequence stays valid.
  const int64_t needed = MinimumHitsFor(epsilon, confidence);
  std::vector<float> sorted_scores = held.scores;
  std::sort(sorted_scores.begin(), sorted_scores.end(), std::greater<float>());
  auto hits_at = [&](float threshold) {
    return std::upper_bound(sorted_scores.begin(), sorted_scores.end(), threshold,
                            std::greater_equal<float>()) -
           sorted_scores.begin();
  };
  auto first = std::find_if(candidates.begin(), candidates.end(),
                            [&](float t) { return hits_at(t) >= needed; });
  const int64_t skipped = first - candidates.begin();
  if (first != candidates.end()) candidates.erase(candidates.begin(), first);
  decision.candidate =
      CalibrateThreshold(held.scores, held.agrees, candidates, epsilon, confidence);
  const Scored now = Score(current, holdout);
  const int64_t current_hits = std::count(now.hits.begin(), now.hits.end(), true);
  decision.current_hit_rate = static_cast<double>(current_hits) / holdout.count;
  if (!decision.candidate.found) {
    // Say why: too few hits to certify anything, or too many false ones.
    const Calibration strictest =
        candidates.empty() ? Calibration{}
                           : EvaluateThreshold(held.scores, held.agrees, candidates.front(),
                                               confidence);
    decision.reason = absl::StrCat(
        "no threshold keeps the false-hit bound ", epsilon, " on ", holdout.count,
        " held-out rows (strictest candidate: ", strictest.hits, " hits, ",
        strictest.false_hits, " false; certifying needs >= ", needed, " hits; ",
        skipped, " stricter candidates skipped)");
    return decision;
  }
  if (!current_disabled && decision.candidate.hit_rate < decision.current_hit_rate) {
    decision.reason = absl::StrFormat("hit rate %.3f below the current cache's %.3f",
                                      decision.candidate.hit_rate,
                                      decision.current_hit_rate);
    return decision;
  }
  candidate.enabled = true;
  candidate.threshold = decision.candidate.threshold;
  auto accepted = LearnedCache::Create(std::move(candidate));
  if (!accepted.ok()) {
    decision.reason = std::string(accepted.status().message());
    return decision;
  }
  decision.cache = std::move(*accepted);
  decision.accepted = true;
  decision.reason = absl::StrFormat(
      "hit rate %.3f (was %.3f), false-hit bound %.4f", decision.candidate.hit_rate,
      decision.current_hit_rate, decision.candidate.false_hit_upper_bound);
  return decision;
}

OnlineLearner::OnlineLearner(const FeedbackStore* store,
                             std::unique_ptr<CacheTrainer> trainer,
                             std::vector<TrainingRows> replay,
                             const LearnerOptions& options,
                             std::vector<double> epsilons, double confidence, Hooks hooks,
                             Env* env)
    : store_(store),
      trainer_(std::move(trainer)),
      replay_(std::move(replay)),
      options_(options),
      epsilons_(std::move(epsilons)),
      confidence_(confidence),
      hooks_(std::move(hooks)),
      env_(env) {
  for (int slot = 0; slot < store_->num_slots(); ++slot) {
    accepted_.push_back(std::make_unique<std::atomic<int64_t>>(0));
    rejected_.push_back(std::make_unique<std::atomic<int64_t>>(0));
  }
  replay_.resize(store_->num_slots());
}

OnlineLearner::~OnlineLearner() {
  stop_requested_ = true;
  {
    MutexLock lock(&stop_mutex_);
    stopping_ = true;
  }
  stop_cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void OnlineLearner::Start() {
  thread_ = std::thread([this] { Loop(); });
}

double OnlineLearner::busy_seconds() const { return busy_micros_.load() / 1e6; }

void OnlineLearner::Loop() {
  // Lowest priority for this thread only: SCHED_IDLE runs it only on cores
  // that requests leave idle; niceness where that is refused.
  sched_param param{};
  if (pthread_setschedparam(pthread_self(), SCHED_IDLE, &param) != 0) {
    setpriority(PRIO_PROCESS, static_cast<id_t>(::syscall(SYS_gettid)),
                std::clamp(options_.nice, 0, 19));
  }
  int64_t rows_at_last_round = hooks_.feedback_requests();
  double last_round_us = env_->NowMicros();
  for (;;) {
    {
      MutexLock lock(&stop_mutex_);
      // Poll the row trigger; the timeout also serves the time trigger.
      stop_mutex_.AwaitFor(stop_cv_, std::chrono::milliseconds(100),
                           [this]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return stopping_; });
      if (stopping_) return;
    }
    const int64_t rows = hooks_.feedback_requests();
    if (rows - rows_at_last_round < options_.trigger_rows &&
        (env_->NowMicros() - last_round_us) / 1e6 < options_.trigger_seconds) {
      continue;
    }
    rows_at_last_round = rows;
    last_round_us = env_->NowMicros();
    auto installed = RunRound(/*throttled=*/true);
    if (!installed.ok()) {
      spdlog::warn("online learner: {}", std::string(installed.status().message()));
    }
  }
}

absl::StatusOr<int> OnlineLearner::RunRound(bool throttled) {
  MutexLock round_lock(&round_mutex_);
  busy_ = true;
  const int64_t round = rounds_++;
  double slice_start_us = env_->NowMicros();
  auto add_busy = [this](double from_us) {
    busy_micros_ += static_cast<int64_t>(env_->NowMicros() - from_us);
  };
  // Sleeps so that busy time stays within max_cpu_share of the wall time.
  auto yield = [&] {
    if (!throttled) return;
    const double busy_us = env_->NowMicros() - slice_start_us;
    add_busy(slice_start_us);
    const double share = std::clamp(options_.max_cpu_share, 0.01, 1.0);
    if (!stop_requested_ && share < 1.0) env_->SleepForMicros(busy_us * (1 - share) / share);
    slice_start_us = env_->NowMicros();
  };
  std::shared_ptr<const CacheSet> current = hooks_.current();
  std::vector<std::pair<int, std::shared_ptr<const LearnedCache>>> updates;
  for (int slot = 0; slot < store_->num_slots() && !stop_requested_; ++slot) {
    TrainingRows rows = store_->Snapshot(slot);
    if (rows.count < options_.min_rows) continue;
    std::mt19937_64 rng(options_.seed + 7919 * round + slot);
    std::vector<int64_t> order(rows.count);
    std::iota(order.begin(), order.end(), 0);
    std::shuffle(order.begin(), order.end(), rng);
    const int64_t holdout_n = static_cast<int64_t>(options_.holdout_share * rows.count);
    const int64_t selector_n =
        static_cast<int64_t>(options_.selector_share * (rows.count - holdout_n));
    auto take = [&](int64_t begin, int64_t end) {
      return rows.Select(std::vector<int64_t>(order.begin() + begin, order.begin() + end));
    };
    TrainingRows holdout = take(0, holdout_n);
    TrainingRows selector_rows = take(holdout_n, holdout_n + selector_n);
    TrainingRows predictor_rows = take(holdout_n + selector_n, rows.count);
    const TrainingRows& replay = replay_[slot];
    if (replay.count > 0 && options_.replay_ratio > 0 &&
        replay.feature_size == rows.feature_size) {
      const int64_t want = std::min<int64_t>(
          replay.count,
          static_cast<int64_t>(options_.replay_ratio * predictor_rows.count));
      std::vector<int64_t> replay_order(replay.count);
      std::iota(replay_order.begin(), replay_order.end(), 0);
      std::shuffle(replay_order.begin(), replay_order.end(), rng);
      for (int64_t i = 0; i < want; ++i) predictor_rows.Append(replay, replay_order[i]);
    }
    const LearnedCache& in_force = *current->caches[slot];
    auto trained = trainer_->Train(in_force.weights(), predictor_rows, selector_rows,
                                   options_, options_.seed + round, yield);
    if (!trained.ok()) {
      busy_ = false;
      add_busy(slice_start_us);
      return trained.status();
    }
    const bool disabled = hooks_.disabled(slot);
    GateDecision decision = ValidateUpdate(in_force, disabled, std::move(*trained),
                                           selector_rows, holdout, epsilons_[slot],
                                           confidence_);
    const int tap = in_force.weights().tap;
    if (decision.accepted) {
      ++*accepted_[slot];
      spdlog::info("online learner: tap {} update accepted: {}", tap, decision.reason);
      updates.emplace_back(slot, std::move(decision.cache));
    } else {
      ++*rejected_[slot];
      spdlog::info("online learner: tap {} update rejected: {}", tap, decision.reason);
    }
    yield();
  }
  const int installed = static_cast<int>(updates.size());
  if (installed > 0) hooks_.install(std::move(updates));
  add_busy(slice_start_us);
  busy_ = false;
  return installed;
}

}  // namespace gati::runtime
