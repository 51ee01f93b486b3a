// Label-free drift: where answers exit (each planned tap, or the base
// model) over the most recent requests, against the shares the plan
// predicted on its planning split. A stream unlike the one the thresholds
// were certified on usually moves these shares long before enough checked
// answers show a breach, and every request counts, not only the sampled
// ones. Each exit's share in the window is compared with the plan's by a
// two-proportion z-test (the plan's share is itself an estimate from its
// planning samples). An alarm only raises the feedback rate, so a false one
// (for example on a stream with strong temporal locality) costs feedback
// work, not answers.
//
// Not thread-safe; the caller serializes.
#ifndef GATI_RUNTIME_EXIT_DRIFT_H_
#define GATI_RUNTIME_EXIT_DRIFT_H_

#include <cstdint>
#include <vector>

namespace gati::runtime {

class ExitDrift {
 public:
  // `plan_shares`: per exit (taps, then the base model), summing to about
  // 1; `reference_samples` the planning samples they come from. The window
  // is `blocks` blocks of `block` requests; it is judged after each block
  // once at least `min_requests` are in. REQUIRES: block >= 1, blocks >= 1.
  ExitDrift(std::vector<double> plan_shares, int64_t reference_samples, int block = 50,
            int blocks = 8, int64_t min_requests = 100, double z = 4.0);

  // One answer at `exit` (0..taps-1, taps = the base model). True when this
  // record ended a block whose judgement raised a new alarm.
  bool Record(int exit);
  // A whole block at once: answers per exit (a caller that counts them
  // itself, with atomics, about `block` at a time). Same return.
  bool RecordBlock(const std::vector<int64_t>& counts);
  int num_exits() const { return static_cast<int>(plan_.size()); }
  int block() const { return block_; }
  // Forgets the window (the policy behind the shares changed).
  void Reset();

  bool drifting() const { return drifting_; }
  int64_t alarms() const { return alarms_; }
  // The largest |z| of the last judgement, and the exit it was at.
  double last_z() const { return last_z_; }
  int last_exit() const { return last_exit_; }

 private:
  void Judge();
  std::vector<double> plan_;
  double reference_;
  int block_;
  int blocks_;
  int64_t min_requests_;
  double z_;
  // Counts per block (ring of blocks_) and exit, and each block's total.
  std::vector<std::vector<int64_t>> counts_;
  std::vector<int64_t> totals_;
  std::vector<int64_t> pending_;  // The block Record is filling.
  int current_ = 0;
  int64_t in_block_ = 0;
  int filled_ = 0;  // Completed blocks in the ring.
  bool drifting_ = false;
  int64_t alarms_ = 0;
  double last_z_ = 0;
  int last_exit_ = -1;
};

}  // namespace gati::runtime

#endif  // GATI_RUNTIME_EXIT_DRIFT_H_
