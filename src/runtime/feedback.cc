#include "runtime/feedback.h"

#include <algorithm>

#include "cache/kernels.h"

namespace gati::runtime {

int TrainingRows::label(int64_t i) const {
  return cache_internal::ArgMax(logits.data() + i * num_classes, num_classes);
}

void TrainingRows::Append(const TrainingRows& other, int64_t i) {
  features.insert(features.end(), other.features.begin() + i * feature_size,
                  other.features.begin() + (i + 1) * feature_size);
  logits.insert(logits.end(), other.logits.begin() + i * num_classes,
                other.logits.begin() + (i + 1) * num_classes);
  ++count;
}

TrainingRows TrainingRows::Select(const std::vector<int64_t>& indices) const {
  TrainingRows out;
  out.feature_size = feature_size;
  out.num_classes = num_classes;
  out.features.reserve(indices.size() * feature_size);
  out.logits.reserve(indices.size() * num_classes);
  for (int64_t i : indices) out.Append(*this, i);
  return out;
}

FeedbackStore::FeedbackStore(const std::vector<int64_t>& feature_sizes,
                             int num_classes, int64_t memory_bytes,
                             int64_t rows_per_tap)
    : num_classes_(num_classes) {
  const int64_t share =
      feature_sizes.empty() ? 0 : memory_bytes / static_cast<int64_t>(feature_sizes.size());
  for (int64_t size : feature_sizes) {
    auto ring = std::make_unique<Ring>();
    ring->feature_size = size;
    ring->capacity = std::max<int64_t>(
        0, std::min<int64_t>(rows_per_tap, share / RowBytes(*ring)));
    rings_.push_back(std::move(ring));
  }
}

int64_t FeedbackStore::RowBytes(const Ring& ring) const {
  return (ring.feature_size + num_classes_) * static_cast<int64_t>(sizeof(float));
}

void FeedbackStore::Add(int slot, const float* features, const float* logits) {
  Ring& ring = *rings_[slot];
  if (ring.capacity == 0) return;
  MutexLock lock(&ring.mutex);
  if (ring.count < ring.capacity) {
    // Grow until full, then overwrite in place.
    ring.features.insert(ring.features.end(), features, features + ring.feature_size);
    ring.logits.insert(ring.logits.end(), logits, logits + num_classes_);
    ++ring.count;
  } else {
    std::copy_n(features, ring.feature_size,
                ring.features.begin() + ring.next * ring.feature_size);
    std::copy_n(logits, num_classes_, ring.logits.begin() + ring.next * num_classes_);
  }
  ring.next = (ring.next + 1) % ring.capacity;
  ++ring.added;
}

TrainingRows FeedbackStore::Snapshot(int slot) const {
  const Ring& ring = *rings_[slot];
  MutexLock lock(&ring.mutex);
  TrainingRows rows;
  rows.feature_size = ring.feature_size;
  rows.num_classes = num_classes_;
  rows.count = ring.count;
  rows.features.reserve(ring.features.size());
  rows.logits.reserve(ring.logits.size());
  // Oldest first: from `next` when full, from 0 while growing.
  const int64_t start = ring.count == ring.capacity ? ring.next : 0;
  for (int64_t k = 0; k < ring.count; ++k) {
    const int64_t i = (start + k) % std::max<int64_t>(1, ring.count);
    rows.features.insert(rows.features.end(),
                         ring.features.begin() + i * ring.feature_size,
                         ring.features.begin() + (i + 1) * ring.feature_size);
    rows.logits.insert(rows.logits.end(), ring.logits.begin() + i * num_classes_,
                       ring.logits.begin() + (i + 1) * num_classes_);
  }
  return rows;
}

int64_t FeedbackStore::rows(int slot) const {
  MutexLock lock(&rings_[slot]->mutex);
  return rings_[slot]->count;
}

int64_t FeedbackStore::bytes() const {
  int64_t total = 0;
  for (const auto& ring : rings_) {
    MutexLock lock(&ring->mutex);
    total += ring->count * RowBytes(*ring);
  }
  return total;
}

int64_t FeedbackStore::capacity_bytes() const {
  int64_t total = 0;
  for (const auto& ring : rings_) total += ring->capacity * RowBytes(*ring);
  return total;
}

int64_t FeedbackStore::total_added() const {
  int64_t total = 0;
  for (const auto& ring : rings_) {
    MutexLock lock(&ring->mutex);
    total += ring->added;
  }
  return total;
}

}  // namespace gati::runtime
