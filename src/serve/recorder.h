// Records a sample of the inputs `gati serve` answered, as data for later
// builds (`gati build --data DIR/MODEL`): per model, .npy shards of raw
// values (the normalization undone, as a Dataset reads them), each written
// atomically (a temporary file, then a rename) by a background thread, so
// that a request never waits for the disk; recording stops when the next
// shard would pass the byte cap. Which requests are recorded is a seeded
// sequence of draws (SplitMix64) at `rate`.
#ifndef GATI_SERVE_RECORDER_H_
#define GATI_SERVE_RECORDER_H_

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "gati/model.h"
#include "gati/status.h"
#include "runtime/mutex.h"

namespace gati::serve {

struct RecordOptions {
  std::string dir;               // Shards go to dir/<model>/shard-NNNNNN.npy.
  double rate = 0.01;            // Share of samples recorded, in (0, 1].
  int64_t max_bytes = 1ll << 30;  // Cap on the shards' bytes, all models.
  int64_t shard_samples = 256;   // Samples per shard (the last may hold fewer).
  uint64_t seed = 1;
};

class TrafficRecorder {
 public:
  // Creates `options.dir` when missing. InvalidArgument for bad options;
  // an error naming the directory when it cannot be made or written.
  static absl::StatusOr<std::unique_ptr<TrafficRecorder>> Create(const RecordOptions& options);
  // Writes what is buffered (a last, partial shard per model), then stops.
  ~TrafficRecorder();

  // Offers `count` normalized samples of `metadata`'s input shape; each is
  // recorded with probability rate. Thread-safe; never blocks on the disk.
  void Offer(const std::string& model, const ModelMetadata& metadata, const float* samples,
             int64_t count);
  // Waits until every full shard handed to the writer is on disk.
  void Flush();

  int64_t recorded() const { return recorded_.load(); }
  int64_t written_bytes() const { return written_bytes_.load(); }
  int64_t shards() const { return shards_.load(); }
  // Samples not recorded because the cap was reached.
  int64_t dropped() const { return dropped_.load(); }

 private:
  explicit TrafficRecorder(const RecordOptions& options);
  struct Shard {
    std::string path;
    std::vector<int64_t> shape;  // [n, sample shape...].
    std::vector<float> values;
  };
  struct Buffer {
    std::vector<int64_t> sample_shape;
    std::vector<float> values;
    int64_t samples = 0;
    int64_t next_shard = 0;
  };
  void HandOff(const std::string& model, Buffer& buffer) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  void WriterLoop();

  const RecordOptions options_;
  std::atomic<uint64_t> draws_{0};
  std::atomic<int64_t> recorded_{0}, written_bytes_{0}, shards_{0}, dropped_{0};
  runtime::Mutex mutex_;
  std::condition_variable changed_;
  std::map<std::string, Buffer> buffers_ ABSL_GUARDED_BY(mutex_);
  std::deque<Shard> queue_ ABSL_GUARDED_BY(mutex_);
  int64_t committed_bytes_ ABSL_GUARDED_BY(mutex_) = 0;  // Queued or written.
  bool full_ ABSL_GUARDED_BY(mutex_) = false;
  bool writing_ ABSL_GUARDED_BY(mutex_) = false;
  bool stopping_ ABSL_GUARDED_BY(mutex_) = false;
  std::thread writer_;
};

}  // namespace gati::serve

#endif  // GATI_SERVE_RECORDER_H_
