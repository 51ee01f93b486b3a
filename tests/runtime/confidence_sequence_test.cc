// The live bound's confidence sequence: valid at every time at once (its
// coverage over whole streams), and quick to decide when the evidence is
// clear.
#include "runtime/confidence_sequence.h"

#include <gtest/gtest.h>

#include <cstdio>

#include "runtime/uniform_draw.h"

namespace gati::runtime {
namespace {

// Bernoulli(p) draws from a seeded SplitMix64 sequence.
struct Stream {
  uint64_t seed;
  uint64_t next = 0;
  double Draw(double p) { return UniformDraw(seed, next++) < p ? 1.0 : 0.0; }
};

TEST(ConfidenceSequenceTest, CoversTheMeanAtEveryTimeOfMostStreams) {
  // Over 100 streams of 2,000 observations, the share whose set ever
  // excludes the true mean stays below alpha = 0.05, although the bounds
  // are read after every observation.
  for (double p : {0.004, 0.03}) {
    int missed = 0;
    for (uint64_t s = 0; s < 100; ++s) {
      BettingConfidenceSequence sequence(0.05, {p});
      Stream stream{s * 7919 + 1};
      bool excluded = false;
      for (int i = 0; i < 2000 && !excluded; ++i) {
        sequence.Add(stream.Draw(p));
        excluded = sequence.lower() > p || sequence.upper() < p || sequence.Above(p) ||
                   sequence.Below(p);
      }
      missed += excluded;
    }
    EXPECT_LE(missed, 5) << "p = " << p;
  }
}

TEST(ConfidenceSequenceTest, CertifiesAnAgreeingStreamAndCatchesABrokenOne) {
  BettingConfidenceSequence clean(0.05, {0.01});
  int certified_at = -1;
  for (int i = 1; i <= 1000 && certified_at < 0; ++i) {
    clean.Add(0);
    if (clean.Below(0.01)) certified_at = i;
  }
  // A fixed-n Clopper-Pearson test needs 299; an anytime-valid one a little more.
  EXPECT_GT(certified_at, 299);
  EXPECT_LT(certified_at, 600);
  EXPECT_LT(clean.upper(), 0.012);
  EXPECT_EQ(clean.lower(), 0.0);

  // Disagreement 7 times the bound is caught within 150 observations.
  BettingConfidenceSequence broken(0.05, {0.01});
  Stream stream{42};
  int caught_at = -1;
  for (int i = 1; i <= 1000 && caught_at < 0; ++i) {
    broken.Add(stream.Draw(0.07));
    if (broken.Above(0.01)) caught_at = i;
  }
  EXPECT_GT(caught_at, 0);
  EXPECT_LT(caught_at, 150);
  std::printf("certified 0.01 after %d agreeing answers; caught 0.07 after %d\n", certified_at, caught_at);
  EXPECT_GE(broken.lower(), 0.01);
  EXPECT_FALSE(broken.Below(0.01));
}

TEST(ConfidenceSequenceTest, AMeanBetweenGridPointsStaysInsideTheBounds) {
  BettingConfidenceSequence sequence(0.05);  // 0.109 is no grid point.
  Stream stream{5};
  for (int i = 0; i < 3000; ++i) {
    sequence.Add(stream.Draw(0.109));
    ASSERT_LE(sequence.lower(), 0.109) << "after " << i + 1;
    ASSERT_GE(sequence.upper(), 0.109) << "after " << i + 1;
  }
  EXPECT_LT(sequence.upper() - sequence.lower(), 0.06);
  EXPECT_GT(sequence.lower(), 0.05);
}

TEST(ConfidenceSequenceTest, StartsOverOnReset) {
  BettingConfidenceSequence sequence(0.05, {0.01});
  for (int i = 0; i < 50; ++i) sequence.Add(1);
  EXPECT_TRUE(sequence.Above(0.01));
  EXPECT_EQ(sequence.count(), 50);
  EXPECT_DOUBLE_EQ(sequence.mean(), 1.0);
  sequence.Reset();
  EXPECT_EQ(sequence.count(), 0);
  EXPECT_FALSE(sequence.Above(0.01));
  EXPECT_EQ(sequence.lower(), 0.0);
  EXPECT_EQ(sequence.upper(), 1.0);
}

}  // namespace
}  // namespace gati::runtime
