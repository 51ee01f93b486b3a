#include "cache/kernels.h"

#include <algorithm>

namespace gati::cache_internal {

// Inner loops run over contiguous outputs (axpy form), which the compiler
// vectorizes without reassociating sums; four inputs are folded per pass so
// that the output row is loaded and stored a quarter as often. The AVX2
// clone is picked at load time on machines that have it (a feature test;
// "arch=..." clones would test for one CPU model).
// Sanitizer builds skip the clones: the ifunc resolver that picks one runs
// during relocation, before ThreadSanitizer's runtime is up, and crashes.
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
#define GATI_VECTOR_CLONES
#else
#define GATI_VECTOR_CLONES __attribute__((target_clones("avx2", "default")))
#endif

namespace {

// Always inlined, so that each clone below gets its own vector code.
// y[n] += a0*r0[n] + a1*r1[n] + a2*r2[n] + a3*r3[n].
__attribute__((always_inline)) inline void Axpy4(float a0, const float* r0, float a1, const float* r1,
                  float a2, const float* r2, float a3, const float* r3,
                  int64_t n, float* __restrict y) {
  for (int64_t i = 0; i < n; ++i) {
    y[i] += a0 * r0[i] + a1 * r1[i] + a2 * r2[i] + a3 * r3[i];
  }
}

__attribute__((always_inline)) inline void Axpy1(float a, const float* r, int64_t n, float* __restrict y) {
  for (int64_t i = 0; i < n; ++i) y[i] += a * r[i];
}

// y = bias + sum_i x[i] * rows[i * stride .. + n].
__attribute__((always_inline)) inline void AccumulateRows(const float* x, int64_t count, const float* rows,
                           int64_t stride, int64_t n, float* __restrict y) {
  int64_t i = 0;
  for (; i + 4 <= count; i += 4) {
    Axpy4(x[i], rows + i * stride, x[i + 1], rows + (i + 1) * stride, x[i + 2],
          rows + (i + 2) * stride, x[i + 3], rows + (i + 3) * stride, n, y);
  }
  for (; i < count; ++i) Axpy1(x[i], rows + i * stride, n, y);
}

}  // namespace

GATI_VECTOR_CLONES
void TokenPool(const float* input, int64_t tokens, int64_t dim, bool first, bool with_max,
               float* output) {
  if (first) {
    std::copy(input, input + dim, output);
    return;
  }
  std::fill(output, output + dim, 0.0f);
  for (int64_t t = 0; t < tokens; ++t) {
    const float* row = input + t * dim;
    for (int64_t d = 0; d < dim; ++d) output[d] += row[d];
  }
  const float scale = 1.0f / static_cast<float>(tokens);
  for (int64_t d = 0; d < dim; ++d) output[d] *= scale;
  if (!with_max) return;
  float* max = output + dim;
  std::copy(input, input + dim, max);
  for (int64_t t = 1; t < tokens; ++t) {
    const float* row = input + t * dim;
    for (int64_t d = 0; d < dim; ++d) max[d] = std::max(max[d], row[d]);
  }
}

void AdaptiveAvgPool(const float* input, int64_t channels, int64_t height,
                     int64_t width, int kh, int kw, float* output) {
  // Bin bounds, computed once; bins are at most kMaxPool per side.
  int64_t row_begin[kMaxPool], row_end[kMaxPool];
  int64_t col_begin[kMaxPool], col_end[kMaxPool];
  float inverse_area[kMaxPool * kMaxPool];
  for (int i = 0; i < kh; ++i) {
    row_begin[i] = i * height / kh;
    row_end[i] = ((i + 1) * height + kh - 1) / kh;
  }
  for (int j = 0; j < kw; ++j) {
    col_begin[j] = j * width / kw;
    col_end[j] = ((j + 1) * width + kw - 1) / kw;
  }
  for (int i = 0; i < kh; ++i) {
    for (int j = 0; j < kw; ++j) {
      inverse_area[i * kw + j] =
          1.0f / static_cast<float>((row_end[i] - row_begin[i]) *
                                    (col_end[j] - col_begin[j]));
    }
  }
  // Column sums over a bin's rows are vector adds along the row; only the
  // short sums over a bin's columns are serial.
  float sums[kMaxPoolWidth];
  for (int64_t c = 0; c < channels; ++c) {
    const float* plane = input + c * height * width;
    for (int i = 0; i < kh; ++i) {
      std::copy_n(plane + row_begin[i] * width, width, sums);
      for (int64_t y = row_begin[i] + 1; y < row_end[i]; ++y) {
        const float* row = plane + y * width;
        for (int64_t x = 0; x < width; ++x) sums[x] += row[x];
      }
      for (int j = 0; j < kw; ++j) {
        float sum = 0.0f;
        for (int64_t x = col_begin[j]; x < col_end[j]; ++x) sum += sums[x];
        *output++ = sum * inverse_area[i * kw + j];
      }
    }
  }
}

GATI_VECTOR_CLONES
void DenseTransposed(const float* x, int64_t in, int64_t out,
                     const float* weight_transposed, const float* bias,
                     float* y) {
  std::copy(bias, bias + out, y);
  AccumulateRows(x, in, weight_transposed, out, out, y);
}

GATI_VECTOR_CLONES
void Conv1x1Relu(const float* input, int64_t in_channels, int64_t pixels,
                 int64_t out_channels, const float* weight_transposed,
                 const float* bias, float* output) {
  // Weights of one output channel over the input channels, contiguous.
  float weights[1024];
  for (int64_t o = 0; o < out_channels; ++o) {
    float* plane = output + o * pixels;
    std::fill(plane, plane + pixels, bias[o]);
    int64_t c = 0;
    for (; c < in_channels;) {
      const int64_t block = std::min<int64_t>(1024, in_channels - c);
      for (int64_t b = 0; b < block; ++b) {
        weights[b] = weight_transposed[(c + b) * out_channels + o];
      }
      AccumulateRows(weights, block, input + c * pixels, pixels, pixels, plane);
      c += block;
    }
    for (int64_t p = 0; p < pixels; ++p) plane[p] = std::max(plane[p], 0.0f);
  }
}

void ReluInPlace(float* x, int64_t size) {
  for (int64_t i = 0; i < size; ++i) x[i] = std::max(x[i], 0.0f);
}

int ArgMax(const float* x, int64_t size) {
  int best = 0;
  for (int64_t i = 1; i < size; ++i) {
    if (x[i] > x[best]) best = static_cast<int>(i);
  }
  return best;
}

}  // namespace gati::cache_internal
