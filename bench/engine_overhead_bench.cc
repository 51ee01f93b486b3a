// The engine's own cost per request: Engine::Infer on a fake model whose
// segments copy 4 floats and whose caches are gap:linear on 4 values, so
// that what is timed is the request path itself (validation, feedback
// draw, scheduling, answer) plus a few nanoseconds of "model". Target: at
// most 15 us per request in the default mode (issue 14).
//
//   gati_bench_engine [google benchmark flags]
//
// Arguments: planned taps; the caches never hit, so every request passes
// every tap and is answered by the last segment (the miss path, the most
// engine work per request).
#include <benchmark/benchmark.h>

#include <memory>
#include <vector>

#include "runtime/engine_internal.h"
#include "runtime/runtime_testutil.h"

namespace {

using gati::EngineOptions;
using gati::LookupMode;

std::unique_ptr<gati::Engine> MakeEngine(int taps, LookupMode mode, double feedback_rate,
                                         double inline_lookup_us) {
  std::vector<gati::CacheWeights> caches;
  for (int tap = 0; tap < taps; ++tap) {
    caches.push_back(gati::testing::FakeCacheWeights(tap, 0, gati::testing::kNeverHit));
  }
  EngineOptions options;
  options.mode = mode;
  options.feedback_rate = feedback_rate;
  options.inline_lookup_us = inline_lookup_us;
  return std::move(*gati::runtime::CreateEngine(gati::testing::FakeParts(caches), options));
}

void Run(benchmark::State& state, LookupMode mode, double feedback_rate,
         double inline_lookup_us = EngineOptions{}.inline_lookup_us) {
  auto engine =
      MakeEngine(static_cast<int>(state.range(0)), mode, feedback_rate, inline_lookup_us);
  const std::vector<float> input = {0.1f, 0.7f, 0.2f, 0.3f};
  for (auto _ : state) {
    auto result = engine->Infer(input.data(), static_cast<int64_t>(input.size()));
    benchmark::DoNotOptimize(result);
  }
  engine->WaitForFeedback();
}

void BM_SequentialNoFeedback(benchmark::State& state) {
  Run(state, LookupMode::kSequential, 0);
}
void BM_SequentialDefaultFeedback(benchmark::State& state) {
  Run(state, LookupMode::kSequential, EngineOptions{}.feedback_rate);
}
void BM_ParallelDefaultFeedback(benchmark::State& state) {
  Run(state, LookupMode::kParallel, EngineOptions{}.feedback_rate);
}

// Every lookup handed to the lookup executor, as for a cache whose lookup
// costs more than inline_lookup_us: the handoffs' own price.
void BM_ParallelHandoffEveryLookup(benchmark::State& state) {
  Run(state, LookupMode::kParallel, EngineOptions{}.feedback_rate, 0);
}

BENCHMARK(BM_SequentialNoFeedback)->Arg(0)->Arg(2)->Arg(8);
BENCHMARK(BM_SequentialDefaultFeedback)->Arg(2)->Arg(8);
BENCHMARK(BM_ParallelDefaultFeedback)->Arg(2)->Arg(8)->UseRealTime();
BENCHMARK(BM_ParallelHandoffEveryLookup)->Arg(2)->Arg(8)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
