// `gati plan BUNDLE`: re-plan an existing bundle (no retraining) and store
// the plan in its manifest.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>

#include "cli/commands.h"
#include "gati/bundle.h"
#include "gati/model.h"
#include "gati/plan.h"
#include "build/measured_plan.h"
#include "plan/bundle_plan.h"

namespace gati::cli {
namespace {

struct PlanFlags {
  std::string bundle;
  std::string memory_budget = "4MB";
  double epsilon = 0.01;
  std::string mode = "sequential";
  int max_taps = 0;
  double tail_budget = 1.05;
  bool measure = true;
  int repetitions = 30;
  int batch = 1;
};

int Fail(const absl::Status& status) {
  std::fprintf(stderr, "gati plan: %s\n", status.ToString().c_str());
  return kExitError;
}

int RunPlan(const PlanFlags& flags) {
  auto options = MakePlanOptions(flags.memory_budget, flags.epsilon, flags.mode,
                                 flags.max_taps, flags.tail_budget);
  if (!options.ok()) return Fail(options.status());
  auto start = std::chrono::steady_clock::now();
  if (flags.batch > 1 && !flags.measure) {
    return Fail(absl::InvalidArgumentError(
        "--batch profiles the model at that batch size; it cannot be used with --no-measure"));
  }
  if (flags.batch > 1 && options->mode == LookupMode::kParallel) {
    return Fail(absl::InvalidArgumentError(
        "--batch prices lookups as a batch runs them, between its segments (sequential); "
        "it cannot be used with --mode parallel"));
  }
  if (flags.batch > 1) {
    auto written = PlanBundleForBatch(flags.bundle, *options, flags.batch, flags.repetitions);
    if (!written.ok()) return Fail(written.status());
    std::printf("%s", PlanReport(*written).c_str());
    std::printf("profiled at batch %d (and %d) and planned in %.2f s; written to %s/%s\n",
                flags.batch, std::max(1, flags.batch / 4),
                std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(),
                flags.bundle.c_str(), kManifestFileName);
    return kExitOk;
  }
  // Single requests: the bundle's own profile, segments measured at batch 1.
  auto bundle = Bundle::Load(flags.bundle);
  if (!bundle.ok()) return Fail(bundle.status());
  auto problem = ProblemFromBundle(**bundle);
  if (!problem.ok()) return Fail(problem.status());
  Plan plan;
  double model_only_mean_ms = 0;
  if (flags.measure) {
    ModelOptions model_options;
    model_options.intra_op_threads = (*bundle)->manifest().profile_threads;
    auto model = StagedModel::Load((*bundle)->model_path(), model_options);
    if (!model.ok()) return Fail(model.status());
    auto measured = PlanWithMeasuredSegments(**model, &*problem, *options,
                                             flags.repetitions, 3, &model_only_mean_ms);
    if (!measured.ok()) return Fail(measured.status());
    plan = *measured;
  } else {
    plan = SearchPlan(*problem, *options);
  }
  double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  BundleManifest manifest = (*bundle)->manifest();
  manifest.plan = ToStoredPlan(plan, *problem, *options);
  manifest.plan.model_only_mean_ms = model_only_mean_ms;
  manifest.has_plan = true;
  absl::Status written = Bundle::WriteManifest(flags.bundle, manifest);
  if (!written.ok()) return Fail(written);
  std::printf("%s", PlanReport(manifest).c_str());
  std::printf("search: %d plans replayed (last search) on %zu planning samples "
              "(%zu caches); %.2f s with %zu fused segments measured; written to %s/%s\n",
              plan.evaluations, problem->base_classes.size(), problem->caches.size(),
              seconds, problem->measured_segment_ms.size(), flags.bundle.c_str(),
              kManifestFileName);
  return kExitOk;
}

}  // namespace

absl::StatusOr<BundleManifest> PlanBundleForBatch(const std::string& bundle_dir,
                                                  const PlanOptions& options, int batch,
                                                  int repetitions) {
  GATI_ASSIGN_OR_RETURN(std::unique_ptr<Bundle> bundle, Bundle::Load(bundle_dir));
  GATI_ASSIGN_OR_RETURN(PlanningProblem problem, ProblemFromBundle(*bundle));
  ModelOptions model_options;
  model_options.intra_op_threads = bundle->manifest().profile_threads;
  GATI_ASSIGN_OR_RETURN(std::unique_ptr<StagedModel> model,
                        StagedModel::Load(bundle->model_path(), model_options));
  std::vector<const LearnedCache*> caches;
  for (const auto& cache : bundle->caches()) caches.push_back(cache.get());
  const ReplaySample& replay = bundle->replay();
  double model_only_mean_ms = 0;
  GATI_ASSIGN_OR_RETURN(Plan plan,
                        PlanForBatch(*model, caches, replay.inputs.data(), replay.count,
                                     &problem, options, batch, repetitions,
                                     &model_only_mean_ms));
  PlanOptions priced = options;
  priced.mode = LookupMode::kSequential;  // As PlanForBatch prices a batch.
  BundleManifest manifest = bundle->manifest();
  manifest.plan = ToStoredPlan(plan, problem, priced, batch);
  manifest.plan.model_only_mean_ms = model_only_mean_ms;
  manifest.has_plan = true;
  GATI_RETURN_IF_ERROR(Bundle::WriteManifest(bundle_dir, manifest));
  return manifest;
}

absl::StatusOr<PlanOptions> MakePlanOptions(const std::string& memory_budget,
                                            double epsilon, const std::string& mode,
                                            int max_taps, double tail_budget) {
  PlanOptions options;
  auto budget = ParseByteSize(memory_budget);
  if (!budget.ok()) {
    return absl::InvalidArgumentError("--memory-budget: " + std::string(budget.status().message()));
  }
  options.memory_budget_bytes = *budget;
  if (!(epsilon > 0 && epsilon < 1)) {
    return absl::InvalidArgumentError("--epsilon must lie in (0, 1), got " +
                                      std::to_string(epsilon));
  }
  options.epsilon = epsilon;
  auto parsed_mode = ParseLookupMode(mode);
  if (!parsed_mode.ok()) return parsed_mode.status();
  options.mode = *parsed_mode;
  if (max_taps < 0) return absl::InvalidArgumentError("--max-taps must be >= 0");
  options.max_taps = max_taps;
  if (!(tail_budget == 0 || (tail_budget >= 1 && tail_budget <= 100))) {
    return absl::InvalidArgumentError(
        "--tail-budget must be 0 (off) or a ratio in [1, 100], got " + std::to_string(tail_budget));
  }
  options.tail_budget = tail_budget;
  return options;
}

std::function<int()> RegisterPlanCommand(CLI::App& app) {
  auto flags = std::make_shared<PlanFlags>();
  CLI::App* command = app.add_subcommand(
      "plan", "Choose taps, variants and thresholds for a bundle (no retraining).");
  command->add_option("BUNDLE", flags->bundle, "bundle directory written by gati build")
      ->required();
  command->add_option("--memory-budget", flags->memory_budget,
                      "memory of all chosen caches, e.g. 4MB, 512KiB");
  command->add_option("--epsilon", flags->epsilon,
                      "bound on the share of answers that differ from the base model");
  command->add_option("--mode", flags->mode,
                      "price lookups as sequential (default; also what auto means) or parallel");
  command->add_option("--max-taps", flags->max_taps, "at most this many caches (0: any)");
  command->add_option("--tail-budget", flags->tail_budget,
                      "predicted p99 within this multiple of the base model's (0: off)");
  command->add_flag("!--no-measure", flags->measure,
                    "skip measuring the plan's fused segments on the base model");
  command->add_option("--repetitions", flags->repetitions,
                      "timed runs per segment when measuring")
      ->check(CLI::Range(1, 100000));
  command->add_option("--batch", flags->batch,
                      "plan for batches of this many rows (the expected batch size under "
                      "load, behind the dynamic batcher): costs profiled at that size, per "
                      "row; 1 = single requests")
      ->check(CLI::Range(1, kMaxPlanBatch));
  return [flags] { return RunPlan(*flags); };
}

}  // namespace gati::cli
