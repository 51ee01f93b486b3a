#include "cache/calibration.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <random>

namespace gati {
namespace {

// P(Binomial(n, p) <= k) by direct summation, independent of the library's.
double DirectBinomialCdf(int k, int n, double p) {
  long double sum = 0;
  long double choose = 1;
  for (int i = 0; i <= k; ++i) {
    if (i > 0) choose = choose * (n - i + 1) / i;
    sum += choose * std::pow((long double)p, i) * std::pow(1.0L - p, n - i);
  }
  return static_cast<double>(sum);
}

TEST(ClopperPearsonTest, ZeroFailuresHasTheClosedForm) {
  for (int n : {1, 10, 299, 3000}) {
    EXPECT_NEAR(ClopperPearsonUpper(0, n, 0.95), 1 - std::pow(0.05, 1.0 / n), 1e-12);
  }
  EXPECT_EQ(MinimumHitsFor(0.01, 0.95), 299);
}

TEST(ClopperPearsonTest, UpperBoundSolvesTheBinomialTail) {
  EXPECT_NEAR(ClopperPearsonUpper(1, 100, 0.95), 0.0466, 5e-4);
  for (auto [f, n] : {std::pair{1, 100}, {5, 300}, {30, 400}, {99, 100}}) {
    double upper = ClopperPearsonUpper(f, n, 0.95);
    EXPECT_GT(upper, static_cast<double>(f) / n);
    EXPECT_NEAR(DirectBinomialCdf(f, n, upper), 0.05, 1e-6) << f << "/" << n;
  }
  EXPECT_EQ(ClopperPearsonUpper(0, 0, 0.95), 1.0);
  EXPECT_EQ(ClopperPearsonUpper(7, 7, 0.95), 1.0);
}

TEST(ClopperPearsonTest, LowerBoundMirrorsTheUpper) {
  for (auto [f, n] : {std::pair{1, 100}, {5, 300}, {60, 200}}) {
    EXPECT_NEAR(ClopperPearsonLower(f, n, 0.95),
                1 - ClopperPearsonUpper(n - f, n, 0.95), 1e-9);
  }
  EXPECT_EQ(ClopperPearsonLower(0, 50, 0.95), 0.0);
}

TEST(CalibrationTest, CandidatesStartWhereEpsilonCanBeCertified) {
  std::vector<float> reference(1000);
  for (int i = 0; i < 1000; ++i) reference[i] = i / 1000.0f;
  std::vector<float> candidates = CandidateThresholds(reference, 3000, 0.01, 0.95);
  ASSERT_GT(candidates.size(), 10u);
  // 2 * 299 of 3000 calibration samples: the top ~20% of scores.
  EXPECT_NEAR(candidates.front(), 0.80f, 0.01f);
  EXPECT_FLOAT_EQ(candidates.back(), 0.0f);
  for (size_t i = 1; i < candidates.size(); ++i) {
    EXPECT_LT(candidates[i], candidates[i - 1]);
  }
  // Too few calibration samples for epsilon: only the loosest candidate.
  EXPECT_EQ(CandidateThresholds(reference, 100, 0.01, 0.95).size(), 1u);
}

TEST(CalibrationTest, ScanStopsAtTheFirstFailure) {
  // 400 agreeing samples at the top, then a block of disagreeing ones, then
  // agreeing ones again: a scan that skipped failures would go past the block.
  std::vector<float> scores;
  std::vector<bool> agrees;
  for (int i = 0; i < 1200; ++i) {
    scores.push_back(1.0f - i / 1200.0f);
    agrees.push_back(!(i >= 400 && i < 450));
  }
  std::vector<float> candidates;
  // Candidate for i hits lies between the i-th and (i+1)-th score.
  for (int i = 300; i < 1200; i += 25) {
    candidates.push_back(1.0f - (i - 0.5f) / 1200.0f);
  }
  Calibration result = CalibrateThreshold(scores, agrees, candidates, 0.02, 0.95);
  ASSERT_TRUE(result.found);
  EXPECT_EQ(result.false_hits, 0);
  EXPECT_EQ(result.hits, 400);
  EXPECT_EQ(result.candidates_tested, 6);
  EXPECT_LE(result.false_hit_upper_bound, 0.02);
  EXPECT_NEAR(result.hit_rate, result.hits / 1200.0, 1e-12);
}

TEST(CalibrationTest, EvaluateThresholdCountsHitsAndFalseHits) {
  std::vector<float> scores = {0.9f, 0.8f, 0.7f, 0.6f};
  std::vector<bool> agrees = {true, false, true, true};
  Calibration result = EvaluateThreshold(scores, agrees, 0.7f, 0.95);
  EXPECT_EQ(result.hits, 3);
  EXPECT_EQ(result.false_hits, 1);
  EXPECT_DOUBLE_EQ(result.hit_rate, 0.75);
  EXPECT_DOUBLE_EQ(result.false_hit_rate, 1.0 / 3);
  EXPECT_DOUBLE_EQ(result.false_hit_upper_bound, ClopperPearsonUpper(1, 3, 0.95));
}

TEST(CalibrationTest, NoCandidatePassingMeansNeverHit) {
  std::vector<float> scores = {0.9f, 0.8f, 0.7f};
  std::vector<bool> agrees = {true, false, true};
  Calibration result = CalibrateThreshold(scores, agrees, {0.85f, 0.5f}, 0.01, 0.95);
  EXPECT_FALSE(result.found);
  EXPECT_EQ(result.hits, 0);
  EXPECT_EQ(result.candidates_tested, 1);
}

// The guarantee itself. A synthetic cache: selector score s ~ U(0, 1), the
// answer is wrong with probability 0.12 (1 - s)^2, so the false-hit rate
// among hits at threshold t is 0.04 (1 - t)^2 in closed form. Calibrated on
// 3,000 samples per run, the chosen threshold's true false-hit rate must be
// <= epsilon in >= 95% of 400 runs. The setting is tight enough to fail: the
// point estimate (largest hit set whose observed rate is <= epsilon) breaks
// the bound in a large share of the same runs.
TEST(CalibrationTest, ThresholdsKeepTheFalseHitRateInMostRuns) {
  const double epsilon = 0.01;
  auto true_false_hit_rate = [](double t) { return 0.04 * (1 - t) * (1 - t); };
  const int runs = 400;
  int kept = 0, found = 0, point_estimate_broke = 0;
  for (int run = 0; run < runs; ++run) {
    std::mt19937_64 rng(1000 + run);
    std::uniform_real_distribution<double> uniform(0, 1);
    auto sample = [&](int n, std::vector<float>* scores, std::vector<bool>* agrees) {
      for (int i = 0; i < n; ++i) {
        double s = uniform(rng);
        scores->push_back(static_cast<float>(s));
        agrees->push_back(uniform(rng) >= 0.12 * (1 - s) * (1 - s));
      }
    };
    std::vector<float> reference, scores;
    std::vector<bool> reference_agrees, agrees;
    sample(2000, &reference, &reference_agrees);
    sample(3000, &scores, &agrees);
    auto candidates = CandidateThresholds(reference, 3000, epsilon, 0.95);
    Calibration result = CalibrateThreshold(scores, agrees, candidates, epsilon, 0.95);
    if (!result.found) {
      ++kept;  // Never hitting cannot break the bound.
    } else {
      ++found;
      kept += true_false_hit_rate(result.threshold) <= epsilon;
    }
    float point_estimate = 1.0f;
    for (float t : candidates) {
      int hits = 0, false_hits = 0;
      for (size_t i = 0; i < scores.size(); ++i) {
        hits += scores[i] >= t;
        false_hits += scores[i] >= t && !agrees[i];
      }
      if (hits > 0 && false_hits <= epsilon * hits) point_estimate = t;
    }
    point_estimate_broke += true_false_hit_rate(point_estimate) > epsilon;
  }
  EXPECT_GE(found, runs * 3 / 4) << "the synthetic cache should be usable";
  EXPECT_GE(kept, runs * 95 / 100) << kept << " of " << runs;
  std::printf("found %d, kept %d, point estimate broke %d of %d runs\n", found,
              kept, point_estimate_broke, runs);
  EXPECT_GE(point_estimate_broke, runs / 5) << point_estimate_broke << " of " << runs;
}

TEST(AurocTest, CountsPairsAndTies) {
  EXPECT_DOUBLE_EQ(Auroc({0.1f, 0.2f, 0.8f, 0.9f}, {false, false, true, true}), 1.0);
  EXPECT_DOUBLE_EQ(Auroc({0.1f, 0.2f, 0.8f, 0.9f}, {true, true, false, false}), 0.0);
  // One positive above one of two negatives: 1 of 2 pairs.
  EXPECT_DOUBLE_EQ(Auroc({0.3f, 0.5f, 0.7f}, {false, true, false}), 0.5);
  // Ties count half: every pair tied.
  EXPECT_DOUBLE_EQ(Auroc({0.5f, 0.5f, 0.5f}, {true, false, false}), 0.5);
  // 3 positives, 2 negatives; pairs won: 0.9 beats both, 0.6 beats 0.4 and
  // ties 0.6, 0.2 beats none: 2 + 1.5 + 0 = 3.5 of 6.
  EXPECT_DOUBLE_EQ(Auroc({0.9f, 0.6f, 0.2f, 0.6f, 0.4f}, {true, true, true, false, false}),
                   3.5 / 6);
  EXPECT_DOUBLE_EQ(Auroc({0.1f, 0.2f}, {true, true}), 0.5) << "one class only";
  EXPECT_DOUBLE_EQ(Auroc({}, {}), 0.5);
  // A NaN score misses, as in serving: the lowest of all (and no hang).
  EXPECT_DOUBLE_EQ(Auroc({std::nanf(""), 0.2f, 0.9f}, {false, false, true}), 1.0);
  EXPECT_DOUBLE_EQ(Auroc({std::nanf(""), 0.2f, 0.9f}, {true, false, false}), 0.0);
}

}  // namespace
}  // namespace gati
