// Workload traces: sequences of requests made from a data source (a
// Dataset: Fashion-MNIST's test split by default, or the user's data),
// reproducible from a seed. A trace file is NPY float32 [N, sample shape...]
// of raw values (pixel values in [0, 1] for images: what a client would
// send before normalization); its labels file NPY int64 [N], when the
// source has labels.
//
// Kinds:
//   iid     images drawn uniformly with replacement: no locality.
//   skewed  classes drawn with Zipf popularity (rank r has weight
//           1 / r^zipf_exponent); the ranking of classes is reshuffled every
//           `rotate_every` requests: locality that drifts.
//   video   bursts of near-duplicate frames of one sample (a random walk of
//           small shifts over its last two dimensions, brightness drift,
//           noise; clamped to [0, 1] when the source is); burst lengths
//           are geometric with mean `mean_burst`.
//   mixed   stretches of 500-2000 requests, each of iid, skewed or video.
#ifndef GATI_DATA_TRACE_H_
#define GATI_DATA_TRACE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "data/dataset.h"
#include "data/fashion_mnist.h"
#include "data/npy.h"
#include "gati/status.h"

namespace gati {

enum class TraceKind { kIid, kSkewed, kVideo, kMixed };

// "iid", "skewed", "video", "mixed"; InvalidArgument listing them otherwise.
absl::StatusOr<TraceKind> ParseTraceKind(const std::string& text);
const char* TraceKindName(TraceKind kind);

struct TraceOptions {
  TraceKind kind = TraceKind::kIid;
  int64_t count = 10000;
  uint64_t seed = 1;
  // skewed: Zipf exponent over class ranks, and requests between reshuffles.
  double zipf_exponent = 1.2;
  int64_t rotate_every = 1000;
  // video: mean burst length, largest shift (pixels) from the first frame,
  // pixel noise (standard deviation) and brightness drift per frame.
  double mean_burst = 20;
  int max_shift = 2;
  double noise = 0.03;
  double brightness_step = 0.02;
};

struct Trace {
  NpyArray images;  // float32 [N, sample shape...].
  NpyArray labels;  // int64 [N]; labels.i64 is empty without source labels.
};

// Makes a trace from `source`. InvalidArgument naming the option when
// count < 1, the source is empty, zipf_exponent <= 0, rotate_every < 1,
// mean_burst < 1, max_shift < 0, or noise / brightness_step < 0.
// skewed and mixed need a source with labels.
absl::StatusOr<Trace> MakeTrace(const TraceOptions& options, const Dataset& source);
absl::StatusOr<Trace> MakeTrace(const TraceOptions& options, const ImageDataset& source);

}  // namespace gati

#endif  // GATI_DATA_TRACE_H_
