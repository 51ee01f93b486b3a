// Per-request lookup cost of every default predictor variant at batch 1 on
// one thread (features of one activation -> predictor -> selector -> hit or
// miss), at every distinct tap shape of a staged model, next to the latency
// of the stages those taps follow; and the feature extraction alone.
//
//   gati_bench_lookup [--model models/resnet56.pt] [google benchmark flags]
//
// Counters: stage_us = fastest p50 of a stage whose output has this shape
// (frozen alone, batch 1, one thread), stage_ratio = lookup time over it
// (target < 0.10; the stricter case, since slower stages give lower ratios).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "cache/cache_testutil.h"
#include "gati/cache.h"
#include "gati/model.h"
#include "gati/profile.h"

namespace {

using gati::ActivationShape;

// Lookup cost does not depend on the weights' values (no data-dependent
// branches but the ReLU-zero skip, which random weights exercise too).
std::unique_ptr<gati::LearnedCache> MakeCache(const std::string& spec,
                                              const ActivationShape& shape,
                                              int num_classes) {
  return std::move(*gati::LearnedCache::Create(
      gati::testing::RandomCacheWeights(spec, 0, shape, num_classes, 7)));
}

}  // namespace

int main(int argc, char** argv) {
  std::string model_path = "models/resnet56.pt";
  std::vector<char*> rest = {argv[0]};
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--model") == 0 && i + 1 < argc) {
      model_path = argv[++i];
    } else {
      rest.push_back(argv[i]);
    }
  }
  auto model = gati::StagedModel::Load(model_path, {.intra_op_threads = 1});
  if (!model.ok()) {
    std::fprintf(stderr, "gati_bench_lookup: %s\n", model.status().ToString().c_str());
    return 1;
  }
  gati::ProfileOptions profile_options;
  profile_options.repetitions = 100;
  auto profile = gati::ProfileModel(**model, profile_options);
  if (!profile.ok()) {
    std::fprintf(stderr, "gati_bench_lookup: %s\n", profile.status().ToString().c_str());
    return 1;
  }
  // Distinct tap shapes and the fastest stage producing each.
  std::map<std::string, std::pair<ActivationShape, double>> shapes;
  for (int tap = 0; tap < (*model)->num_taps(); ++tap) {
    const std::vector<int64_t>& s = (*model)->stage_output_shape(tap);
    if (s.size() != 4) continue;
    ActivationShape shape{s[1], s[2], s[3]};
    std::string name = gati::ActivationShapeToString(shape);
    double stage_ms = profile->stages[tap].p50_ms;
    auto found = shapes.find(name);
    if (found == shapes.end()) {
      shapes[name] = {shape, stage_ms};
    } else {
      found->second.second = std::min(found->second.second, stage_ms);
    }
  }
  std::printf("model %s, intra-op threads %d, whole model p50 %.3f ms\n",
              model_path.c_str(), gati::GetIntraOpThreads(), profile->whole_p50_ms);
  const int num_classes = (*model)->num_classes();
  for (const std::string& spec : gati::DefaultVariantSpecs()) {
    for (const auto& [name, entry] : shapes) {
      const ActivationShape shape = entry.first;
      const double stage_seconds = entry.second / 1e3;
      benchmark::RegisterBenchmark(
          ("Lookup/" + spec + "/" + name).c_str(),
          [spec, shape, stage_seconds, num_classes](benchmark::State& state) {
            auto cache = MakeCache(spec, shape, num_classes);
            std::vector<float> activation = gati::testing::RandomActivation(shape, 3);
            for (auto _ : state) {
              gati::LookupResult result = cache->Lookup(activation.data());
              benchmark::DoNotOptimize(result);
            }
            state.counters["stage_us"] = stage_seconds * 1e6;
            state.counters["stage_ratio"] = benchmark::Counter(
                stage_seconds,
                benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
            state.counters["bytes"] = static_cast<double>(cache->memory_bytes());
          })
          ->Unit(benchmark::kMicrosecond)
          ->Repetitions(5)
          ->ReportAggregatesOnly(true);
      // What the online learner keeps per request: the pooled features (for
      // conv variants, whose convolution is trained, the activation itself).
      benchmark::RegisterBenchmark(
          ("Features/" + spec + "/" + name).c_str(),
          [spec, shape, num_classes](benchmark::State& state) {
            auto cache = MakeCache(spec, shape, num_classes);
            std::vector<float> activation = gati::testing::RandomActivation(shape, 3);
            std::vector<float> features(cache->training_input_size());
            for (auto _ : state) {
              cache->ExtractTrainingInput(activation.data(), features.data());
              benchmark::DoNotOptimize(features.data());
            }
            state.counters["floats"] = static_cast<double>(features.size());
          })
          ->Unit(benchmark::kMicrosecond)
          ->Repetitions(5)
          ->ReportAggregatesOnly(true);
    }
  }
  int rest_argc = static_cast<int>(rest.size());
  benchmark::Initialize(&rest_argc, rest.data());
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
