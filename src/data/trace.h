// Workload traces: sequences of requests made from a labelled image split,
// reproducible from a seed. A trace file is NPY float32 [N, C, H, W] of
// pixel values in [0, 1] (what a client would send before normalization);
// its labels file NPY int64 [N].
#ifndef GATI_DATA_TRACE_H_
#define GATI_DATA_TRACE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "data/fashion_mnist.h"
#include "data/npy.h"
#include "gati/status.h"

namespace gati {

// Kinds of trace: `iid` draws images uniformly with replacement (no
// locality).
enum class TraceKind { kIid };

absl::StatusOr<TraceKind> ParseTraceKind(const std::string& text);
const char* TraceKindName(TraceKind kind);

struct Trace {
  NpyArray images;  // float32 [N, 1, rows, cols], values in [0, 1].
  NpyArray labels;  // int64 [N].
};

// Makes a trace of `count` requests from `source`. InvalidArgument when
// count < 1 or the source is empty.
absl::StatusOr<Trace> MakeTrace(TraceKind kind, int64_t count, uint64_t seed,
                                const ImageDataset& source);

}  // namespace gati

#endif  // GATI_DATA_TRACE_H_
