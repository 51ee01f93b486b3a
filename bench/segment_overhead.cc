// Segment boundary overhead: the whole model frozen and optimized vs. the
// same model cut at 1, 3, 4 taps and at every tap, timed interleaved in one
// process, reported as medians and tails of per-repetition ratios.
//
//   gati_bench_segments models/resnet20.pt models/resnet56.pt
#include <CLI/CLI.hpp>

#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/str_join.h"
#include "gati/model.h"
#include "gati/profile.h"

namespace {

// `count` taps spread evenly over the model's taps.
std::vector<int> EvenTaps(int num_taps, int count) {
  std::vector<int> taps;
  for (int i = 1; i <= count; ++i) {
    int tap = i * num_taps / (count + 1);
    if (taps.empty() || tap > taps.back()) taps.push_back(tap);
  }
  return taps;
}

std::string Describe(const std::vector<int>& taps, int num_taps) {
  if (taps.empty()) return "whole model";
  if (static_cast<int>(taps.size()) == num_taps) return "every tap";
  return std::to_string(taps.size()) + " taps {" + absl::StrJoin(taps, ",") +
         "}";
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Segment boundary overhead of staged models."};
  std::vector<std::string> models;
  int threads = 1;
  gati::ProfileOptions options;
  options.repetitions = 300;
  options.warmup = 30;
  app.add_option("MODELS", models, "staged models")->required();
  app.add_option("--threads", threads, "intra-op threads")
      ->check(CLI::Range(1, 256));
  app.add_option("--repetitions", options.repetitions, "timed repetitions")
      ->check(CLI::Range(1, 1000000));
  app.add_option("--warmup", options.warmup, "untimed repetitions")
      ->check(CLI::Range(0, 1000000));
  CLI11_PARSE(app, argc, argv);

  std::printf("segment overhead: batch 1, intra-op threads %d, %d "
              "interleaved repetitions (order rotated) after %d warm-up\n\n",
              threads, options.repetitions, options.warmup);
  std::printf("| model | cut | p50 ms | p90 ms | p99 ms | ratio p50 | "
              "ratio p90 |\n|---|---|---|---|---|---|---|\n");
  for (const std::string& path : models) {
    gati::ModelOptions model_options;
    model_options.intra_op_threads = threads;
    auto model = gati::StagedModel::Load(path, model_options);
    if (!model.ok()) {
      std::fprintf(stderr, "gati_bench_segments: %s\n",
                   model.status().ToString().c_str());
      return 1;
    }
    const int taps = (*model)->num_taps();
    std::vector<int> all(taps);
    for (int t = 0; t < taps; ++t) all[t] = t;
    std::vector<std::vector<int>> cut_sets = {
        {}, EvenTaps(taps, 1), EvenTaps(taps, 3), EvenTaps(taps, 4), all};
    auto timings = gati::CompareCutSets(**model, cut_sets, options);
    if (!timings.ok()) {
      std::fprintf(stderr, "gati_bench_segments: %s\n",
                   timings.status().ToString().c_str());
      return 1;
    }
    for (const gati::CutSetTiming& timing : *timings) {
      std::printf("| %s | %s | %.3f | %.3f | %.3f | %.3f | %.3f |\n",
                  (*model)->metadata().name.c_str(),
                  Describe(timing.cut_taps, taps).c_str(), timing.p50_ms,
                  timing.p90_ms, timing.p99_ms, timing.ratio_p50,
                  timing.ratio_p90);
    }
    std::fflush(stdout);
  }
  return 0;
}
