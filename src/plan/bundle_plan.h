// Planning from a bundle: the problem its records and profiles define, and
// the plan as stored back into its manifest.
#ifndef GATI_PLAN_BUNDLE_PLAN_H_
#define GATI_PLAN_BUNDLE_PLAN_H_

#include "gati/bundle.h"
#include "gati/plan.h"

namespace gati {

// The planning problem of `bundle`: stage profile, cut overhead, lookup
// times and memory from the manifest, records from planning.safetensors.
// Candidate thresholds per cache (at most `thresholds_per_cache`, strictest
// first): the calibrated one when the cache is enabled, and the scores at
// which 20/40/60/80 % of the planning split would hit. FailedPrecondition
// when the bundle has no planning records.
absl::StatusOr<PlanningProblem> ProblemFromBundle(const Bundle& bundle,
                                                  int thresholds_per_cache = 5);

// The same from a manifest and records aligned with manifest.caches.
absl::StatusOr<PlanningProblem> ProblemFromManifest(const BundleManifest& manifest,
                                                    const PlanningRecords& records,
                                                    int thresholds_per_cache = 5);

// The plan in the manifest's terms; `batch`: the batch size its problem's
// costs are per row at (a plan for batches is not priced in parallel mode,
// which batches do not run in).
StoredPlan ToStoredPlan(const Plan& plan, const PlanningProblem& problem,
                        const PlanOptions& options, int batch = 1);

// A readable report of a stored plan, one line per fact, for the CLI.
std::string PlanReport(const StoredPlan& plan);
// The same, with what the manifest says about the cost model beside it.
std::string PlanReport(const BundleManifest& manifest);

}  // namespace gati

#endif  // GATI_PLAN_BUNDLE_PLAN_H_
