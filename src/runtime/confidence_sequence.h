// An anytime-valid confidence sequence for the mean of a stream of [0, 1]
// observations (here: whether a served answer disagreed with the base
// model), by betting (Waudby-Smith and Ramdas, "Estimating means of bounded
// random variables by betting", 2023): for every candidate mean m on a grid,
// two capital processes bet that the mean lies below and above m,
//   K_up(m)   = prod_i (1 - l_i (x_i - m)),  l_i in [0, c / (1 - m)],
//   K_down(m) = prod_i (1 + l_i (x_i - m)),  l_i in [0, c / m],
// with bets l_i chosen from the observations before i only (the Kelly bet
// for the running mean, truncated at c = 0.9 of the most that keeps the
// capital positive). Under mean m each is a nonnegative martingale, so by
// Ville's inequality it ever reaches 2 / alpha with probability at most
// alpha / 2: the m that neither rejects form a confidence set valid at every
// time at once, however often it is looked at — unlike a fixed-n
// Clopper-Pearson test run again on a growing stream.
//
// Not thread-safe; the caller serializes.
#ifndef GATI_RUNTIME_CONFIDENCE_SEQUENCE_H_
#define GATI_RUNTIME_CONFIDENCE_SEQUENCE_H_

#include <cstdint>
#include <vector>

namespace gati::runtime {

class BettingConfidenceSequence {
 public:
  // `alpha`: total miscoverage (two-sided), in (0, 1). `targets`: means the
  // caller tests exactly (for example epsilon); they join the grid.
  explicit BettingConfidenceSequence(double alpha, std::vector<double> targets = {});

  // One observation in [0, 1] (clamped).
  void Add(double x);
  // Starts over (for example after the policy that produced the stream
  // changed).
  void Reset();

  int64_t count() const { return count_; }
  double mean() const { return count_ > 0 ? sum_ / count_ : 0.0; }
  // Bounds now: every grid mean above `upper` has been shown too large,
  // every one below `lower` too small (rounded outwards to grid points).
  // Before any observation: [0, 1]. Running intersection: never wider than
  // at an earlier time.
  double lower() const { return lower_; }
  double upper() const { return upper_; }
  // Whether the stream's mean is, with confidence 1 - alpha / 2, above
  // (below) `target`, one of the constructor's targets.
  bool Above(double target) const;
  bool Below(double target) const;

 private:
  struct Candidate {
    double m;
    double log_up = 0;    // log K_up(m): large when the mean is below m.
    double log_down = 0;  // log K_down(m): large when the mean is above m.
    bool rejected_up = false, rejected_down = false;
  };
  const Candidate* Find(double target) const;

  double log_threshold_;  // log(2 / alpha).
  std::vector<Candidate> grid_;  // Ascending m.
  int64_t count_ = 0;
  double sum_ = 0;
  double lower_ = 0, upper_ = 1;
};

}  // namespace gati::runtime

#endif  // GATI_RUNTIME_CONFIDENCE_SEQUENCE_H_
