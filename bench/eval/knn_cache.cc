#include "knn_cache.h"

#include <faiss/IndexFlat.h>

#include <cstring>
#include <limits>

namespace gati::eval {

KnnCache::KnnCache(int dim, int64_t capacity)
    : dim_(dim), capacity_(capacity), index_(std::make_unique<faiss::IndexFlatL2>(dim)) {
  labels_.reserve(capacity);
}

KnnCache::~KnnCache() = default;

int64_t KnnCache::size() const { return index_->ntotal; }

Neighbour KnnCache::Nearest(const float* features) const {
  Neighbour out;
  if (index_->ntotal == 0) return out;
  float distance = 0;
  faiss::Index::idx_t id = -1;
  index_->search(1, features, 1, &distance, &id);
  if (id < 0) return out;
  out.distance = distance;
  out.label = labels_[id];
  return out;
}

void KnnCache::Insert(const float* features, int label) {
  if (index_->ntotal < capacity_) {
    index_->add(1, features);
    labels_.push_back(label);
    return;
  }
  // Full: overwrite the oldest row in place (a flat index is its vectors).
  std::memcpy(index_->get_xb() + next_ * dim_, features, sizeof(float) * dim_);
  labels_[next_] = label;
  next_ = (next_ + 1) % capacity_;
}

KnnPass SimulateKnn(const std::vector<float>& features, const std::vector<int>& base_labels,
                    int dim, int64_t capacity, float threshold) {
  KnnCache cache(dim, capacity);
  KnnPass pass;
  for (size_t i = 0; i < base_labels.size(); ++i) {
    const float* f = features.data() + i * dim;
    const Neighbour nearest = cache.Nearest(f);
    if (nearest.label >= 0) {
      ++pass.lookups;
      const bool agrees = nearest.label == base_labels[i];
      pass.scores.push_back(-nearest.distance);
      pass.agrees.push_back(agrees);
      if (nearest.distance <= threshold) {
        ++pass.hits;
        pass.false_hits += !agrees;
        continue;  // Answered: the base class is not learned.
      }
    }
    cache.Insert(f, base_labels[i]);
  }
  return pass;
}

}  // namespace gati::eval
