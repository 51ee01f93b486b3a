// Threshold calibration with a finite-sample guarantee.
//
// For a cache, a threshold t on the selector score makes "hits" of the
// samples scoring >= t; a false hit is a hit whose class differs from the
// base model's. Candidates are scanned from the strictest down (fixed-sequence
// testing): each is accepted while the one-sided Clopper-Pearson upper
// confidence bound of its false-hit rate among hits on the calibration split
// stays <= epsilon; the scan stops at the first that exceeds it and keeps the
// last accepted one. With probability >= confidence over the calibration
// sample, the kept threshold's false-hit rate is <= epsilon.
#ifndef GATI_CACHE_CALIBRATION_H_
#define GATI_CACHE_CALIBRATION_H_

#include <cstdint>
#include <vector>

namespace gati {

// One-sided upper confidence bound for a binomial proportion after
// `failures` out of `trials` (Clopper-Pearson): the p with
// P(Binomial(trials, p) <= failures) = 1 - confidence. 1 when trials == 0 or
// failures == trials. REQUIRES: 0 <= failures <= trials, 0 < confidence < 1.
double ClopperPearsonUpper(int64_t failures, int64_t trials, double confidence);
// The matching lower bound: P(Binomial(trials, p) >= failures) =
// 1 - confidence; 0 when failures == 0.
double ClopperPearsonLower(int64_t failures, int64_t trials, double confidence);

// Area under the ROC curve of `scores` for telling `positives` from the
// rest (the probability that a random positive outscores a random
// negative, ties counting half); 0.5 when either class is empty.
// REQUIRES: scores.size() == positives.size().
double Auroc(const std::vector<float>& scores, const std::vector<bool>& positives);

// Fewest hits that can certify `epsilon` (with zero false hits).
int64_t MinimumHitsFor(double epsilon, double confidence);

// Candidate thresholds, strictest first, fixed before the calibration split
// is seen: quantiles of `reference_scores` (selector scores on the selector's
// training split) at hit shares from twice the smallest that can certify
// epsilon on `calibration_count` samples up to 1, at most `max_candidates`.
std::vector<float> CandidateThresholds(std::vector<float> reference_scores,
                                       int64_t calibration_count,
                                       double epsilon, double confidence,
                                       int max_candidates = 200);

struct Calibration {
  bool found = false;       // False: no candidate passed; the cache never hits.
  float threshold = 1.0f;   // Meaningful when found.
  int64_t samples = 0;      // Calibration split size.
  int64_t hits = 0;
  int64_t false_hits = 0;
  double hit_rate = 0;
  double false_hit_rate = 0;         // false_hits / hits (0 without hits).
  double false_hit_upper_bound = 1;  // Clopper-Pearson at `confidence`.
  int candidates_tested = 0;
};

// Runs the fixed-sequence scan over `candidates` (strictest first) on the
// calibration split's `scores` and `agrees` (predictor class == base class).
// REQUIRES: scores.size() == agrees.size().
Calibration CalibrateThreshold(const std::vector<float>& scores,
                               const std::vector<bool>& agrees,
                               const std::vector<float>& candidates,
                               double epsilon, double confidence);

// Hit and false-hit counts of a fixed threshold on a split.
Calibration EvaluateThreshold(const std::vector<float>& scores,
                              const std::vector<bool>& agrees, float threshold,
                              double confidence);

}  // namespace gati

#endif  // GATI_CACHE_CALIBRATION_H_
