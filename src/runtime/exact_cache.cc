#include "runtime/exact_cache.h"

#include <functional>

namespace gati::runtime {

ExactCache::ExactCache(int64_t capacity_bytes) : capacity_(capacity_bytes) {}

uint64_t ExactCache::Hash(std::string_view bytes) {
  return std::hash<std::string_view>()(bytes);
}

std::optional<InferResult> ExactCache::Find(std::string_view bytes, bool need_scores) {
  const uint64_t hash = Hash(bytes);
  MutexLock lock(&mutex_);
  auto [begin, end] = index_.equal_range(hash);
  for (auto it = begin; it != end; ++it) {
    if (it->second->bytes == bytes &&
        (!need_scores || !it->second->result.scores.empty())) {
      lru_.splice(lru_.begin(), lru_, it->second);
      ++hits_;
      return it->second->result;
    }
  }
  ++misses_;
  return std::nullopt;
}

void ExactCache::Insert(std::string_view bytes, const InferResult& result) {
  const int64_t size = static_cast<int64_t>(bytes.size() + sizeof(Entry) +
                                            result.scores.size() * sizeof(float));
  if (size > capacity_) return;
  const uint64_t hash = Hash(bytes);
  MutexLock lock(&mutex_);
  auto [begin, end] = index_.equal_range(hash);
  for (auto it = begin; it != end; ++it) {
    Entry& stored = *it->second;
    if (stored.bytes != bytes) continue;
    if (!result.scores.empty() && stored.result.scores.empty()) {
      // Keep the richer answer, as the most recent entry.
      lru_.splice(lru_.begin(), lru_, it->second);
      bytes_ += size - stored.size;
      stored.result = result;
      stored.size = size;
      EvictLocked();
    }
    return;
  }
  lru_.push_front(Entry{hash, std::string(bytes), result, size});
  index_.emplace(hash, lru_.begin());
  bytes_ += size;
  EvictLocked();
}

void ExactCache::EvictLocked() {
  // The newest entry fits by itself (Insert checked), so it is never dropped.
  while (bytes_ > capacity_ && lru_.size() > 1) {
    const Entry& victim = lru_.back();
    auto [vb, ve] = index_.equal_range(victim.hash);
    for (auto it = vb; it != ve; ++it) {
      if (&*it->second == &victim) {
        index_.erase(it);
        break;
      }
    }
    bytes_ -= victim.size;
    lru_.pop_back();
  }
}

int64_t ExactCache::hits() const {
  MutexLock lock(&mutex_);
  return hits_;
}
int64_t ExactCache::misses() const {
  MutexLock lock(&mutex_);
  return misses_;
}
int64_t ExactCache::bytes() const {
  MutexLock lock(&mutex_);
  return bytes_;
}

}  // namespace gati::runtime
