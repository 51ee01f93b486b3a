// The "traditional cache" baseline of the evaluation suite: a k-nearest-
// neighbour cache (k = 1) over pooled features of past requests, in the
// manner of Freeze Inference, on a FAISS flat L2 index. It holds the
// features and the base model's class of the last `capacity` requests it
// learned (a ring); a request whose nearest stored neighbour lies within a
// squared distance threshold is answered with that neighbour's class.
// Not thread-safe; callers serialize.
#ifndef GATI_BENCH_EVAL_KNN_CACHE_H_
#define GATI_BENCH_EVAL_KNN_CACHE_H_

#include <cstdint>
#include <memory>
#include <vector>

namespace faiss {
struct IndexFlatL2;
}  // namespace faiss

namespace gati::eval {

struct Neighbour {
  float distance = 0;  // Squared L2.
  int label = -1;      // -1: the cache is empty.
};

class KnnCache {
 public:
  // REQUIRES: dim >= 1, capacity >= 1.
  KnnCache(int dim, int64_t capacity);
  ~KnnCache();

  Neighbour Nearest(const float* features) const;
  // Stores `features` with `label`, replacing the oldest entry when full.
  void Insert(const float* features, int label);

  int dim() const { return dim_; }
  int64_t capacity() const { return capacity_; }
  int64_t size() const;
  // Bytes of the full ring: features and labels.
  int64_t memory_bytes() const { return MemoryBytes(dim_, capacity_); }
  static int64_t MemoryBytes(int dim, int64_t capacity) { return capacity * (dim * 4 + 4); }

 private:
  int dim_;
  int64_t capacity_;
  std::unique_ptr<faiss::IndexFlatL2> index_;
  std::vector<int> labels_;
  int64_t next_ = 0;  // Ring position of the next insert once full.
};

// One simulated online pass: for each request in order, the nearest stored
// neighbour (when the cache is not empty) is compared with `threshold`; a
// hit answers, a miss learns the request's base class. `features` holds
// count x dim values.
struct KnnPass {
  int64_t lookups = 0;  // Requests that found a neighbour.
  int64_t hits = 0;
  int64_t false_hits = 0;
  // Per lookup: minus the distance (higher = closer) and whether the
  // neighbour's class was the base model's.
  std::vector<float> scores;
  std::vector<bool> agrees;
};
KnnPass SimulateKnn(const std::vector<float>& features, const std::vector<int>& base_labels,
                    int dim, int64_t capacity, float threshold);

}  // namespace gati::eval

#endif  // GATI_BENCH_EVAL_KNN_CACHE_H_
