// The engine's request path allocates nothing of its own per request in
// steady state (issue 14): every allocation during a run of requests is
// counted by replacing the global operator new, and the parallel path,
// with its pooled requests, ring-buffer queues and function-pointer tasks,
// must allocate no more than the model runner itself does (which the
// sequential path, with no request object at all, shows). Not built with
// ThreadSanitizer, whose runtime owns operator new.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <new>

#include "runtime/engine_internal.h"
#include "runtime/runtime_testutil.h"

namespace {
std::atomic<int64_t> allocations{0};
}  // namespace

void* operator new(std::size_t size) {
  allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(size == 0 ? 1 : size)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }

namespace gati {
namespace {

using testing::FakeCacheWeights;
using testing::FakeInputs;
using testing::FakeParts;
using testing::kFakeClasses;

// Allocations per request over 320 requests after a warm-up, in `options`.
// A pool or ring may still grow now and then (when more work than ever
// before is in flight at once), hence kGrowth below: an allocation per
// request would show as 1.
constexpr double kGrowth = 0.05;
double AllocationsPerRequest(const EngineOptions& options, float threshold) {
  std::vector<CacheWeights> caches = {FakeCacheWeights(0, 0, threshold),
                                      FakeCacheWeights(3, 1, threshold),
                                      FakeCacheWeights(6, 2, threshold)};
  auto engine = runtime::CreateEngine(FakeParts(caches), options);
  EXPECT_TRUE(engine.ok()) << engine.status();
  const auto inputs = FakeInputs(64, 3);
  auto run = [&] {
    for (const auto& input : inputs) {
      auto result = (*engine)->Infer(input.data(), kFakeClasses);
      EXPECT_TRUE(result.ok()) << result.status();
    }
    (*engine)->WaitForFeedback();
  };
  for (int i = 0; i < 12; ++i) run();  // Pools, rings and scratch grow.
  const int64_t before = allocations.load();
  for (int i = 0; i < 5; ++i) run();
  return static_cast<double>(allocations.load() - before) / (5.0 * inputs.size());
}

TEST(RequestPathTest, ParallelAllocatesNoMoreThanTheModelRunner) {
  EngineOptions sequential;
  sequential.mode = LookupMode::kSequential;
  sequential.feedback_rate = 0;
  // The runner's allocations when every segment runs (the caches never
  // hit): the most a parallel request may cause, since its worker may run
  // segments past a hit before the hit is known.
  const double runner = AllocationsPerRequest(sequential, testing::kNeverHit);
  EXPECT_GT(runner, 0);  // The fake runner allocates its activations.
  for (float threshold : {testing::kNeverHit, 0.5f}) {
    SCOPED_TRACE(::testing::Message() << "threshold " << threshold);
    for (double inline_us : {0.0, 20.0}) {
      EngineOptions parallel = sequential;
      parallel.mode = LookupMode::kParallel;
      parallel.inline_lookup_us = inline_us;
      EXPECT_LE(AllocationsPerRequest(parallel, threshold), runner + kGrowth)
          << "inline_lookup_us " << inline_us;
    }
  }
}

TEST(RequestPathTest, SampledFeedbackReusesPooledRequests) {
  EngineOptions sequential;
  sequential.mode = LookupMode::kSequential;
  sequential.feedback_rate = 0;
  sequential.feedback_rows_per_tap = 16;  // The rings fill in the warm-up.
  EngineOptions sampled = sequential;
  sampled.feedback_rate = 1.0;
  // Every request sampled and handed to a worker for its feedback rows:
  // beyond the runner's segments (all of them run, as for a miss), no
  // per-request allocation.
  const double base = AllocationsPerRequest(sequential, testing::kNeverHit);
  EXPECT_LE(AllocationsPerRequest(sampled, testing::kNeverHit), base + kGrowth);
}

}  // namespace
}  // namespace gati
