// The validation gate, feedback ring buffers and the live monitor.
#include <gtest/gtest.h>

#include "runtime/feedback.h"
#include "runtime/learner.h"
#include "runtime/monitor.h"
#include "runtime/runtime_testutil.h"

namespace gati::runtime {
namespace {

using testing::FakeBaseClass;
using testing::FakeCacheWeights;
using testing::FakeInputs;
using testing::kAlwaysHit;
using testing::kFakeClasses;
using testing::MakeCache;

// Rows where the features are the input and the base logits the input too.
TrainingRows FakeRows(int count, uint32_t seed) {
  TrainingRows rows;
  rows.feature_size = kFakeClasses;
  rows.num_classes = kFakeClasses;
  for (const auto& input : FakeInputs(count, seed)) {
    rows.features.insert(rows.features.end(), input.begin(), input.end());
    rows.logits.insert(rows.logits.end(), input.begin(), input.end());
    ++rows.count;
  }
  return rows;
}

TEST(ValidateUpdateTest, AcceptsAnUpdateAsGoodAsTheCurrentCache) {
  auto current = MakeCache(FakeCacheWeights(0, 0, 0.3f));
  GateDecision decision = ValidateUpdate(*current, false, FakeCacheWeights(0, 0, 0.3f),
                                         FakeRows(300, 1), FakeRows(600, 2), 0.05, 0.95);
  EXPECT_TRUE(decision.accepted) << decision.reason;
  ASSERT_NE(decision.cache, nullptr);
  EXPECT_TRUE(decision.cache->weights().enabled);
  EXPECT_GE(decision.candidate.hit_rate, decision.current_hit_rate);
  EXPECT_LE(decision.candidate.false_hit_upper_bound, 0.05);
}

TEST(ValidateUpdateTest, RejectsAnUpdateThatAnswersWrong) {
  auto current = MakeCache(FakeCacheWeights(0, 0, 0.3f));
  // Off by one class: every confident answer is a false hit.
  GateDecision decision = ValidateUpdate(*current, false, FakeCacheWeights(0, 1, 0.3f),
                                         FakeRows(300, 1), FakeRows(600, 2), 0.05, 0.95);
  EXPECT_FALSE(decision.accepted);
  EXPECT_EQ(decision.cache, nullptr);
  EXPECT_NE(decision.reason.find("no threshold keeps"), std::string::npos) << decision.reason;
}

TEST(ValidateUpdateTest, RejectsAnUpdateThatHitsLess) {
  // The current cache hits everything correctly. The candidate favours
  // class 0, so it errs on inputs whose top class barely beats class 0;
  // those have small margins and the bound makes it leave them out.
  auto current = MakeCache(FakeCacheWeights(0, 0, kAlwaysHit));
  CacheWeights biased = FakeCacheWeights(0, 0, 0.3f);
  biased.predictor.back().bias[0] = 1.5f;
  GateDecision decision = ValidateUpdate(*current, false, biased, FakeRows(300, 1),
                                         FakeRows(600, 2), 0.05, 0.95);
  EXPECT_FALSE(decision.accepted);
  EXPECT_DOUBLE_EQ(decision.current_hit_rate, 1.0);
  EXPECT_NE(decision.reason.find("below the current"), std::string::npos) << decision.reason;
  // A switched-off tap has no hit rate to defend: the bound alone decides.
  GateDecision revive = ValidateUpdate(*current, true, biased, FakeRows(300, 1),
                                       FakeRows(600, 2), 0.05, 0.95);
  EXPECT_TRUE(revive.accepted) << revive.reason;
  EXPECT_LT(revive.candidate.hit_rate, 1.0);
}

TEST(FeedbackStoreTest, RingKeepsTheNewestRowsUnderTheCap) {
  // Rows of tap 0: (3 + 2) floats = 20 bytes; 2 taps share 400 bytes.
  FeedbackStore store({3, 8}, /*num_classes=*/2, /*memory_bytes=*/400, /*rows_per_tap=*/100);
  EXPECT_EQ(store.capacity_rows(0), 10);  // 200 bytes / 20.
  EXPECT_EQ(store.capacity_rows(1), 5);   // 200 bytes / 40.
  for (int i = 0; i < 25; ++i) {
    float features[3] = {float(i), float(i), float(i)};
    float logits[2] = {float(i), -float(i)};
    store.Add(0, features, logits);
  }
  EXPECT_EQ(store.rows(0), 10);
  EXPECT_LE(store.bytes(), 400);
  TrainingRows rows = store.Snapshot(0);
  ASSERT_EQ(rows.count, 10);
  for (int k = 0; k < 10; ++k) EXPECT_EQ(rows.features[k * 3], 15 + k);  // Oldest first.
  EXPECT_EQ(rows.label(0), 0);
  EXPECT_EQ(store.total_added(), 25);
  // A cap smaller than one row keeps nothing rather than overflowing.
  FeedbackStore tiny({100}, 2, 10, 100);
  float big[100] = {};
  float logits[2] = {};
  tiny.Add(0, big, logits);
  EXPECT_EQ(tiny.rows(0), 0);
  EXPECT_EQ(tiny.bytes(), 0);
}

TEST(TapMonitorTest, SwitchesOffOnlyWhenTheLowerBoundExceedsEpsilon) {
  TapMonitor monitor(/*epsilons=*/{0.05}, /*window=*/200, /*min_checks=*/50, 0.95);
  // One false hit in the first check would put the 95% lower bound at 5%:
  // too few checks to judge.
  EXPECT_FALSE(monitor.Record(0, true));
  EXPECT_FALSE(monitor.disabled(0));
  monitor.Reset(0);
  // 2% false hits: within the bound, stays on.
  for (int i = 0; i < 200; ++i) EXPECT_FALSE(monitor.Record(0, i % 50 == 0));
  EXPECT_FALSE(monitor.disabled(0));
  EXPECT_LT(monitor.lower_bound(0), 0.05);
  // 20% false hits: the lower bound climbs past 5% and the tap goes off once.
  int switched = 0;
  for (int i = 0; i < 200; ++i) switched += monitor.Record(0, i % 5 == 0);
  EXPECT_EQ(switched, 1);
  EXPECT_TRUE(monitor.disabled(0));
  EXPECT_EQ(monitor.times_disabled(0), 1);
  monitor.Reset(0);
  EXPECT_FALSE(monitor.disabled(0));
  EXPECT_EQ(monitor.lower_bound(0), 0);
  EXPECT_EQ(monitor.checked(0), 401);
}

}  // namespace
}  // namespace gati::runtime
