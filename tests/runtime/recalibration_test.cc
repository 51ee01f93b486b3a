// Threshold recalibration (Learn-then-Test on the feedback window) and the
// label-free exit-share drift check.
#include <gtest/gtest.h>

#include <random>

#include "cache/calibration.h"
#include "runtime/exit_drift.h"
#include "runtime/recalibration.h"

namespace gati::runtime {
namespace {

PolicyCosts Costs(int slots, double miss_overhead = 0, double lookup = 0) {
  PolicyCosts costs;
  for (int s = 0; s < slots; ++s) {
    costs.exit_saving.push_back(1.0 - 0.3 * s);
    costs.lookup.push_back(lookup);
  }
  costs.miss_overhead = miss_overhead;
  return costs;
}

// Two taps: tap 0 confident and wrong on `wrong_share` of the samples,
// tap 1 scoring uniformly and always right.
RecalibrationWindow ShiftedWindow(int64_t samples, double wrong_share, uint32_t seed) {
  RecalibrationWindow window(2, 4000);
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> uniform(0.0f, 1.0f);
  for (int64_t i = 0; i < samples; ++i) {
    const bool wrong = uniform(rng) < wrong_share;
    const float scores[2] = {0.99f, uniform(rng)};
    const int labels[2] = {wrong ? 1 : 0, 0};
    window.Add(scores, labels, 0);
  }
  return window;
}

TEST(RecalibrationTest, OffsetsMoveThresholdsInLogitSpace) {
  EXPECT_FLOAT_EQ(OffsetThreshold(0.5f, 0), 0.5f);
  EXPECT_NEAR(OffsetThreshold(0.5f, 2), 1 / (1 + std::exp(-2.0)), 1e-6);
  EXPECT_NEAR(OffsetThreshold(0.5f, -2), 1 / (1 + std::exp(2.0)), 1e-6);
  EXPECT_GT(OffsetThreshold(0.96f, 1), 0.96f);
  EXPECT_LT(OffsetThreshold(0.96f, -1), 0.96f);
  EXPECT_EQ(OffsetThreshold(kThresholdOff, -2), kThresholdOff) << "off stays off";
  EXPECT_EQ(OffsetThreshold(1.0f, -2), 1.0f);
}

TEST(RecalibrationTest, EvaluateReplaysTheFirstHitAndItsCosts) {
  RecalibrationWindow window(2, 10);
  const float hit_first[2] = {0.9f, 0.9f};
  const float hit_second[2] = {0.1f, 0.9f};
  const float miss[2] = {0.1f, 0.1f};
  const int labels[2] = {1, 0};
  window.Add(hit_first, labels, 0);   // Tap 0 answers 1: a disagreement.
  window.Add(hit_second, labels, 0);  // Tap 1 answers 0.
  window.Add(miss, labels, 0);
  ThresholdPolicy policy = MakePolicy({0.5f, 0.5f}, {false, false}, 0, 0);
  PolicyEvaluation e = Evaluate(window, policy, Costs(2, /*miss_overhead=*/0.3, /*lookup=*/0.1));
  EXPECT_EQ(e.samples, 3);
  EXPECT_EQ(e.hits, 2);
  EXPECT_EQ(e.disagreements, 1);
  // (1.0 - 0.1) + (0.7 - 0.2) - (0.2 + 0.3), over 3.
  EXPECT_NEAR(e.saving, (0.9 + 0.5 - 0.5) / 3, 1e-9);
  policy = MakePolicy({0.5f, 0.5f}, {false, false}, 1, 0);
  e = Evaluate(window, policy, Costs(2));
  EXPECT_EQ(e.hits, 2);
  EXPECT_EQ(e.disagreements, 0);
  EXPECT_EQ(Evaluate(window, MakePolicy({0.5f, 0.5f}, {false, false}, 2, 0), Costs(2)).saving, 0);
}

TEST(RecalibrationTest, CertifiesTheRightTapAloneOnceTheWindowIsLargeEnough) {
  const std::vector<float> base = {0.5f, 0.5f};
  const std::vector<bool> none_off = {false, false};
  // Two chains at 0.95: each tests at 0.975, so a clean policy needs
  // MinimumHitsFor(0.01, 0.975) samples (368).
  const int64_t needed = MinimumHitsFor(0.01, 0.975);
  ASSERT_GT(needed, 300);
  Recalibration small =
      Recalibrate(ShiftedWindow(needed - 1, 0.3, 1), base, none_off, Costs(2), 0.01, 0.95);
  EXPECT_FALSE(small.certified);
  EXPECT_FALSE(small.policy.any_on());
  Recalibration enough =
      Recalibrate(ShiftedWindow(needed, 0.3, 1), base, none_off, Costs(2), 0.01, 0.95);
  ASSERT_TRUE(enough.certified);
  EXPECT_EQ(enough.policy.taps_off, 1);
  EXPECT_GT(enough.policy.thresholds[0], 1.0f);
  EXPECT_EQ(enough.evaluation.disagreements, 0);
  EXPECT_LT(enough.upper_bound, 0.01);
  // Tap 1 is always right: the loosest offset answers most.
  EXPECT_EQ(enough.policy.offset, RecalibrationOffsets().back());
  EXPECT_EQ(enough.policy.Describe({2, 6}), "plan thresholds -2.0 logits, taps 2 off");
}

TEST(RecalibrationTest, KeepsTheFastTapWhenItsErrorsFitTheBound) {
  // Tap 0 wrong on 0.2% of 4000: certified with tap 0 on, which saves more.
  Recalibration r = Recalibrate(ShiftedWindow(4000, 0.002, 2), {0.5f, 0.5f}, {false, false},
                                Costs(2), 0.01, 0.95);
  ASSERT_TRUE(r.certified);
  EXPECT_EQ(r.policy.taps_off, 0);
  EXPECT_LE(r.policy.thresholds[0], 1.0f);
}

TEST(RecalibrationTest, ATapTheMonitorSwitchedOffStaysOff) {
  Recalibration r = Recalibrate(ShiftedWindow(4000, 0.0, 3), {0.5f, 0.5f}, {true, false},
                                Costs(2), 0.01, 0.95);
  ASSERT_TRUE(r.certified);
  EXPECT_GT(r.policy.thresholds[0], 1.0f);
  EXPECT_LE(r.policy.thresholds[1], 1.0f);
}

TEST(RecalibrationTest, APolicyThatSavesNothingLosesToTheWholeModel) {
  // Only tap 1 is safe, and its misses cost more than its hits save.
  Recalibration r = Recalibrate(ShiftedWindow(4000, 0.3, 4), {0.5f, 0.5f}, {false, false},
                                Costs(2, /*miss_overhead=*/10.0), 0.01, 0.95);
  EXPECT_FALSE(r.certified);
  EXPECT_TRUE(r.any_passed) << "safe, but not worth it";
  EXPECT_FALSE(r.policy.any_on());
}

TEST(RecalibrationTest, WindowKeepsTheNewestSamples) {
  RecalibrationWindow window(1, 3);
  for (int i = 0; i < 5; ++i) {
    const float score = static_cast<float>(i);
    const int label = i;
    window.Add(&score, &label, i);
  }
  EXPECT_EQ(window.size(), 3);
  EXPECT_EQ(window.total_added(), 5);
  std::vector<int> kept;
  for (int64_t i = 0; i < window.size(); ++i) kept.push_back(window.base_label(i));
  std::sort(kept.begin(), kept.end());
  EXPECT_EQ(kept, (std::vector<int>{2, 3, 4}));
  window.Clear();
  EXPECT_EQ(window.size(), 0);
}

TEST(ExitDriftTest, SharesLikeThePlansRaiseNoAlarm) {
  ExitDrift drift({0.6, 0.25, 0.15}, 3000);
  std::mt19937 rng(5);
  std::discrete_distribution<int> exits({0.6, 0.25, 0.15});
  for (int i = 0; i < 20000; ++i) drift.Record(exits(rng));
  EXPECT_EQ(drift.alarms(), 0);
  EXPECT_FALSE(drift.drifting());
}

TEST(ExitDriftTest, MovedSharesRaiseAnAlarmWithinAFewBlocks) {
  ExitDrift drift({0.6, 0.25, 0.15}, 3000);
  std::mt19937 rng(6);
  std::discrete_distribution<int> same({0.6, 0.25, 0.15});
  for (int i = 0; i < 2000; ++i) drift.Record(same(rng));
  ASSERT_FALSE(drift.drifting());
  // The base model answers 60% instead of 15%.
  std::discrete_distribution<int> moved({0.3, 0.1, 0.6});
  int at = -1;
  for (int i = 0; i < 1000 && at < 0; ++i) {
    if (drift.Record(moved(rng))) at = i;
  }
  EXPECT_GE(at, 0);
  EXPECT_LT(at, 250) << "the old blocks still dilute the window";
  EXPECT_EQ(drift.last_exit(), 2);
  EXPECT_EQ(drift.alarms(), 1);
  drift.Reset();
  EXPECT_FALSE(drift.drifting());
}

}  // namespace
}  // namespace gati::runtime
