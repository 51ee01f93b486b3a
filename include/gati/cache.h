// A learned cache at one tap: predictor (features -> class scores), selector
// (predictor output -> probability that the predictor agrees with the base
// model) and a calibrated threshold. This header holds the trained object and
// its per-request lookup; training lives in gati/build.h.
//
// Layouts, stated once: an activation of one input is a C-order float array
// of shape [C, H, W] (a 2-D [batch, D] activation is a vector [D]);
// component (c, y, x) is at activation[c * H * W + y * W + x]. Token
// activations ([batch, L, D], a transformer's) keep the model's token-major
// order: feature d of token t is at activation[t * D + d]; their
// ActivationShape has layout kTokens, channels = D, height = L. A dense layer
// maps in -> out with weight [out, in] row-major: y[o] = bias[o] +
// sum_i weight[o * in + i] * x[i].
#ifndef GATI_CACHE_H_
#define GATI_CACHE_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "gati/status.h"

namespace gati {

// A predictor variant, made from a spec string POOL:HEAD. HEAD is `linear`
// or `mlpW` (one hidden ReLU layer of width W). POOL depends on the tap's
// activation layout (ActivationLayout below):
//   C x H x W   [conv1x1-N:]gap | [conv1x1-N:]poolK: global or adaptive
//               K x K average pool (at most H x W bins: C * min(K,H) *
//               min(K,W) values). `conv1x1-N:` puts a trainable 1x1
//               convolution with N output channels and a ReLU first.
//   tokens L x D  tok-mean (mean over tokens, D values), cls (the first
//               token, D), tok-meanmax (mean and max over tokens, 2 D).
//   vector D    id (the vector itself) | projN (a trainable projection to
//               N values and a ReLU).
// A variant with a trainable projection (conv1x1-N, projN) trains on
// streamed activations instead of stored features. Each kind's grammar,
// fit, size and pooling live in one table (src/cache/feature_kinds.h).
enum class PoolKind {
  kAverage,        // gap / poolK of [C, H, W].
  kTokenMean,      // tok-mean of [L, D].
  kFirstToken,     // cls of [L, D].
  kTokenMeanMax,   // tok-meanmax of [L, D].
  kIdentity,       // id / projN of [D].
};

struct VariantSpec {
  std::string name;            // The canonical spec string.
  PoolKind pool_kind = PoolKind::kAverage;
  int pool = 1;                // K of the K x K average pool; 1 = global.
  int conv_channels = 0;       // Outputs of the trained projection; 0 = none.
  std::vector<int> hidden;     // Hidden widths; empty = linear.
  std::string description;     // One line for help texts.

  // True when the variant needs raw activations (not pooled features).
  bool streams() const { return conv_channels > 0; }
  // One key per distinct pooling (features computed once per tap and key).
  int pool_key() const { return static_cast<int>(pool_kind) * 1024 + pool; }
};

// The registry: looks `spec` up among the known variants. InvalidArgument
// listing the known specs otherwise.
absl::StatusOr<VariantSpec> ParseVariantSpec(const std::string& spec);
// Every spec the registry knows, in a stable order.
const std::vector<VariantSpec>& KnownVariants();

// How one input's activation at a tap is laid out.
enum class ActivationLayout {
  kChannels,  // [C, H, W].
  kTokens,    // [L, D] token-major: channels = D, height = L, width = 1.
  kVector,    // [D]: channels = D, height = width = 1.
};

// The variants `gati build` trains at a tap of `layout` when none are
// named; DefaultVariantSpecs() is the C x H x W list.
std::vector<std::string> DefaultVariantSpecsFor(ActivationLayout layout);
std::vector<std::string> DefaultVariantSpecs();

// Shape of one input's activation at a tap.
struct ActivationShape {
  int64_t channels = 0;
  int64_t height = 1;
  int64_t width = 1;
  ActivationLayout layout = ActivationLayout::kChannels;
  int64_t size() const { return channels * height * width; }
  bool operator==(const ActivationShape& other) const {
    return channels == other.channels && height == other.height &&
           width == other.width && layout == other.layout;
  }
};

// "CxHxW", "tokens:LxD" or "vector:D", for messages and bundles.
std::string ActivationShapeToString(const ActivationShape& shape);
// The inverse; InvalidArgument for anything else.
absl::StatusOr<ActivationShape> ParseActivationShape(const std::string& text);
// The layout of one input's activation of `dims` (the activation's shape
// without the batch): [D] a vector, [L, D] tokens, [C, H, W] channels;
// InvalidArgument naming `where` for other ranks or empty dimensions.
absl::StatusOr<ActivationShape> DetectActivationShape(const std::vector<int64_t>& dims,
                                                      const std::string& where);
// Whether `variant` pools activations of `shape`'s layout.
bool VariantFits(const VariantSpec& variant, const ActivationShape& shape);
// The POOL forms that fit `layout`, for messages ("gap, poolK, conv1x1-N").
std::string VariantsThatFit(ActivationLayout layout);

// Number of pooled features the variant's first dense layer reads.
int64_t FeatureSize(const VariantSpec& variant, const ActivationShape& shape);

struct DenseLayer {
  int64_t in = 0;
  int64_t out = 0;
  std::vector<float> weight;  // [out, in] row-major.
  std::vector<float> bias;    // [out].
};

// Selector inputs computed from the predictor's logits: the 3 largest
// softmax probabilities (descending), margin (p1 - p2) and entropy (nats).
inline constexpr int kSelectorInputs = 5;
// Writes kSelectorInputs values to `out`. REQUIRES: num_classes >= 2.
void SelectorFeatures(const float* logits, int num_classes, float* out);

// Widest selector layer a cache may have.
inline constexpr int kMaxSelectorWidth = 64;

// Everything that defines a trained cache; what the bundle stores.
struct CacheWeights {
  VariantSpec variant;
  int tap = 0;
  ActivationShape shape;
  int num_classes = 0;
  // The 1x1 convolution as a dense layer over channels (in = C, out = N);
  // empty unless variant.streams().
  DenseLayer conv;
  // Predictor layers; ReLU between consecutive layers, none after the last.
  std::vector<DenseLayer> predictor;
  // Selector layers over the kSelectorInputs; ReLU between, sigmoid at the
  // end (the last layer has out = 1).
  std::vector<DenseLayer> selector;
  // A lookup hits when the selector score >= threshold. false = the
  // calibration found no threshold that keeps the bound (never hits).
  bool enabled = false;
  float threshold = 1.0f;
};

struct LookupResult {
  bool hit = false;
  int label = -1;      // The predictor's class (also reported on a miss).
  float score = 0.0f;  // The selector's probability of agreement.
};

// A trained, validated cache. Immutable; Lookup and friends are thread-safe
// and allocate nothing after the first call on a thread.
class LearnedCache {
 public:
  // Validates that the layer sizes chain (conv, pooling, predictor, selector)
  // and match the variant, shape and class count; InvalidArgument naming the
  // first mismatch otherwise.
  static absl::StatusOr<std::unique_ptr<LearnedCache>> Create(
      CacheWeights weights);

  // The per-request path on one activation (layout above): features,
  // predictor, selector, threshold. When `probabilities` is not null it
  // receives num_classes softmax probabilities of the predictor.
  LookupResult Lookup(const float* activation,
                      float* probabilities = nullptr) const;

  // The same for `n` activations, row-major and contiguous (a batch
  // [n, ...] of this cache's shape): results[i] and, when not null,
  // probabilities[i * num_classes ...] for row i, as Lookup gives them.
  void LookupBatch(int64_t n, const float* activations, LookupResult* results,
                   float* probabilities = nullptr) const;

  // Predictor logits (num_classes values) for one activation.
  void Predict(const float* activation, float* logits) const;
  // Predictor logits from already pooled features (FeatureSize values).
  // REQUIRES: !variant.streams().
  void PredictFromFeatures(const float* features, float* logits) const;
  // Selector score for the predictor's logits.
  float SelectorScore(const float* logits) const;

  // What the online learner stores per request and trains on: the pooled
  // features (FeatureSize values) for pooled variants; for conv variants,
  // whose trainable convolution runs before pooling, the whole activation.
  // This is the `input` layout of PredictorTrainer::Step, flattened.
  int64_t training_input_size() const;
  void ExtractTrainingInput(const float* activation, float* out) const;
  // Predictor logits from a training input (num_classes values).
  void PredictFromTrainingInput(const float* input, float* logits) const;

  const CacheWeights& weights() const { return weights_; }
  int num_classes() const { return weights_.num_classes; }
  // Bytes of parameters plus per-thread scratch a lookup needs.
  int64_t memory_bytes() const;

 private:
  explicit LearnedCache(CacheWeights weights);
  CacheWeights weights_;
  // Weights transposed to [in, out] for kernels that vectorize over `out`.
  std::vector<std::vector<float>> predictor_transposed_;
  std::vector<float> conv_transposed_;
  int64_t predictor_widest_ = 0;
  // Offsets into the per-thread scratch buffer (floats).
  int64_t features_offset_ = 0;
  int64_t conv_offset_ = 0;
  int64_t logits_offset_ = 0;
  int64_t scratch_floats_ = 0;
};

// Median wall time (µs) of `cache`'s Lookup on an activation of uniform
// random values seeded by `seed`, over `repetitions` timed calls after
// `warmup` untimed ones; what the build profiles and the engine decides
// inline lookups by. REQUIRES: repetitions >= 1.
double MedianLookupMicros(const LearnedCache& cache, int repetitions, uint64_t seed,
                          int warmup = 20);

// The same for LookupBatch on `batch` such activations (time per call, not
// per row); batch 1 times Lookup, as above. REQUIRES: batch >= 1.
double MedianBatchLookupMicros(const LearnedCache& cache, int64_t batch, int repetitions,
                               uint64_t seed, int warmup = 20);

}  // namespace gati

#endif  // GATI_CACHE_H_
