// The dynamic batcher on a fake engine: requests that queue while a batch
// computes are merged, a client's batch is never split, max_batch_size,
// preferred sizes and the queue delay decide when a batch runs, and every
// caller gets its own rows' answers; the model config's batching fields.
#include "serve/batcher.h"

#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <future>
#include <mutex>
#include <thread>
#include <vector>

#include "serve/serve_testutil.h"

namespace gati::serve {
namespace {

// Records the size of every batch; can hold batches until released.
class RecordingEngine final : public FakeEngine {
 public:
  RecordingEngine() : FakeEngine(1) {}
  // Hands nothing over row by row: the batcher answers from the results.
  std::vector<absl::StatusOr<InferResult>> InferBatch(const float* const* rows, int64_t n,
                                                      int64_t count, const InferOptions& options,
                                                      const RowAnswered&) override {
    {
      std::unique_lock<std::mutex> lock(mu_);
      sizes_.push_back(n);
      ++entered_;
      cv_.notify_all();
      cv_.wait(lock, [this] { return !hold_; });
    }
    std::vector<absl::StatusOr<InferResult>> results;
    for (int64_t i = 0; i < n; ++i) results.push_back(Infer(rows[i], count, options));
    return results;
  }
  void HoldBatches() {
    std::lock_guard<std::mutex> lock(mu_);
    hold_ = true;
  }
  void ReleaseBatches() {
    std::lock_guard<std::mutex> lock(mu_);
    hold_ = false;
    cv_.notify_all();
  }
  void WaitEntered(int n) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return entered_ >= n; });
  }
  std::vector<int64_t> sizes() {
    std::lock_guard<std::mutex> lock(mu_);
    return sizes_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool hold_ = false;
  int entered_ = 0;
  std::vector<int64_t> sizes_;
};

// Hands the last row of a batch of two or more over at once, then holds
// the rest until released; a batch of one waits for `first` to open.
class EarlyEngine final : public FakeEngine {
 public:
  EarlyEngine() : FakeEngine(1) {}
  std::vector<absl::StatusOr<InferResult>> InferBatch(const float* const* rows, int64_t n,
                                                      int64_t count, const InferOptions& options,
                                                      const RowAnswered& answered) override {
    ++entered;
    std::vector<absl::StatusOr<InferResult>> results;
    for (int64_t i = 0; i < n; ++i) results.push_back(Infer(rows[i], count, options));
    if (n == 1) {
      Wait(first_);
    } else {
      answered(n - 1, results[n - 1]);
      Wait(rest_);
    }
    for (int64_t i = 0; i < n; ++i) {
      if (n == 1 || i < n - 1) answered(i, results[i]);
    }
    return results;
  }
  void Open(bool& gate) {
    std::lock_guard<std::mutex> lock(mu_);
    gate = true;
    cv_.notify_all();
  }
  bool first_ = false;
  bool rest_ = false;
  std::atomic<int> entered{0};

 private:
  void Wait(const bool& gate) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return gate; });
  }
  std::mutex mu_;
  std::condition_variable cv_;
};

// One client's request: `rows` samples whose first value is its class.
struct Client {
  std::vector<std::vector<float>> samples;
  std::vector<const float*> rows;
  std::vector<absl::StatusOr<InferResult>> results;
  std::thread thread;

  Client(int first_class, int n) {
    for (int i = 0; i < n; ++i) samples.push_back({float(first_class + i), 0, 0, 0});
    for (const auto& sample : samples) rows.push_back(sample.data());
  }
  void Start(Batcher& batcher) {
    thread = std::thread([this, &batcher] {
      results = batcher.Run(rows.data(), static_cast<int64_t>(rows.size()), 4, false);
    });
  }
  void ExpectAnswered(int first_class) {
    thread.join();
    ASSERT_EQ(results.size(), samples.size());
    for (size_t i = 0; i < results.size(); ++i) {
      ASSERT_TRUE(results[i].ok()) << results[i].status();
      EXPECT_EQ(results[i]->label, first_class + static_cast<int>(i));
      EXPECT_TRUE(results[i]->scores.empty());
    }
  }
};

// Waits until `rows` rows are queued (bounded).
void WaitQueued(const Batcher& batcher, int64_t rows) {
  for (int i = 0; i < 5000 && batcher.queued_rows() < rows; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ASSERT_EQ(batcher.queued_rows(), rows);
}

BatchingOptions Options(int max_batch_size, int64_t delay_us = 0,
                        std::vector<int> preferred = {}) {
  BatchingOptions options = DynamicBatching(max_batch_size);
  options.max_queue_delay_us = delay_us;
  options.preferred_batch_sizes = std::move(preferred);
  return options;
}

TEST(BatcherTest, RequestsThatQueueWhileABatchComputesRunAsOneBatch) {
  RecordingEngine engine;
  std::atomic<int64_t> executions{0};
  Batcher batcher(&engine, Options(16), &executions);
  engine.HoldBatches();
  Client first(0, 1);
  first.Start(batcher);
  engine.WaitEntered(1);  // The first request found the model idle: alone.
  std::vector<std::unique_ptr<Client>> rest;
  for (int c = 1; c <= 5; ++c) {
    rest.push_back(std::make_unique<Client>(c, 1));
    rest.back()->Start(batcher);
  }
  WaitQueued(batcher, 5);
  engine.ReleaseBatches();
  first.ExpectAnswered(0);
  for (int c = 1; c <= 5; ++c) rest[c - 1]->ExpectAnswered(c);
  EXPECT_EQ(engine.sizes(), (std::vector<int64_t>{1, 5}));
  EXPECT_EQ(batcher.batches(), 2);
  EXPECT_EQ(batcher.batched_rows(), 6);
  EXPECT_EQ(executions.load(), 2);
}

TEST(BatcherTest, AClientsBatchIsNeverSplitAndBatchesStopAtMaxBatchSize) {
  RecordingEngine engine;
  Batcher batcher(&engine, Options(4));
  engine.HoldBatches();
  Client first(0, 1);
  first.Start(batcher);
  engine.WaitEntered(1);
  // Queued in this order: 3 rows, 2, 6 (over max_batch_size), 1.
  Client a(10, 3), b(20, 2), c(30, 6), d(40, 1);
  int64_t queued = 0;
  for (Client* client : {&a, &b, &c, &d}) {
    client->Start(batcher);
    queued += static_cast<int64_t>(client->rows.size());
    WaitQueued(batcher, queued);
  }
  engine.ReleaseBatches();
  first.ExpectAnswered(0);
  a.ExpectAnswered(10);
  b.ExpectAnswered(20);
  c.ExpectAnswered(30);
  d.ExpectAnswered(40);
  // 3 + 2 would pass 4; 2 + 6 too; 6 runs alone.
  EXPECT_EQ(engine.sizes(), (std::vector<int64_t>{1, 3, 2, 6, 1}));
}

TEST(BatcherTest, APreferredSizeRunsAtOnceWithoutWaitingForTheDelay) {
  RecordingEngine engine;
  // A 60 s delay: only the preferred size can start this batch in time.
  Batcher batcher(&engine, Options(8, 60'000'000, {3}));
  const auto start = std::chrono::steady_clock::now();
  Client a(1, 1), b(2, 1), c(3, 1);
  a.Start(batcher);
  WaitQueued(batcher, 1);
  b.Start(batcher);
  WaitQueued(batcher, 2);
  c.Start(batcher);
  a.ExpectAnswered(1);
  b.ExpectAnswered(2);
  c.ExpectAnswered(3);
  EXPECT_EQ(engine.sizes(), (std::vector<int64_t>{3}));
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(30));
}

TEST(BatcherTest, AFullBatchRunsBeforeTheDelayAndALoneRequestAfterIt) {
  RecordingEngine engine;
  Batcher full(&engine, Options(2, 60'000'000));
  Client a(1, 1), b(2, 1);
  a.Start(full);
  WaitQueued(full, 1);
  b.Start(full);
  a.ExpectAnswered(1);
  b.ExpectAnswered(2);
  EXPECT_EQ(engine.sizes(), (std::vector<int64_t>{2}));

  // Alone, a request waits out the delay for company, then runs.
  Batcher delayed(&engine, Options(8, 30'000));
  const auto start = std::chrono::steady_clock::now();
  Client lone(5, 1);
  lone.Start(delayed);
  lone.ExpectAnswered(5);
  EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(30));
}

TEST(BatcherTest, WhileABatchComputesTheHeadWaitsTheBusyDelayForCompany) {
  RecordingEngine engine;
  BatchingOptions options = Options(8);
  options.max_concurrent = 2;
  options.busy_delay_us = 60'000'000;  // Only a full batch or a free model ends it.
  Batcher batcher(&engine, options);
  engine.HoldBatches();
  Client first(0, 1);
  first.Start(batcher);
  engine.WaitEntered(1);  // The model was idle: at once, alone.
  // A slot is free, but a batch computes: the next requests wait for
  // company instead of taking the free slot one by one.
  std::vector<std::unique_ptr<Client>> rest;
  for (int c = 1; c <= 3; ++c) {
    rest.push_back(std::make_unique<Client>(c, 1));
    rest.back()->Start(batcher);
    WaitQueued(batcher, c);
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_EQ(engine.sizes().size(), 1u);
  EXPECT_EQ(batcher.queued_rows(), 3);
  // The computing batch ends: the model is idle, and the three run now.
  engine.ReleaseBatches();
  first.ExpectAnswered(0);
  for (int c = 1; c <= 3; ++c) rest[c - 1]->ExpectAnswered(c);
  EXPECT_EQ(engine.sizes(), (std::vector<int64_t>{1, 3}));
}

TEST(BatcherTest, AMemberWhoseRowsAreAnsweredReturnsBeforeTheBatchEnds) {
  EarlyEngine engine;
  Batcher batcher(&engine, Options(8));
  Client first(0, 1);
  first.Start(batcher);  // Alone; held until `first_` opens.
  for (int i = 0; i < 5000 && engine.entered.load() < 1; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ASSERT_EQ(engine.entered.load(), 1);
  Client a(1, 1), b(2, 1);
  a.Start(batcher);
  WaitQueued(batcher, 1);
  b.Start(batcher);
  WaitQueued(batcher, 2);
  engine.Open(engine.first_);
  first.ExpectAnswered(0);
  // The batch [a, b] runs; b's row is handed over at once, so b returns
  // while the batch is still held (bounded: the batch is released anyway).
  std::future<void> b_returned = std::async(std::launch::async, [&] { b.thread.join(); });
  const bool early = b_returned.wait_for(std::chrono::seconds(10)) == std::future_status::ready;
  engine.Open(engine.rest_);
  b_returned.wait();
  EXPECT_TRUE(early) << "b waited for the end of its batch";
  ASSERT_EQ(b.results.size(), 1u);
  ASSERT_TRUE(b.results[0].ok());
  EXPECT_EQ(b.results[0]->label, 2);
  a.ExpectAnswered(1);
}

TEST(BatcherTest, ARequestWithoutRowsReturnsAtOnce) {
  RecordingEngine engine;
  Batcher batcher(&engine, Options(8));
  EXPECT_TRUE(batcher.Run(nullptr, 0, 4, false).empty());
  EXPECT_TRUE(engine.sizes().empty());
}

TEST(BatcherTest, ManyConcurrentClientsEachGetTheirOwnAnswers) {
  RecordingEngine engine;
  BatchingOptions options = Options(8);
  options.max_concurrent = 2;
  Batcher batcher(&engine, options);
  std::vector<std::thread> threads;
  std::atomic<int> wrong{0};
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 50; ++i) {
        const int n = 1 + (t + i) % 3;
        std::vector<std::vector<float>> samples;
        std::vector<const float*> rows;
        for (int k = 0; k < n; ++k) samples.push_back({float((t + i + k) % 10), 0, 0, 0});
        for (const auto& s : samples) rows.push_back(s.data());
        auto results = batcher.Run(rows.data(), n, 4, /*want_scores=*/i % 2 == 0);
        for (int k = 0; k < n; ++k) {
          if (!results[k].ok() || results[k]->label != (t + i + k) % 10 ||
              results[k]->scores.empty() != (i % 2 != 0)) {
            ++wrong;
          }
        }
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(wrong.load(), 0);
  int64_t rows = 0;
  for (int64_t size : engine.sizes()) {
    EXPECT_LE(size, 8);
    rows += size;
  }
  EXPECT_EQ(rows, batcher.batched_rows());
  int64_t want = 0;
  for (int t = 0; t < 8; ++t) {
    for (int i = 0; i < 50; ++i) want += 1 + (t + i) % 3;
  }
  EXPECT_EQ(rows, want);
}

TEST(BatcherTest, RowsOfAnotherSizeFailWithoutJoiningABatch) {
  RecordingEngine engine;  // Its input: 1 x 2 x 2, 4 floats.
  Batcher batcher(&engine, Options(8));
  std::vector<float> sample(5, 1.0f);
  const float* rows[] = {sample.data(), sample.data()};
  auto results = batcher.Run(rows, 2, 5, false);
  ASSERT_EQ(results.size(), 2u);
  for (const auto& result : results) {
    EXPECT_EQ(result.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(result.status().message().find("takes 4"), absl::string_view::npos);
  }
  EXPECT_TRUE(engine.sizes().empty());
}

TEST(BatcherTest, ModelConfigSetsTritonsBatchingFields) {
  BatchingOptions defaults = Options(16);
  auto parsed = ParseBatchingConfig(
      R"({"name": "m", "max_batch_size": 8, "input": [],
          "dynamic_batching": {"preferred_batch_size": [4, 2],
                               "max_queue_delay_microseconds": 500}})",
      defaults, "config.json");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_TRUE(parsed->dynamic);
  EXPECT_EQ(parsed->max_batch_size, 8);
  EXPECT_EQ(parsed->preferred_batch_sizes, (std::vector<int>{2, 4}));
  EXPECT_EQ(parsed->max_queue_delay_us, 500);
  // Without dynamic_batching, Triton batches nothing.
  auto plain = ParseBatchingConfig(R"({"max_batch_size": 8})", defaults, "config.json");
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_FALSE(plain->dynamic);
  // What a config omits takes Triton's defaults, not the server's: here no
  // preferred size and no delay, although the defaults have both.
  BatchingOptions flags = defaults;
  flags.preferred_batch_sizes = {16};
  flags.max_queue_delay_us = 900;
  flags.busy_delay_us = 1234;
  auto lean = ParseBatchingConfig(R"({"max_batch_size": 8, "dynamic_batching": {}})", flags,
                                  "config.json");
  ASSERT_TRUE(lean.ok()) << lean.status();
  EXPECT_TRUE(lean->dynamic);
  EXPECT_EQ(lean->max_batch_size, 8);
  EXPECT_TRUE(lean->preferred_batch_sizes.empty());
  EXPECT_EQ(lean->max_queue_delay_us, 0);
  EXPECT_EQ(lean->busy_delay_us, 1234);  // gati's own stays the server's.

  for (const auto& [text, says] : std::vector<std::pair<std::string, std::string>>{
           {"{", "not JSON"},
           {"[1]", "JSON object"},
           {R"({"max_batch_size": -1})", "max_batch_size must be an integer"},
           {R"({"max_batch_size": "8"})", "max_batch_size must be an integer"},
           {R"({"max_batch_size": 4, "dynamic_batching": {"preferred_batch_size": [8]}})",
            "preferred_batch_size 8"},
           {R"({"max_batch_size": 4, "dynamic_batching": {"preferred_batch_size": [2, 2]}})",
            "ascending"},
           {R"({"max_batch_size": 4, "dynamic_batching": {"max_queue_delay_microseconds": 1.5}})",
            "max_queue_delay_microseconds must be an integer"},
           {R"({"max_batch_size": 4, "dynamic_batching": {"priority_levels": 2}})",
            "dynamic_batching.priority_levels is not supported"},
           {R"({"dynamic_batching": {}})", "needs a max_batch_size of at least 1"},
           {R"({"dynamic_batching": 3})", "dynamic_batching must be an object"}}) {
    auto bad = ParseBatchingConfig(text, defaults, "config.json");
    ASSERT_FALSE(bad.ok()) << text;
    EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(bad.status().message().find("config.json: "), std::string::npos) << bad.status();
    EXPECT_NE(bad.status().message().find(says), std::string::npos) << bad.status();
  }
}

}  // namespace
}  // namespace gati::serve
