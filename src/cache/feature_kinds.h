// The one place per variant kind: how a predictor variant turns one
// input's activation into the features its head reads. Everything that
// differs between kinds (the POOL grammar, the layout it fits, the feature
// count, the pooling itself) is an entry of the table in variant.cc; the
// lookup path, the builder's feature bank and the trainer's streaming path
// all pool through it, so a new kind is one entry. No LibTorch here.
#ifndef GATI_CACHE_FEATURE_KINDS_H_
#define GATI_CACHE_FEATURE_KINDS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "gati/cache.h"

namespace gati::cache_internal {

struct FeatureKind {
  PoolKind kind;
  ActivationLayout layout;  // The activations this kind pools.
  const char* grammar;      // The POOL forms it parses, for messages.
  // Parses the spec's parts before the head (for example {"conv1x1-8",
  // "pool4"} or {"cls"}) into `variant`; false when they are not this
  // kind's, an error string in `why` when they are but are malformed.
  bool (*parse)(const std::vector<absl::string_view>& parts, VariantSpec* variant,
                std::string* why);
  // Features per input, pooling `channels` planes of `shape`'s positions
  // (channels differ from shape.channels after a trained projection).
  int64_t (*size)(const VariantSpec& variant, const ActivationShape& shape,
                  int64_t channels);
  // Pools one input: `input` holds `channels` planes of shape's positions
  // (channel-major for kChannels and kVector, token-major for kTokens);
  // writes size(...) values. No allocation.
  void (*pool)(const VariantSpec& variant, const ActivationShape& shape, const float* input,
               int64_t channels, float* output);
  // Linear in the activation and channel-major, so that a trained
  // per-position projection (conv1x1-N, projN) may run before it and the
  // trainer can pool through a matrix (PoolingMatrix).
  bool linear;
};

// The table, in a stable order, and the entry of one kind.
const std::vector<FeatureKind>& FeatureKinds();
const FeatureKind& KindOf(PoolKind kind);

// Pools `rows` inputs laid out back to back (shape.size() floats each) into
// rows x FeatureSize floats.
void PoolRows(const VariantSpec& variant, const ActivationShape& shape, const float* input,
              int64_t rows, float* output);

// For a linear kind: the pooling of one plane as a [positions, features per
// plane] row-major matrix (positions = height * width), made by pooling
// unit planes, so that it is the kind's own pooling by construction.
std::vector<float> PoolingMatrix(const VariantSpec& variant, const ActivationShape& shape);

}  // namespace gati::cache_internal

#endif  // GATI_CACHE_FEATURE_KINDS_H_
