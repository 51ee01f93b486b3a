// Plain float kernels for the per-request lookup path. LibTorch's per-op
// dispatch costs microseconds per call, more than these small heads compute,
// so lookups run on contiguous arrays instead. No allocation, no locks.
#ifndef GATI_CACHE_KERNELS_H_
#define GATI_CACHE_KERNELS_H_

#include <cstdint>

namespace gati::cache_internal {

// Limits of AdaptiveAvgPool: bins per side and activation width.
inline constexpr int kMaxPool = 16;
inline constexpr int64_t kMaxPoolWidth = 4096;

// Adaptive kh x kw average pool of a [channels, height, width] array into
// [channels, kh, kw], with PyTorch's bins: rows floor(i*H/kh) ..
// ceil((i+1)*H/kh), columns likewise.
// REQUIRES: 1 <= kh, kw <= kMaxPool, width <= kMaxPoolWidth.
void AdaptiveAvgPool(const float* input, int64_t channels, int64_t height,
                     int64_t width, int kh, int kw, float* output);

// Pools a token-major [tokens, dim] activation: the mean over tokens (dim
// values), the first token (dim), or the mean then the max (2 dim).
void TokenPool(const float* input, int64_t tokens, int64_t dim, bool first, bool with_max,
               float* output);

// y[out] = bias + x[in] * W, with W given transposed as [in, out].
void DenseTransposed(const float* x, int64_t in, int64_t out,
                     const float* weight_transposed, const float* bias,
                     float* y);

// 1x1 convolution of [in_channels, pixels] to [out_channels, pixels] with
// W transposed as [in_channels, out_channels], followed by ReLU.
void Conv1x1Relu(const float* input, int64_t in_channels, int64_t pixels,
                 int64_t out_channels, const float* weight_transposed,
                 const float* bias, float* output);

void ReluInPlace(float* x, int64_t size);

// Index of the largest value (the first on ties), as torch::argmax.
int ArgMax(const float* x, int64_t size);

}  // namespace gati::cache_internal

#endif  // GATI_CACHE_KERNELS_H_
