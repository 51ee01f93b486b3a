#include "serve/batcher.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace gati::serve {

namespace {

constexpr int kMostRows = 4096;
constexpr int64_t kMostDelayUs = 10'000'000;  // 10 s.

}  // namespace

absl::Status ValidateBatching(const BatchingOptions& options) {
  if (options.max_batch_size < 0 || options.max_batch_size > kMostRows) {
    return absl::InvalidArgumentError(absl::StrCat("max_batch_size must be in 0..", kMostRows,
                                                   "; got ", options.max_batch_size));
  }
  int previous = 0;
  for (int size : options.preferred_batch_sizes) {
    if (size < 1 || size > options.max_batch_size) {
      return absl::InvalidArgumentError(
          absl::StrCat("preferred_batch_size ", size, " is not in 1..max_batch_size (",
                       options.max_batch_size, ")"));
    }
    if (size <= previous) {
      return absl::InvalidArgumentError("preferred_batch_size must be ascending, without repeats");
    }
    previous = size;
  }
  if (options.max_queue_delay_us < 0 || options.max_queue_delay_us > kMostDelayUs) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_queue_delay_microseconds must be in 0..", kMostDelayUs, "; got ",
                     options.max_queue_delay_us));
  }
  if (options.busy_delay_us < 0 || options.busy_delay_us > kMostDelayUs) {
    return absl::InvalidArgumentError(absl::StrCat("the busy delay must be in 0..",
                                                   kMostDelayUs, " us; got ",
                                                   options.busy_delay_us));
  }
  if (options.max_concurrent < 1) {
    return absl::InvalidArgumentError("at least one batch must be allowed to compute");
  }
  return absl::OkStatus();
}

absl::StatusOr<BatchingOptions> ParseBatchingConfig(const std::string& text,
                                                    const BatchingOptions& defaults,
                                                    const std::string& where) {
  using nlohmann::json;
  auto bad = [&](const std::string& why) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": ", why));
  };
  json config;
  try {
    config = json::parse(text);
  } catch (const json::exception& e) {
    return bad(absl::StrCat("not JSON (", e.what(), ")"));
  }
  if (!config.is_object()) return bad("the model config must be a JSON object");
  auto integer = [&](const json& value, const std::string& field, int64_t lo, int64_t hi,
                     int64_t* out) -> absl::Status {
    if (!value.is_number_integer() || value.get<int64_t>() < lo || value.get<int64_t>() > hi) {
      return bad(absl::StrCat(field, " must be an integer in ", lo, "..", hi, "; got ",
                              value.dump()));
    }
    *out = value.get<int64_t>();
    return absl::OkStatus();
  };
  // A config.json speaks for the model: what it omits takes Triton's
  // defaults (no batching, no preferred size, no delay), not the server
  // flags'; the busy delay and the slots stay the server's.
  BatchingOptions options;
  options.busy_delay_us = defaults.busy_delay_us;
  options.max_concurrent = defaults.max_concurrent;
  int64_t value = 0;
  if (config.contains("max_batch_size")) {
    GATI_RETURN_IF_ERROR(integer(config["max_batch_size"], "max_batch_size", 0, kMostRows, &value));
    options.max_batch_size = static_cast<int>(value);
  }
  if (!config.contains("dynamic_batching")) {
    // Triton batches dynamically only where the config asks for it.
    options.dynamic = false;
    options.preferred_batch_sizes.clear();
    options.max_queue_delay_us = 0;
    GATI_RETURN_IF_ERROR(ValidateBatching(options));
    return options;
  }
  const json& dynamic = config["dynamic_batching"];
  if (!dynamic.is_object()) return bad("dynamic_batching must be an object");
  if (options.max_batch_size < 1) {
    return bad("dynamic_batching needs a max_batch_size of at least 1");
  }
  options.dynamic = true;
  for (const auto& [key, field] : dynamic.items()) {
    if (key == "preferred_batch_size") {
      if (!field.is_array()) return bad("dynamic_batching.preferred_batch_size must be a list");
      options.preferred_batch_sizes.clear();
      for (const json& size : field) {
        GATI_RETURN_IF_ERROR(integer(size, "dynamic_batching.preferred_batch_size", 1,
                                     kMostRows, &value));
        options.preferred_batch_sizes.push_back(static_cast<int>(value));
      }
      std::sort(options.preferred_batch_sizes.begin(), options.preferred_batch_sizes.end());
    } else if (key == "max_queue_delay_microseconds") {
      GATI_RETURN_IF_ERROR(integer(field, "dynamic_batching.max_queue_delay_microseconds", 0,
                                   kMostDelayUs, &options.max_queue_delay_us));
    } else {
      return bad(absl::StrCat("dynamic_batching.", key,
                              " is not supported (preferred_batch_size and "
                              "max_queue_delay_microseconds are)"));
    }
  }
  absl::Status valid = ValidateBatching(options);
  if (!valid.ok()) return bad(std::string(valid.message()));
  return options;
}

namespace {

int64_t InputSize(const Engine& engine) {
  int64_t size = 1;
  for (int64_t d : engine.input_shape()) size *= d;
  return size;
}

}  // namespace

Batcher::Batcher(Engine* engine, BatchingOptions options, std::atomic<int64_t>* executions)
    : engine_(engine),
      options_(std::move(options)),
      input_size_(InputSize(*engine)),
      executions_(executions) {}

bool Batcher::DueLocked(Clock::time_point now, Clock::time_point* due) const {
  if (queue_.empty()) return false;
  if (queued_rows_ >= options_.max_batch_size) return true;
  for (int size : options_.preferred_batch_sizes) {
    if (queued_rows_ >= size) return true;
  }
  // Triton's delay; and, while another batch computes, gati's busy delay.
  const int64_t wait_us =
      computing_ > 0 ? std::max(options_.max_queue_delay_us, options_.busy_delay_us)
                     : options_.max_queue_delay_us;
  *due = queue_.front()->enqueued + std::chrono::microseconds(wait_us);
  return now >= *due;
}

std::vector<Batcher::Pending*> Batcher::TakeLocked() {
  // The batch's size: max_batch_size, or the largest preferred size that
  // the queued rows reach when they do not reach max_batch_size.
  int64_t limit = options_.max_batch_size;
  if (queued_rows_ < limit) {
    for (int size : options_.preferred_batch_sizes) {
      if (queued_rows_ >= size) limit = size;
    }
    if (limit == options_.max_batch_size) limit = queued_rows_;
  }
  std::vector<Pending*> batch;
  int64_t rows = 0;
  while (!queue_.empty()) {
    Pending* next = queue_.front();
    if (!batch.empty() && rows + next->n > limit) break;
    batch.push_back(next);
    next->taken = true;
    next->started = Clock::now();
    next->results.resize(next->n);
    rows += next->n;
    queue_.pop_front();
    queued_rows_ -= next->n;
    if (rows >= limit) break;
  }
  return batch;
}

void Batcher::Execute(const std::vector<Pending*>& batch) {
  std::vector<const float*> rows;
  // Per row of the batch: its member and its index there.
  std::vector<std::pair<size_t, int64_t>> owner;
  bool want_scores = false;
  for (size_t k = 0; k < batch.size(); ++k) {
    const Pending& pending = *batch[k];
    rows.insert(rows.end(), pending.rows, pending.rows + pending.n);
    for (int64_t i = 0; i < pending.n; ++i) owner.emplace_back(k, i);
    want_scores = want_scores || pending.want_scores;
  }
  // Under mu_: rows not yet handed to each member, and which rows were.
  std::vector<int64_t> left;
  for (const Pending* pending : batch) left.push_back(pending->n);
  std::vector<char> delivered(rows.size(), 0);
  // A member whose rows are all in is answered at once, while the batch's
  // later segments still run; it may then return and free its Pending and
  // its rows, so nothing here touches it again.
  auto deliver = [&](int64_t row, absl::StatusOr<InferResult> result)
                     ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (row < 0 || row >= static_cast<int64_t>(rows.size()) || delivered[row]) return;
    delivered[row] = 1;
    const auto [k, index] = owner[row];
    Pending* pending = batch[k];
    if (result.ok() && !pending->want_scores) result->scores.clear();
    pending->results[index] = std::move(result);
    if (--left[k] == 0) {
      pending->done = true;
      pending->wake.notify_one();
    }
  };
  // Counted before any member can be answered (and read them).
  batches_.fetch_add(1, std::memory_order_relaxed);
  if (executions_ != nullptr) executions_->fetch_add(1, std::memory_order_relaxed);
  batched_rows_.fetch_add(static_cast<int64_t>(rows.size()), std::memory_order_relaxed);
  std::vector<absl::StatusOr<InferResult>> results = engine_->InferBatch(
      rows.data(), static_cast<int64_t>(rows.size()), input_size_, {want_scores},
      [&](int64_t row, const absl::StatusOr<InferResult>& result) {
        absl::StatusOr<InferResult> copy = result;  // Copied before the lock.
        runtime::MutexLock lock(&mu_);
        deliver(row, std::move(copy));
      });
  // Rows an engine did not hand over one by one.
  runtime::MutexLock lock(&mu_);
  for (size_t row = 0; row < rows.size(); ++row) {
    if (!delivered[row]) {
      deliver(static_cast<int64_t>(row),
              row < results.size() ? std::move(results[row])
                                   : absl::InternalError("the engine gave no answer"));
    }
  }
}

void Batcher::WakeHeadLocked() {
  if (!queue_.empty()) queue_.front()->wake.notify_one();
}

std::vector<absl::StatusOr<InferResult>> Batcher::Run(const float* const* rows, int64_t n,
                                                      int64_t count, bool want_scores,
                                                      double* waited_us) {
  if (waited_us != nullptr) *waited_us = 0;
  if (n <= 0) return {};
  if (count != input_size_) {
    // Rows of another size would fail, or be read past their end, in a
    // batch shared with other clients.
    return std::vector<absl::StatusOr<InferResult>>(
        n, absl::InvalidArgumentError(absl::StrCat("input has ", count,
                                                   " values per sample; the model takes ",
                                                   input_size_)));
  }
  Pending self;
  self.rows = rows;
  self.n = n;
  self.count = count;
  self.want_scores = want_scores;
  runtime::MutexLock lock(&mu_);
  self.enqueued = Clock::now();
  queue_.push_back(&self);
  queued_rows_ += n;
  WakeHeadLocked();  // More rows may make the head's batch due.
  for (;;) {
    if (self.done) {
      if (waited_us != nullptr) {
        *waited_us = std::max(
            0.0, std::chrono::duration<double, std::micro>(self.started - self.enqueued).count());
      }
      return std::move(self.results);
    }
    // Only the owner of the queue's head runs the next batch (its own
    // request first in it); everyone else waits to be answered or to
    // become the head.
    Clock::time_point due = Clock::time_point::max();
    const bool head = !self.taken && queue_.front() == &self;
    const bool free_slot = computing_ < options_.max_concurrent;
    if (head && free_slot && DueLocked(Clock::now(), &due)) {
      std::vector<Pending*> batch = TakeLocked();
      ++computing_;
      WakeHeadLocked();  // The next head may run in another free slot.
      mu_.Unlock();
      Execute(batch);  // Answers every member (and may free them).
      mu_.Lock();
      --computing_;
      WakeHeadLocked();  // A slot is free.
      continue;
    }
    if (head && free_slot && due != Clock::time_point::max()) {
      mu_.WaitOnceUntil(self.wake, due);
    } else {
      mu_.WaitOnce(self.wake);
    }
  }
}

}  // namespace gati::serve
