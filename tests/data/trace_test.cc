// Workload traces on a synthetic labelled split: reproducibility, value
// ranges, and the locality each kind promises.
#include "data/trace.h"

#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <random>
#include <set>

namespace gati {
namespace {

constexpr int64_t kSide = 8;

// 200 smooth random 8x8 images (waves of random direction and phase, so
// that a shifted copy stays close, as with photos), 20 per class.
ImageDataset Source() {
  ImageDataset source;
  source.count = 200;
  source.rows = source.cols = kSide;
  std::mt19937 rng(5);
  std::uniform_real_distribution<double> uniform(0, 1);
  for (int64_t i = 0; i < source.count; ++i) {
    const double a = 0.3 * uniform(rng), b = 0.3 * uniform(rng), phase = 6.28 * uniform(rng);
    for (int64_t r = 0; r < kSide; ++r) {
      for (int64_t c = 0; c < kSide; ++c) {
        source.pixels.push_back(
            static_cast<uint8_t>(255 * (0.5 + 0.5 * std::sin(a * r + b * c + phase))));
      }
    }
  }
  for (int64_t i = 0; i < source.count; ++i) source.labels.push_back(i % 10);
  return source;
}

Trace Make(TraceKind kind, int64_t count, uint64_t seed = 1) {
  TraceOptions options;
  options.kind = kind;
  options.count = count;
  options.seed = seed;
  auto trace = MakeTrace(options, Source());
  EXPECT_TRUE(trace.ok()) << trace.status();
  return std::move(*trace);
}

double Distance(const Trace& trace, int64_t a, int64_t b) {
  double total = 0;
  for (int64_t p = 0; p < kSide * kSide; ++p) {
    total += std::abs(trace.images.f32[a * kSide * kSide + p] -
                      trace.images.f32[b * kSide * kSide + p]);
  }
  return total / (kSide * kSide);
}

TEST(TraceTest, EveryKindIsReproducibleAndWellFormed) {
  for (TraceKind kind : {TraceKind::kIid, TraceKind::kSkewed, TraceKind::kVideo,
                         TraceKind::kMixed}) {
    SCOPED_TRACE(TraceKindName(kind));
    Trace a = Make(kind, 3000);
    Trace b = Make(kind, 3000);
    Trace c = Make(kind, 3000, /*seed=*/2);
    EXPECT_EQ(a.images.shape, (std::vector<int64_t>{3000, 1, kSide, kSide}));
    EXPECT_EQ(a.labels.shape, (std::vector<int64_t>{3000}));
    EXPECT_EQ(a.images.f32, b.images.f32);
    EXPECT_EQ(a.labels.i64, b.labels.i64);
    EXPECT_NE(a.images.f32, c.images.f32);
    for (float v : a.images.f32) ASSERT_TRUE(v >= 0 && v <= 1) << v;
    for (int64_t label : a.labels.i64) ASSERT_TRUE(label >= 0 && label < 10);
  }
}

TEST(TraceTest, SkewedTracesFavourFewClassesAndRotate) {
  Trace trace = Make(TraceKind::kSkewed, 4000);
  // Per period of 1000 requests: the top class takes far more than 10 %,
  // and the top class differs between some periods.
  std::vector<int64_t> top;
  for (int period = 0; period < 4; ++period) {
    std::map<int64_t, int> counts;
    for (int64_t i = period * 1000; i < (period + 1) * 1000; ++i) ++counts[trace.labels.i64[i]];
    auto best = std::max_element(counts.begin(), counts.end(),
                                 [](auto& x, auto& y) { return x.second < y.second; });
    EXPECT_GT(best->second, 250) << "period " << period;
    top.push_back(best->first);
  }
  EXPECT_GT(std::set<int64_t>(top.begin(), top.end()).size(), 1u);
  // iid has no such favourite.
  Trace iid = Make(TraceKind::kIid, 1000);
  std::map<int64_t, int> counts;
  for (int64_t label : iid.labels.i64) ++counts[label];
  for (const auto& [label, n] : counts) EXPECT_LT(n, 160) << "class " << label;
}

TEST(TraceTest, VideoTracesComeInBurstsOfNearDuplicates) {
  Trace trace = Make(TraceKind::kVideo, 4000);
  // Consecutive frames mostly share the label and look alike; random pairs
  // of the iid trace do not.
  int same_label = 0;
  double near = 0;
  for (int64_t i = 1; i < 4000; ++i) {
    same_label += trace.labels.i64[i] == trace.labels.i64[i - 1];
    near += Distance(trace, i, i - 1);
  }
  EXPECT_GT(same_label, 3600);  // Mean burst 20: ~95 % of neighbours share it.
  Trace iid = Make(TraceKind::kIid, 4000);
  double far = 0;
  for (int64_t i = 1; i < 4000; ++i) far += Distance(iid, i, i - 1);
  EXPECT_LT(near, 0.6 * far);
  // Frames of a burst are not exact copies (noise, shifts, brightness).
  int exact = 0;
  for (int64_t i = 1; i < 4000; ++i) exact += Distance(trace, i, i - 1) == 0;
  EXPECT_LT(exact, 40);
}

TEST(TraceTest, BadOptionsNameTheFlag) {
  TraceOptions options;
  options.count = 0;
  EXPECT_NE(MakeTrace(options, Source()).status().message().find("--n"), std::string::npos);
  options = {};
  options.zipf_exponent = 0;
  EXPECT_NE(MakeTrace(options, Source()).status().message().find("--zipf"), std::string::npos);
  options = {};
  options.mean_burst = 0.5;
  EXPECT_NE(MakeTrace(options, Source()).status().message().find("--burst-mean"),
            std::string::npos);
  EXPECT_FALSE(ParseTraceKind("zipf").ok());
  EXPECT_EQ(*ParseTraceKind("video"), TraceKind::kVideo);
}

}  // namespace
}  // namespace gati
