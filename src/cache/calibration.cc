#include "cache/calibration.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <cmath>
#include <numeric>

namespace gati {
namespace {

// lgamma writes the global `signgam`, a data race when monitors and
// learners compute bounds on several threads; lgamma_r does not.
double LogGamma(double x) {
  int sign = 0;
  return ::lgamma_r(x, &sign);
}

// P(Binomial(n, p) <= k), summed in log space so large n does not underflow.
double BinomialCdf(int64_t k, int64_t n, double p) {
  if (p <= 0) return 1;
  if (p >= 1) return k >= n ? 1 : 0;
  const double log_p = std::log(p);
  const double log_q = std::log1p(-p);
  const double log_n_fact = LogGamma(n + 1.0);
  double max_term = -INFINITY;
  std::vector<double> terms(k + 1);
  for (int64_t i = 0; i <= k; ++i) {
    terms[i] = log_n_fact - LogGamma(i + 1.0) - LogGamma(n - i + 1.0) +
               i * log_p + (n - i) * log_q;
    max_term = std::max(max_term, terms[i]);
  }
  double sum = 0;
  for (double term : terms) sum += std::exp(term - max_term);
  return std::min(1.0, std::exp(max_term) * sum);
}

}  // namespace

double Auroc(const std::vector<float>& raw_scores, const std::vector<bool>& positives) {
  const size_t n = std::min(raw_scores.size(), positives.size());
  // A NaN score never reaches a threshold (it misses, as in serving): the
  // lowest of all.
  std::vector<float> scores(raw_scores.begin(), raw_scores.begin() + n);
  for (float& s : scores) {
    if (std::isnan(s)) s = -std::numeric_limits<float>::infinity();
  }
  std::vector<size_t> order(n);
  for (size_t i = 0; i < n; ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return scores[a] < scores[b]; });
  // Mann-Whitney: the positives' rank sum, ties at their average rank.
  double rank_sum = 0;
  int64_t positive = 0;
  for (size_t i = 0; i < n;) {
    size_t j = i;
    while (j < n && scores[order[j]] == scores[order[i]]) ++j;
    const double average_rank = 0.5 * (static_cast<double>(i + 1) + static_cast<double>(j));
    for (size_t k = i; k < j; ++k) {
      if (positives[order[k]]) {
        rank_sum += average_rank;
        ++positive;
      }
    }
    i = j;
  }
  const int64_t negative = static_cast<int64_t>(n) - positive;
  if (positive == 0 || negative == 0) return 0.5;
  const double p = static_cast<double>(positive);
  return (rank_sum - p * (p + 1) / 2) / (p * static_cast<double>(negative));
}

double ClopperPearsonUpper(int64_t failures, int64_t trials, double confidence) {
  if (trials <= 0 || failures >= trials) return 1;
  const double alpha = 1 - confidence;
  if (failures == 0) return 1 - std::pow(alpha, 1.0 / trials);
  // The CDF falls as p rises: find where it crosses alpha.
  double low = static_cast<double>(failures) / trials;
  double high = 1;
  for (int iteration = 0; iteration < 60; ++iteration) {
    double mid = 0.5 * (low + high);
    if (BinomialCdf(failures, trials, mid) > alpha) {
      low = mid;
    } else {
      high = mid;
    }
  }
  return high;
}

double ClopperPearsonLower(int64_t failures, int64_t trials, double confidence) {
  if (trials <= 0 || failures <= 0) return 0;
  // P(X >= f | p) = 1 - P(X <= f-1 | p) rises with p: find where it is alpha.
  const double alpha = 1 - confidence;
  double low = 0;
  double high = static_cast<double>(failures) / trials;
  for (int iteration = 0; iteration < 60; ++iteration) {
    double mid = 0.5 * (low + high);
    if (1 - BinomialCdf(failures - 1, trials, mid) < alpha) {
      low = mid;
    } else {
      high = mid;
    }
  }
  return low;
}

int64_t MinimumHitsFor(double epsilon, double confidence) {
  return static_cast<int64_t>(
      std::ceil(std::log(1 - confidence) / std::log1p(-epsilon)));
}

std::vector<float> CandidateThresholds(std::vector<float> reference_scores,
                                       int64_t calibration_count,
                                       double epsilon, double confidence,
                                       int max_candidates) {
  std::vector<float> candidates;
  if (reference_scores.empty() || calibration_count <= 0 || max_candidates < 1) {
    return candidates;
  }
  std::sort(reference_scores.begin(), reference_scores.end(),
            std::greater<float>());
  // Stricter thresholds could not certify epsilon even without false hits.
  // Since the scan stops at its first failure, it starts where a false hit
  // or two can still pass (twice the minimum), not at the bare minimum.
  const double start_share = std::min(
      1.0, 2.0 * MinimumHitsFor(epsilon, confidence) / calibration_count);
  const int64_t n = static_cast<int64_t>(reference_scores.size());
  for (int step = 0; step < max_candidates; ++step) {
    double share = start_share + (1 - start_share) * step /
                                     std::max(1, max_candidates - 1);
    int64_t index = std::min<int64_t>(
        n - 1, std::max<int64_t>(0, static_cast<int64_t>(std::ceil(share * n)) - 1));
    float threshold = reference_scores[index];
    if (candidates.empty() || threshold < candidates.back()) {
      candidates.push_back(threshold);
    }
    if (start_share >= 1) break;
  }
  return candidates;
}

Calibration EvaluateThreshold(const std::vector<float>& scores,
                              const std::vector<bool>& agrees, float threshold,
                              double confidence) {
  Calibration result;
  result.samples = static_cast<int64_t>(scores.size());
  result.threshold = threshold;
  for (size_t i = 0; i < scores.size(); ++i) {
    if (scores[i] >= threshold) {
      ++result.hits;
      result.false_hits += !agrees[i];
    }
  }
  if (result.samples > 0) {
    result.hit_rate = static_cast<double>(result.hits) / result.samples;
  }
  if (result.hits > 0) {
    result.false_hit_rate = static_cast<double>(result.false_hits) / result.hits;
  }
  result.false_hit_upper_bound =
      ClopperPearsonUpper(result.false_hits, result.hits, confidence);
  return result;
}

Calibration CalibrateThreshold(const std::vector<float>& scores,
                               const std::vector<bool>& agrees,
                               const std::vector<float>& candidates,
                               double epsilon, double confidence) {
  // Samples by descending score, so each candidate extends the hit set.
  std::vector<size_t> order(scores.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(),
            [&scores](size_t a, size_t b) { return scores[a] > scores[b]; });
  Calibration kept;
  kept.samples = static_cast<int64_t>(scores.size());
  size_t next = 0;
  int64_t hits = 0;
  int64_t false_hits = 0;
  for (float threshold : candidates) {
    while (next < order.size() && scores[order[next]] >= threshold) {
      ++hits;
      false_hits += !agrees[order[next]];
      ++next;
    }
    ++kept.candidates_tested;
    double bound = ClopperPearsonUpper(false_hits, hits, confidence);
    if (bound > epsilon) break;
    kept.found = true;
    kept.threshold = threshold;
    kept.hits = hits;
    kept.false_hits = false_hits;
    kept.false_hit_upper_bound = bound;
  }
  if (kept.samples > 0) kept.hit_rate = static_cast<double>(kept.hits) / kept.samples;
  if (kept.hits > 0) {
    kept.false_hit_rate = static_cast<double>(kept.false_hits) / kept.hits;
  }
  return kept;
}

}  // namespace gati
