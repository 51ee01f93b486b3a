#include "serve/recorder.h"

#include <cstdio>
#include <filesystem>
#include <memory>

#include "absl/strings/str_cat.h"
#include "data/npy.h"
#include "runtime/uniform_draw.h"
#include "spdlog/spdlog.h"

namespace gati::serve {
namespace {

// NPY header and padding: an upper bound of what a shard adds to its data.
constexpr int64_t kHeaderBytes = 128;

}  // namespace

absl::StatusOr<std::unique_ptr<TrafficRecorder>> TrafficRecorder::Create(
    const RecordOptions& options) {
  if (options.dir.empty()) return absl::InvalidArgumentError("--record: no directory");
  if (!(options.rate > 0 && options.rate <= 1)) {
    return absl::InvalidArgumentError("--record-rate must lie in (0, 1]");
  }
  if (options.max_bytes < 1) return absl::InvalidArgumentError("--record-bytes must be > 0");
  if (options.shard_samples < 1) return absl::InvalidArgumentError("shard size must be >= 1");
  std::error_code error;
  std::filesystem::create_directories(options.dir, error);
  if (error || !std::filesystem::is_directory(options.dir)) {
    return absl::InvalidArgumentError(absl::StrCat("--record ", options.dir,
                                                   ": cannot make the directory (",
                                                   error.message(), ")"));
  }
  return std::unique_ptr<TrafficRecorder>(new TrafficRecorder(options));
}

TrafficRecorder::TrafficRecorder(const RecordOptions& options) : options_(options) {
  writer_ = std::thread([this] { WriterLoop(); });
}

TrafficRecorder::~TrafficRecorder() {
  {
    runtime::MutexLock lock(&mutex_);
    for (auto& [model, buffer] : buffers_) {
      if (buffer.samples > 0) HandOff(model, buffer);
    }
    stopping_ = true;
  }
  changed_.notify_all();
  writer_.join();
}

void TrafficRecorder::Offer(const std::string& model, const ModelMetadata& metadata,
                            const float* samples, int64_t count) {
  if (metadata.input_shape.empty()) return;
  int64_t size = 1;
  for (int64_t d : metadata.input_shape) size *= d;
  const int64_t plane = size / metadata.input_shape[0];
  const size_t channels = static_cast<size_t>(metadata.input_shape[0]);
  const bool normalized = metadata.mean.size() == channels && metadata.std.size() == channels;
  for (int64_t i = 0; i < count; ++i) {
    if (runtime::UniformDraw(options_.seed, draws_.fetch_add(1, std::memory_order_relaxed)) >=
        options_.rate) {
      continue;
    }
    runtime::MutexLock lock(&mutex_);
    if (full_) {
      ++dropped_;
      continue;
    }
    Buffer& buffer = buffers_[model];
    if (buffer.sample_shape != metadata.input_shape) {
      // A reload changed the model's input shape: close the old shard.
      if (buffer.samples > 0) HandOff(model, buffer);
      buffer.sample_shape = metadata.input_shape;
    }
    const float* x = samples + i * size;
    for (int64_t k = 0; k < size; ++k) {
      const int64_t c = k / plane;
      buffer.values.push_back(normalized ? x[k] * metadata.std[c] + metadata.mean[c]  // Raw again.
                                         : x[k]);
    }
    ++buffer.samples;
    ++recorded_;
    if (buffer.samples == options_.shard_samples) HandOff(model, buffer);
  }
}

void TrafficRecorder::HandOff(const std::string& model, Buffer& buffer) {
  const int64_t bytes = static_cast<int64_t>(buffer.values.size() * sizeof(float)) + kHeaderBytes;
  if (committed_bytes_ + bytes > options_.max_bytes) {
    full_ = true;
    dropped_ += buffer.samples;
    recorded_ -= buffer.samples;
    spdlog::warn("recording stops: the next shard would pass --record-bytes {}",
                 options_.max_bytes);
  } else {
    committed_bytes_ += bytes;
    Shard shard;
    char name[32];
    std::snprintf(name, sizeof(name), "shard-%06lld.npy",
                  static_cast<long long>(buffer.next_shard++));
    shard.path = (std::filesystem::path(options_.dir) / model / name).string();
    shard.shape = {buffer.samples};
    shard.shape.insert(shard.shape.end(), buffer.sample_shape.begin(), buffer.sample_shape.end());
    shard.values = std::move(buffer.values);
    queue_.push_back(std::move(shard));
    changed_.notify_all();
  }
  buffer.values.clear();
  buffer.samples = 0;
}

void TrafficRecorder::Flush() {
  runtime::MutexLock lock(&mutex_);
  mutex_.Await(changed_, [this]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
    return queue_.empty() && !writing_;
  });
}

void TrafficRecorder::WriterLoop() {
  for (;;) {
    Shard shard;
    {
      runtime::MutexLock lock(&mutex_);
      mutex_.Await(changed_, [this]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
        return stopping_ || !queue_.empty();
      });
      if (queue_.empty()) return;
      shard = std::move(queue_.front());
      queue_.pop_front();
      writing_ = true;
    }
    std::error_code error;
    std::filesystem::create_directories(std::filesystem::path(shard.path).parent_path(), error);
    const int64_t bytes = static_cast<int64_t>(shard.values.size() * sizeof(float));
    absl::Status written =
        WriteNpy(shard.path, NpyArray::Float32(std::move(shard.shape), std::move(shard.values)));
    if (written.ok()) {
      written_bytes_ += bytes;
      ++shards_;
    } else {
      spdlog::warn("recording: {}", std::string(written.message()));
    }
    {
      runtime::MutexLock lock(&mutex_);
      writing_ = false;
    }
    changed_.notify_all();
  }
}

}  // namespace gati::serve
