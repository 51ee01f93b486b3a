// The exact-match front cache: an LRU from input bytes to the answer given,
// for streams that repeat inputs exactly. Keyed by a 64-bit hash of the
// bytes; a hit also compares the bytes, so a hash collision is a miss.
#ifndef GATI_RUNTIME_EXACT_CACHE_H_
#define GATI_RUNTIME_EXACT_CACHE_H_

#include <cstdint>
#include <list>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "absl/base/thread_annotations.h"
#include "gati/engine.h"
#include "runtime/mutex.h"

namespace gati::runtime {

class ExactCache {
 public:
  // Holds entries whose input bytes plus answers sum to <= capacity_bytes.
  explicit ExactCache(int64_t capacity_bytes);

  // The stored answer for exactly these bytes, and marks it most recent;
  // with `need_scores`, only an answer stored with its scores counts.
  // Thread-safe. Counts a hit or a miss.
  std::optional<InferResult> Find(std::string_view bytes, bool need_scores);
  // Stores an answer (evicting the least recent entries to fit); an entry
  // larger than the capacity is not stored. An answer with scores replaces
  // a stored one without. Thread-safe.
  void Insert(std::string_view bytes, const InferResult& result);

  int64_t hits() const;
  int64_t misses() const;
  int64_t bytes() const;

 private:
  struct Entry {
    uint64_t hash;
    std::string bytes;
    InferResult result;
    int64_t size;
  };
  static uint64_t Hash(std::string_view bytes);
  // Drops least recent entries until `bytes_` fits.
  void EvictLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  const int64_t capacity_;
  mutable Mutex mutex_;
  std::list<Entry> lru_ ABSL_GUARDED_BY(mutex_);  // Most recent first.
  std::unordered_multimap<uint64_t, std::list<Entry>::iterator> index_
      ABSL_GUARDED_BY(mutex_);
  int64_t bytes_ ABSL_GUARDED_BY(mutex_) = 0;
  int64_t hits_ ABSL_GUARDED_BY(mutex_) = 0;
  int64_t misses_ ABSL_GUARDED_BY(mutex_) = 0;
};

}  // namespace gati::runtime

#endif  // GATI_RUNTIME_EXACT_CACHE_H_
