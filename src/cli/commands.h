// Subcommands of the `gati` command line. Each registers its flags on the
// CLI11 app and returns the process exit code when run.
#ifndef GATI_CLI_COMMANDS_H_
#define GATI_CLI_COMMANDS_H_

#include <functional>
#include <string>

#include "gati/bundle.h"
#include "gati/plan.h"

namespace CLI {
class App;
}  // namespace CLI

namespace gati::cli {

// Exit codes shared by every subcommand.
inline constexpr int kExitOk = 0;
inline constexpr int kExitError = 1;  // The command ran and failed.

// Registers `gati info` on `app`; the returned function runs it.
std::function<int()> RegisterInfoCommand(CLI::App& app);
// Registers `gati eval` on `app`; the returned function runs it.
std::function<int()> RegisterEvalCommand(CLI::App& app);
// Registers `gati build` on `app`; the returned function runs it.
std::function<int()> RegisterBuildCommand(CLI::App& app);
// Registers `gati plan` on `app`; the returned function runs it.
std::function<int()> RegisterPlanCommand(CLI::App& app);

// Registers `gati replay` on `app`; the returned function runs it.
std::function<int()> RegisterReplayCommand(CLI::App& app);
// Registers `gati trace` on `app`; the returned function runs it.
std::function<int()> RegisterTraceCommand(CLI::App& app);
// Registers `gati serve` on `app`; the returned function runs it.
std::function<int()> RegisterServeCommand(CLI::App& app);

// Planner options from the flags `gati plan` and `gati build` share; the
// error names the bad flag.
absl::StatusOr<PlanOptions> MakePlanOptions(const std::string& memory_budget,
                                            double epsilon, const std::string& mode,
                                            int max_taps, double tail_budget);

// Re-plans the bundle at `bundle_dir` for batches of `batch` rows
// (PlanForBatch, on its model and caches; `repetitions` timed runs per
// measurement) and rewrites its manifest with the plan; returns the
// manifest as written. What `gati plan --batch` and `gati build
// --plan-batch` run.
absl::StatusOr<BundleManifest> PlanBundleForBatch(const std::string& bundle_dir,
                                                  const PlanOptions& options, int batch,
                                                  int repetitions);

}  // namespace gati::cli

#endif  // GATI_CLI_COMMANDS_H_
