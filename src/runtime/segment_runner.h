// How the engine runs the base model, without LibTorch in sight: segments
// take and give Activations, flat float arrays whose storage a holder keeps
// alive. The LibTorch implementation lives in torch_backend.cc; tests inject
// fakes.
#ifndef GATI_RUNTIME_SEGMENT_RUNNER_H_
#define GATI_RUNTIME_SEGMENT_RUNNER_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "gati/status.h"

namespace gati::runtime {

// `batch` rows of `row_size` contiguous floats on the CPU at `data`, kept
// alive by `holder` (whatever owns the storage; runners may put their own
// tensor type there and read it back).
struct Activation {
  const float* data = nullptr;
  int64_t batch = 0;
  int64_t row_size = 0;
  std::shared_ptr<void> holder;
};

// The base model cut at fixed taps. Implementations are immutable and every
// method is thread-safe.
class SegmentRunner {
 public:
  virtual ~SegmentRunner() = default;
  // Segments of the cut model (planned taps + 1).
  virtual int num_segments() const = 0;
  // Copies `batch` inputs (row-major, input shape) into an Activation.
  virtual absl::StatusOr<Activation> MakeInput(const float* data,
                                               int64_t batch) const = 0;
  // Runs segment `segment` on the input (segment 0) or on the previous
  // segment's output; the last segment gives the logits [batch, classes].
  virtual absl::StatusOr<Activation> RunSegment(int segment,
                                                const Activation& input) const = 0;
  // The rows `rows` (indices into input.batch, in that order) of an
  // activation, copied into a batch of their own: what the next segment
  // runs on once the other rows have left the batch, and a sampled row's
  // activation kept for its feedback.
  virtual absl::StatusOr<Activation> SelectRows(const Activation& input,
                                                const std::vector<int64_t>& rows) const = 0;
  // The whole model as one frozen segment; logits.
  virtual absl::StatusOr<Activation> RunWhole(const Activation& input) const = 0;
};

}  // namespace gati::runtime

#endif  // GATI_RUNTIME_SEGMENT_RUNNER_H_
