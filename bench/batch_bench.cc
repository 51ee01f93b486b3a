// Per-row cost of Engine::InferBatch by batch size on a bundle, for gati
// (the caches, rows leaving the batch as they hit) and for the base model
// alone (use_caches = false): the engine-side view of dynamic batching,
// without HTTP. Inputs are the bundle's replay sample (build-time
// inputs: hit shares run above a test trace's), rotated.
//
//   gati_bench_batch BUNDLE [--sizes 1,4,16,32] [--rows 1024] [--threads 1]
//                           [--feedback-rate 0.05]
//
// Prints per size and side the mean microseconds per row and the share of
// rows answered by a cache; the sides alternate per size.
#include <CLI/CLI.hpp>

#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "gati/bundle.h"
#include "gati/engine.h"

namespace {

double Now() {
  return std::chrono::duration<double, std::micro>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app("Engine::InferBatch per-row cost by batch size");
  std::string bundle_dir, sizes_text = "1,4,16,32";
  int64_t rows = 1024;
  int threads = 1;
  double feedback_rate = gati::EngineOptions{}.feedback_rate;
  app.add_option("bundle", bundle_dir)->required();
  app.add_option("--feedback-rate", feedback_rate, "gati's feedback sampling rate")
      ->check(CLI::Range(0.0, 1.0));
  app.add_option("--sizes", sizes_text);
  app.add_option("--rows", rows)->check(CLI::Range(int64_t{16}, int64_t{1} << 20));
  app.add_option("--threads", threads)->check(CLI::Range(1, 64));
  CLI11_PARSE(app, argc, argv);
  std::vector<int> sizes;
  for (absl::string_view part : absl::StrSplit(sizes_text, ',')) {
    int size = 0;
    if (!absl::SimpleAtoi(part, &size) || size < 1 || size > 4096) {
      std::fprintf(stderr, "--sizes: '%s' is not a batch size\n", std::string(part).c_str());
      return 2;
    }
    sizes.push_back(size);
  }
  auto bundle = gati::Bundle::Load(bundle_dir);
  if (!bundle.ok()) {
    std::fprintf(stderr, "%s\n", bundle.status().ToString().c_str());
    return 1;
  }
  const gati::ReplaySample& sample = (*bundle)->replay();
  if (sample.count == 0) {
    std::fprintf(stderr, "%s has no replay sample\n", bundle_dir.c_str());
    return 1;
  }
  const int64_t count = sample.count;
  const int64_t size = static_cast<int64_t>(sample.inputs.size()) / count;
  std::vector<std::unique_ptr<gati::Engine>> engines;
  for (bool caches : {true, false}) {
    gati::EngineOptions options;
    options.intra_op_threads = threads;
    options.use_caches = caches;
    options.feedback_rate = feedback_rate;
    options.mode = gati::LookupMode::kSequential;
    auto engine = gati::Engine::Create(bundle_dir, options);
    if (!engine.ok()) {
      std::fprintf(stderr, "%s\n", engine.status().ToString().c_str());
      return 1;
    }
    engines.push_back(std::move(*engine));
  }
  const gati::BundleManifest& manifest = (*bundle)->manifest();
  if (manifest.has_plan && !manifest.plan.caches.empty()) {
    // The planner's figures for the batch size the plan was made for, to
    // hold against the measured row of that size.
    const gati::StoredPlan& plan = manifest.plan;
    const std::string made_for =
        plan.batch > 1 ? "batches of " + std::to_string(plan.batch) : "single requests";
    std::printf("plan for %s: predicted %.1f us/row, base %.1f us/row (%.2fx)\n",
                made_for.c_str(), 1000 * plan.mean_ms, 1000 * plan.base_ms,
                plan.base_ms / plan.mean_ms);
  }
  std::printf("%-6s %14s %14s %10s %10s\n", "batch", "gati us/row", "base us/row", "base/gati",
              "hit share");
  for (int batch : sizes) {
    double spent[2] = {0, 0};
    int64_t hits = 0;
    for (int side = 0; side < 2; ++side) {
      gati::Engine& engine = *engines[side];
      std::vector<const float*> pointers(batch);
      // Warm-up at this size, then the timed rows.
      for (int pass = 0; pass < 2; ++pass) {
        const double start = Now();
        for (int64_t done = 0; done < rows; done += batch) {
          for (int i = 0; i < batch; ++i) {
            pointers[i] = sample.inputs.data() + ((done + i) % count) * size;
          }
          auto results = engine.InferBatch(pointers.data(), batch, size);
          engine.WaitForFeedback();  // Feedback's CPU counts: it is the engine's.
          if (pass == 1 && side == 0) {
            for (const auto& result : results) hits += result.ok() && result->cache_hit;
          }
        }
        if (pass == 1) spent[side] = (Now() - start) / rows;
      }
    }
    std::printf("%-6d %14.1f %14.1f %9.2fx %10.2f\n", batch, spent[0], spent[1],
                spent[1] / spent[0], static_cast<double>(hits) / rows);
  }
  return 0;
}
