// `gati build`: train, calibrate and profile learned caches for a model and
// write them as a bundle.
#include <CLI/CLI.hpp>

#include <chrono>
#include <cstdio>
#include <map>
#include <memory>
#include <string>

#include "absl/strings/str_split.h"
#include "gati/build.h"
#include "cli/commands.h"
#include "cli/progress_bar.h"
#include "data/dataset.h"
#include "data/fashion_mnist.h"
#include "gati/model.h"
#include "plan/bundle_plan.h"
#include "runtime/mode_timing.h"

namespace gati::cli {
namespace {

struct BuildFlags {
  BuildOptions options;
  std::string data = "fashion-mnist";
  std::string labels;
  std::string out;
  std::string taps = "all";
  std::string variants;
  int64_t limit = 0;
  std::string memory_budget = "4MB";
  double plan_epsilon = 0;  // 0: the same as --epsilon.
  std::string mode = "sequential";
  int max_taps = 0;
  double tail_budget = 1.05;
  bool no_plan = false;
  int plan_batch = 1;
};

int Fail(const absl::Status& status) {
  std::fprintf(stderr, "gati build: %s\n", status.ToString().c_str());
  return kExitError;
}

// One table: rows = taps, columns = variants, cells from `cell`.
template <typename Cell>
void PrintTable(const BundleManifest& manifest, const char* title, Cell cell) {
  std::vector<std::string> variants;
  std::map<int, std::map<std::string, const CacheEntry*>> rows;
  for (const CacheEntry& entry : manifest.caches) {
    if (std::find(variants.begin(), variants.end(), entry.variant) == variants.end()) {
      variants.push_back(entry.variant);
    }
    rows[entry.tap][entry.variant] = &entry;
  }
  std::printf("\n%s\n%5s", title, "tap");
  for (const std::string& v : variants) std::printf(" %23s", v.c_str());
  std::printf("\n");
  for (const auto& [tap, by_variant] : rows) {
    std::printf("%5d", tap);
    for (const std::string& v : variants) {
      auto found = by_variant.find(v);
      std::printf(" %23s",
                  found == by_variant.end() ? "-" : cell(*found->second).c_str());
    }
    std::printf("\n");
  }
}

std::string Format(const char* format, double value) {
  char text[64];
  std::snprintf(text, sizeof(text), format, value);
  return text;
}

int RunBuild(BuildFlags& flags) {
  BuildOptions& options = flags.options;
  auto taps = ParseTapList(flags.taps);
  if (!taps.ok()) return Fail(taps.status());
  options.taps = *taps;
  if (!flags.variants.empty()) {
    options.variants = absl::StrSplit(flags.variants, ',');
  }
  // Epsilon, variants and taps are validated by BuildBundle (and epsilon by
  // MakePlanOptions), with the same messages.
  options.plan = !flags.no_plan;
  auto plan_options = MakePlanOptions(
      flags.memory_budget, flags.plan_epsilon > 0 ? flags.plan_epsilon : options.epsilon,
      flags.mode, flags.max_taps, flags.tail_budget);
  if (!plan_options.ok()) return Fail(plan_options.status());
  options.plan_options = *plan_options;
  if (flags.plan_batch > 1 && flags.no_plan) {
    return Fail(absl::InvalidArgumentError("--plan-batch plans; it cannot be used with --no-plan"));
  }
  if (flags.plan_batch > 1 && options.plan_options.mode == LookupMode::kParallel) {
    return Fail(absl::InvalidArgumentError(
        "--plan-batch prices lookups as a batch runs them, between its segments (sequential); "
        "it cannot be used with --mode parallel"));
  }
  // The model's input shape and resize rule say how an image folder is read.
  auto model = StagedModel::Load(options.model_path);
  if (!model.ok()) return Fail(model.status());
  auto source = OpenDataSource(flags.data, flags.labels, Split::kValidation,
                               &(*model)->metadata());
  if (!source.ok()) return Fail(source.status());
  std::unique_ptr<Dataset> data = FirstSamples(**source, flags.limit);
  options.data_description = data->description();

  std::unique_ptr<ProgressBar> bar;
  std::string bar_step;
  auto progress = [&](const std::string& step, int64_t done, int64_t total) {
    if (step != bar_step) {
      if (bar) bar->Finish();
      bar = std::make_unique<ProgressBar>(step, total);
      bar_step = step;
    }
    bar->Update(done);
  };
  // Parallel mode's cost is calibrated on the engine itself, as served
  // (one intra-op thread).
  options.time_modes = [](const std::string& dir, const float* inputs, int64_t count) {
    return runtime::TimeModes(dir, inputs, count, /*intra_op_threads=*/1);
  };
  auto start = std::chrono::steady_clock::now();
  auto report = BuildBundle(options, *data, flags.out, progress);
  if (bar) bar->Finish();
  if (!report.ok()) return Fail(report.status());
  if (flags.plan_batch > 1) {
    // The plan for single requests is replaced by one for batches.
    auto written = PlanBundleForBatch(flags.out, options.plan_options, flags.plan_batch,
                                      options.profile_repetitions);
    if (!written.ok()) return Fail(written.status());
    report->manifest = *written;
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  const BundleManifest& manifest = report->manifest;
  std::printf("bundle %s: %zu caches at %s, epsilon %g\n", flags.out.c_str(),
              manifest.caches.size(), flags.taps.c_str(), options.epsilon);
  std::printf("samples %lld: predictor-train %lld, selector-train %lld, "
              "calibration %lld; feature bank %.1f MB in memory\n",
              static_cast<long long>(report->images),
              static_cast<long long>(report->predictor_train),
              static_cast<long long>(report->selector_train),
              static_cast<long long>(report->calibration),
              report->feature_bank_bytes / 1e6);
  PrintTable(manifest, "predictor agreement with the base model (calibration split)",
             [](const CacheEntry& e) { return Format("%.4f", e.metrics.agreement); });
  PrintTable(manifest, "hit rate at the calibrated threshold (calibration split)",
             [](const CacheEntry& e) {
               return e.enabled ? Format("%.4f", e.metrics.hit_rate) : std::string("off");
             });
  PrintTable(manifest, "lookup us (median, batch 1, one thread)",
             [](const CacheEntry& e) { return Format("%.1f", e.metrics.lookup_us); });
  PrintTable(manifest, "cache bytes", [](const CacheEntry& e) {
    return std::to_string(e.metrics.memory_bytes);
  });
  std::printf("\n%5s %23s %10s %9s %10s %10s %6s\n", "tap", "variant", "threshold",
              "hit rate", "false hit", "95% bound", "hits");
  for (const CacheEntry& e : manifest.caches) {
    const CacheMetrics& m = e.metrics;
    if (!e.enabled) {
      std::printf("%5d %23s %10s %9s %10s %10s %6s\n", e.tap, e.variant.c_str(),
                  "off", "0", "-", "-", "0");
      continue;
    }
    std::printf("%5d %23s %10.6f %9.4f %10.4f %10.4f %6lld\n", e.tap,
                e.variant.c_str(), e.threshold, m.hit_rate, m.false_hit_rate,
                m.false_hit_upper_bound, static_cast<long long>(m.hits));
  }
  int kept = 0;
  double selector_auroc = 0, top_auroc = 0;
  for (const CacheEntry& e : manifest.caches) {
    kept += e.metrics.selector == "learned";
    selector_auroc += e.metrics.selector_auroc;
    top_auroc += e.metrics.max_softmax_auroc;
  }
  if (!manifest.caches.empty()) {
    const double n = static_cast<double>(manifest.caches.size());
    std::printf("\nselectors: the trained one kept at %d of %zu caches (it beat the top softmax "
                "probability's AUROC on held-out selector-train rows), the top probability at "
                "the rest; AUROC of \"agrees with the base model\" on the calibration split, "
                "mean over caches: selector %.4f, top probability %.4f\n",
                kept, manifest.caches.size(), selector_auroc / n, top_auroc / n);
  }
  if (manifest.has_plan) std::printf("\n%s", PlanReport(manifest).c_str());
  std::printf("\nsteps:");
  for (const auto& [name, step_seconds] : report->step_seconds) {
    std::printf(" %s %.1f s;", name.c_str(), step_seconds);
  }
  std::printf("\ntotal %.1f s, threads %d\n", seconds, options.threads);
  for (const std::string& warning : report->warnings) {
    std::fprintf(stderr, "gati build: warning: %s\n", warning.c_str());
  }
  return kExitOk;
}

}  // namespace

std::function<int()> RegisterBuildCommand(CLI::App& app) {
  auto flags = std::make_shared<BuildFlags>();
  BuildOptions& o = flags->options;
  CLI::App* command = app.add_subcommand(
      "build", "Train, calibrate and profile learned caches; write a bundle.");
  command->add_option("--model", o.model_path, "staged TorchScript model")->required();
  command->add_option("--out", flags->out, "bundle directory to write")->required();
  command->add_option("--data", flags->data,
                      "fashion-mnist or a directory of its gzip IDX files (the validation "
                      "split is used); a folder of PNG/JPEG images, flat or in class "
                      "subdirectories; or a .npy of (N, ...) float32 (raw values; images in "
                      "[0, 1]) or uint8 samples of the model's input shape; a folder or "
                      ".npy builds whole");
  command->add_option("--labels", flags->labels,
                      "int64 .npy of labels for a .npy --data (optional: caches learn from "
                      "the base model; labels only add accuracy figures)");
  command->add_option("--taps", flags->taps, "all, or a list such as 0,5,9");
  std::string known;
  for (const VariantSpec& v : KnownVariants()) known += "\n  " + v.name + ": " + v.description;
  command->add_option("--variants", flags->variants,
                      "comma-separated predictor variants (default: gap:linear,"
                      "gap:mlp64,pool2:mlp128,pool4:mlp256,conv1x1-8:pool4:linear). "
                      "Known:" + known);
  command->add_option("--epsilon", o.epsilon,
                      "bound on each cache's false-hit rate among hits, in (0, 1)");
  command->add_option("--confidence", o.confidence,
                      "confidence of the false-hit bound, in (0, 1)");
  command->add_option("--alpha", o.distillation.alpha,
                      "weight of the distillation term, in [0, 1]");
  command->add_option("--temperature", o.distillation.temperature,
                      "distillation temperature, > 0");
  command->add_option("--learning-rate", o.distillation.learning_rate,
                      "Adam learning rate of the predictors (cosine-decayed)")
      ->check(CLI::PositiveNumber);
  command->add_option("--batch", o.distillation.batch,
                      "examples per training step of the predictors")
      ->check(CLI::Range(1, 65536));
  command->add_option("--epochs", o.epochs, "epochs for pooled-feature variants")
      ->check(CLI::Range(1, 10000));
  command->add_option("--stream-epochs", o.stream_epochs,
                      "epochs for streaming (conv) variants")
      ->check(CLI::Range(1, 10000));
  command->add_option("--threads", o.threads,
                      "intra-op threads, and heads trained at once")
      ->check(CLI::Range(1, 256));
  command->add_option("--seed", o.seed, "seed for splits, initialization, shuffling");
  command->add_option("--lookup-repetitions", o.lookup_repetitions,
                      "timed lookups per cache for the reported median")
      ->check(CLI::Range(1, 10000000));
  command->add_option("--limit", flags->limit,
                      "use only the first N samples of the data (0: all)")
      ->check(CLI::NonNegativeNumber);
  command->add_option("--memory-budget", flags->memory_budget,
                      "planner: memory of all chosen caches, e.g. 4MB");
  command->add_option("--plan-epsilon", flags->plan_epsilon,
                      "planner: bound on the share of answers that differ from the base "
                      "model (default: --epsilon)");
  command->add_option("--mode", flags->mode,
                      "planner: price lookups as sequential (default; also what auto "
                      "means) or parallel");
  command->add_option("--max-taps", flags->max_taps, "planner: at most this many caches");
  command->add_option("--tail-budget", flags->tail_budget,
                      "planner: predicted p99 within this multiple of the base model's "
                      "(0: off)");
  command->add_flag("--no-plan", flags->no_plan, "do not run the planner");
  command->add_option("--plan-batch", flags->plan_batch,
                      "planner: plan for batches of this many rows (gati plan --batch): the "
                      "expected batch size under load; 1 = single requests")
      ->check(CLI::Range(1, kMaxPlanBatch));
  return [flags] { return RunBuild(*flags); };
}

}  // namespace gati::cli
