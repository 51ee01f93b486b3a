// Feedback rows: per request and planned tap, the cache's training input
// (LearnedCache::ExtractTrainingInput), the base model's class and logits.
// Held in one bounded ring buffer per tap; the oldest row is overwritten.
#ifndef GATI_RUNTIME_FEEDBACK_H_
#define GATI_RUNTIME_FEEDBACK_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "runtime/mutex.h"
#include "runtime/training_rows.h"

namespace gati::runtime {

class FeedbackStore {
 public:
  // One ring per entry of `feature_sizes` (floats per row's features).
  // Each ring holds at most `rows_per_tap` rows and an equal share of
  // `memory_bytes`; a ring whose share fits no row holds none.
  FeedbackStore(const std::vector<int64_t>& feature_sizes, int num_classes,
                int64_t memory_bytes, int64_t rows_per_tap);

  // Appends a row to ring `slot`; thread-safe. `features` has the slot's
  // feature size, `logits` num_classes values.
  void Add(int slot, const float* features, const float* logits);

  // A copy of ring `slot`'s rows, oldest first; thread-safe.
  TrainingRows Snapshot(int slot) const;

  int num_slots() const { return static_cast<int>(rings_.size()); }
  int64_t rows(int slot) const;
  int64_t capacity_rows(int slot) const { return rings_[slot]->capacity; }
  // Bytes held now / at most, over all rings.
  int64_t bytes() const;
  int64_t capacity_bytes() const;
  // Rows added since construction (including overwritten ones).
  int64_t total_added() const;

 private:
  struct Ring {
    int64_t feature_size = 0;
    int64_t capacity = 0;
    mutable Mutex mutex;
    std::vector<float> features ABSL_GUARDED_BY(mutex);
    std::vector<float> logits ABSL_GUARDED_BY(mutex);
    int64_t next ABSL_GUARDED_BY(mutex) = 0;   // Slot the next row goes to.
    int64_t count ABSL_GUARDED_BY(mutex) = 0;  // Rows held.
    int64_t added ABSL_GUARDED_BY(mutex) = 0;
  };
  int64_t RowBytes(const Ring& ring) const;
  int num_classes_;
  std::vector<std::unique_ptr<Ring>> rings_;
};

}  // namespace gati::runtime

#endif  // GATI_RUNTIME_FEEDBACK_H_
