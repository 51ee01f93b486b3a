// Times the engine serving a bundle in both modes and the whole base model
// on the same inputs, for the build's calibration of parallel mode's cost
// (CalibrateParallelCost).
#ifndef GATI_RUNTIME_MODE_TIMING_H_
#define GATI_RUNTIME_MODE_TIMING_H_

#include <cstdint>
#include <string>

#include "gati/plan.h"
#include "gati/status.h"

namespace gati::runtime {

// Starts one engine per mode on the bundle at `bundle_dir` (learner off, no
// feedback, `intra_op_threads`) and times `count` inputs (row-major, the
// model's input shape) through each mode and through the whole base model.
// Requests run back to back in blocks of 16 per candidate, as a stream of
// requests would (a parallel request's leftover segment then slows the
// next, as it does in serving), with the candidates' order rotating per
// block, after a warm-up block. Errors: the bundle's load error, or the
// first failed request.
absl::StatusOr<ModeTiming> TimeModes(const std::string& bundle_dir, const float* inputs,
                                     int64_t count, int intra_op_threads = 1);

}  // namespace gati::runtime

#endif  // GATI_RUNTIME_MODE_TIMING_H_
