// Workload traces on a synthetic labelled split: reproducibility, value
// ranges, and the locality each kind promises.
#include "data/trace.h"

#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <random>
#include <set>

#include "testutil.h"

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

namespace gati {
namespace {

TEST(TraceTest, UserDataOfAnyShapeWithOrWithoutLabels) {
  testing::TempDir dir;
  // 40 colour images 3x4x5 in [0, 1], unlabelled.
  std::vector<float> values(40 * 60);
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> uniform(0, 1);
  for (float& v : values) v = uniform(rng);
  ASSERT_TRUE(WriteNpy(dir.File("x.npy"), NpyArray::Float32({40, 3, 4, 5}, values)).ok());
  auto data = OpenNpyDataset(dir.File("x.npy"), "");
  ASSERT_TRUE(data.ok()) << data.status();
  TraceOptions options;
  options.count = 200;
  for (TraceKind kind : {TraceKind::kIid, TraceKind::kVideo}) {
    options.kind = kind;
    auto trace = MakeTrace(options, **data);
    ASSERT_TRUE(trace.ok()) << trace.status();
    EXPECT_EQ(trace->images.shape, (std::vector<int64_t>{200, 3, 4, 5}));
    EXPECT_TRUE(trace->labels.i64.empty());  // No labels to copy.
    for (float v : trace->images.f32) {
      ASSERT_GE(v, 0.0f);  // Image data stays in [0, 1].
      ASSERT_LE(v, 1.0f);
    }
  }
  // iid requests are samples of the source, whole.
  options.kind = TraceKind::kIid;
  auto iid = MakeTrace(options, **data);
  ASSERT_TRUE(iid.ok());
  std::set<std::vector<float>> samples;
  for (int i = 0; i < 40; ++i) {
    samples.insert(std::vector<float>(values.begin() + i * 60, values.begin() + (i + 1) * 60));
  }
  for (int i = 0; i < 200; ++i) {
    const auto begin = iid->images.f32.begin() + i * 60;
    EXPECT_TRUE(samples.count(std::vector<float>(begin, begin + 60))) << "request " << i;
  }
  // Drawing by class needs labels.
  options.kind = TraceKind::kSkewed;
  auto skewed = MakeTrace(options, **data);
  ASSERT_FALSE(skewed.ok());
  EXPECT_NE(skewed.status().message().find("needs labels"), std::string::npos);
  // With labels, skewed works and copies them.
  std::vector<int64_t> labels(40);
  for (int i = 0; i < 40; ++i) labels[i] = i % 4;
  ASSERT_TRUE(WriteNpy(dir.File("y.npy"), NpyArray::Int64({40}, labels)).ok());
  auto labelled = OpenNpyDataset(dir.File("x.npy"), dir.File("y.npy"));
  ASSERT_TRUE(labelled.ok());
  auto with_labels = MakeTrace(options, **labelled);
  ASSERT_TRUE(with_labels.ok()) << with_labels.status();
  EXPECT_EQ(with_labels->labels.shape, (std::vector<int64_t>{200}));
}

TEST(TraceTest, VideoFramesOfRawDataAreNotClamped) {
  testing::TempDir dir;
  // Feature vectors [8] far outside [0, 1].
  std::vector<float> values(10 * 8);
  for (size_t i = 0; i < values.size(); ++i) values[i] = 100.0f + static_cast<float>(i);
  ASSERT_TRUE(WriteNpy(dir.File("v.npy"), NpyArray::Float32({10, 8}, values)).ok());
  auto data = OpenNpyDataset(dir.File("v.npy"), "");
  ASSERT_TRUE(data.ok());
  TraceOptions options;
  options.kind = TraceKind::kVideo;
  options.count = 50;
  auto trace = MakeTrace(options, **data);
  ASSERT_TRUE(trace.ok()) << trace.status();
  EXPECT_EQ(trace->images.shape, (std::vector<int64_t>{50, 8}));
  float largest = 0;
  for (float v : trace->images.f32) largest = std::max(largest, v);
  EXPECT_GT(largest, 50.0f);
}

}  // namespace
}  // namespace gati
