// The serving core without sockets or LibTorch: model repository (load,
// reload, failed reload), inference service (validation, batches, bounded
// queue, drain) and the Prometheus exposition, on a fake engine.
#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>

#include <sys/wait.h>
#include <unistd.h>

#include "data/dataset.h"
#include "runtime/runtime_testutil.h"
#include "serve/recorder.h"
#include "testutil.h"
#include "serve/inference_service.h"
#include "serve/metrics.h"
#include "serve/model_repository.h"
#include "serve/serve_testutil.h"

namespace gati::serve {
namespace {

class ServeCoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(repository_.Register("m", "/bundles/m").ok());
    ASSERT_TRUE(repository_.LoadAll().ok());
  }

  absl::StatusOr<InferReply> Infer(DecodedRequest request, const std::string& model = "m") {
    return service_.Infer(model, "", std::move(request), service_.NowMicros());
  }

  FakeFactory factory_;
  ModelRepository repository_{factory_.Make()};
  gati::testing::FakeClock clock_;  // The service's time: fake.
  ServiceOptions options_{/*max_queue=*/2, {}, &clock_};
  InferenceService service_{&repository_, options_};
};

TEST_F(ServeCoreTest, ReloadPublishesANewVersionAndKeepsTheOldForHoldersOfIt) {
  auto first = repository_.Get("m");
  ASSERT_TRUE(first.ok());
  EXPECT_EQ((*first)->version, 1);
  ASSERT_TRUE(repository_.Load("m").ok());
  auto second = repository_.Get("m");
  ASSERT_TRUE(second.ok());
  EXPECT_EQ((*second)->version, 2);
  // The first version is still usable by whoever holds it.
  float input[4] = {2, 0, 0, 0};
  auto result = (*first)->engine->Infer(input, 4, {});
  ASSERT_TRUE(result.ok());
  EXPECT_EQ(result->cache_version, 1);
  // Metrics are shared across versions.
  EXPECT_EQ((*first)->metrics, (*second)->metrics);
  EXPECT_TRUE(absl::IsNotFound(repository_.Get("m", "1").status()));
  EXPECT_TRUE(repository_.Get("m", "2").ok());
}

TEST_F(ServeCoreTest, AFailedReloadKeepsTheServingVersion) {
  factory_.fail = true;
  absl::Status failed = repository_.Load("m").status();
  EXPECT_TRUE(absl::IsNotFound(failed));
  EXPECT_NE(failed.message().find("model 'm'"), absl::string_view::npos);
  auto served = repository_.Get("m");
  ASSERT_TRUE(served.ok());
  EXPECT_EQ((*served)->version, 1);
  auto states = repository_.States();
  ASSERT_EQ(states.size(), 1u);
  EXPECT_TRUE(states[0].ready);
  EXPECT_NE(states[0].reason.find("manifest.json"), std::string::npos);
  // Clients see the model's name, not where its bundle lies.
  EXPECT_EQ(states[0].reason.find("/bundles/m"), std::string::npos) << states[0].reason;
  EXPECT_EQ(failed.message().find("/bundles/m"), absl::string_view::npos) << failed;
  EXPECT_TRUE(repository_.AllReady());
}

// A bundle directory with a manifest of `text`, removed at the end.
class BundleDir {
 public:
  explicit BundleDir(const std::string& name)
      : path_(std::filesystem::temp_directory_path() /
              (name + "_" + std::to_string(::getpid()))) {
    std::filesystem::create_directories(path_);
    Write("{}");
  }
  ~BundleDir() { std::filesystem::remove_all(path_); }
  void Write(const std::string& text) const { std::ofstream(path_ / "manifest.json") << text; }
  void WriteConfig(const std::string& text) const {
    std::ofstream(path_ / "config.json") << text;
  }
  std::string path() const { return path_.string(); }

 private:
  std::filesystem::path path_;
};

TEST(ModelRepositoryTest, AVersionIsABundleRevision) {
  FakeFactory factory;
  ModelRepository repository(factory.Make());
  BundleDir bundle("gati_revision");
  ASSERT_TRUE(repository.Register("r", bundle.path()).ok());
  auto first = repository.Load("r");
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->version, 1);
  EXPECT_TRUE(first->changed);
  // Loading an unchanged bundle again is a no-op: version 1 keeps serving
  // and requests pinned to it keep working.
  auto again = repository.Load("r");
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(again->changed);
  EXPECT_EQ(again->version, 1);
  EXPECT_EQ(factory.loads.load(), 1);
  EXPECT_TRUE(repository.Get("r", "1").ok());
  // A changed bundle is a new version; the old one is no longer served.
  bundle.Write("{ }");
  auto changed = repository.Load("r");
  ASSERT_TRUE(changed.ok());
  EXPECT_TRUE(changed->changed);
  EXPECT_EQ(changed->version, 2);
  EXPECT_TRUE(absl::IsNotFound(repository.Get("r", "1").status()));
  // Unload stops serving; loading the same bundle brings version 2 back.
  ASSERT_TRUE(repository.Unload("r").ok());
  auto unloaded = repository.Get("r");
  EXPECT_TRUE(absl::IsUnavailable(unloaded.status()));
  EXPECT_NE(unloaded.status().message().find("unloaded"), absl::string_view::npos);
  EXPECT_FALSE(repository.AllReady());
  EXPECT_STREQ(StateName(repository.States()[0]), "UNAVAILABLE");
  auto back = repository.Load("r");
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->version, 2);
  EXPECT_TRUE(repository.Get("r", "2").ok());
  EXPECT_TRUE(absl::IsNotFound(repository.Unload("absent")));
}

TEST(ModelRepositoryTest, AConfigJsonSetsTheBatchingAndAChangedOneIsANewVersion) {
  FakeFactory factory;
  ModelRepository repository(factory.Make());
  repository.SetBatchingDefaults(DynamicBatching(16));
  BundleDir bundle("gati_batching");
  ASSERT_TRUE(repository.Register("b", bundle.path()).ok());
  ASSERT_TRUE(repository.Load("b").ok());
  auto first = repository.Get("b");
  ASSERT_TRUE(first.ok());
  ASSERT_NE((*first)->batcher, nullptr);  // The defaults: batching on.
  EXPECT_EQ((*first)->batching.max_batch_size, 16);

  bundle.WriteConfig(
      R"({"max_batch_size": 4, "dynamic_batching": {"max_queue_delay_microseconds": 100}})");
  auto changed = repository.Load("b");
  ASSERT_TRUE(changed.ok()) << changed.status();
  EXPECT_TRUE(changed->changed);
  EXPECT_EQ(changed->version, 2);
  auto second = repository.Get("b");
  ASSERT_TRUE(second.ok());
  ASSERT_NE((*second)->batcher, nullptr);
  EXPECT_EQ((*second)->batcher->options().max_batch_size, 4);
  EXPECT_EQ((*second)->batcher->options().max_queue_delay_us, 100);

  // A bad config fails the load, names the file and field, and version 2
  // keeps serving.
  bundle.WriteConfig(R"({"max_batch_size": -3, "dynamic_batching": {}})");
  auto bad = repository.Load("b");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("config.json: max_batch_size"), absl::string_view::npos)
      << bad.status();
  EXPECT_EQ(bad.status().message().find(bundle.path()), absl::string_view::npos) << bad.status();
  EXPECT_EQ((*repository.Get("b"))->version, 2);

  // Without dynamic_batching, nothing is merged (Triton's rule).
  bundle.WriteConfig(R"({"max_batch_size": 8})");
  ASSERT_TRUE(repository.Load("b").ok());
  EXPECT_EQ((*repository.Get("b"))->batcher, nullptr);
}

TEST(InferenceServiceTest, ABatchingModelMergesRequestsAndCountsItsExecutions) {
  FakeFactory factory;
  ModelRepository repository(factory.Make());
  repository.SetBatchingDefaults(DynamicBatching(8));
  ASSERT_TRUE(repository.Register("b", "/bundles/b").ok());
  ASSERT_TRUE(repository.LoadAll().ok());
  ServiceOptions options;
  options.max_computing = 1;  // The batcher's slots replace the service's.
  InferenceService service(&repository, options);
  auto served = repository.Get("b");
  ASSERT_TRUE(served.ok());
  // The first request holds the model; three more queue behind it.
  factory.last->Hold();
  std::vector<std::thread> clients;
  std::vector<std::vector<int64_t>> classes(4);
  auto send = [&](int c) {
    const float a = float(2 * c), b = float(2 * c + 1);
    auto reply = service.Infer("b", "", Request({2, 1, 2, 2}, {a, 0, 0, 0, b, 0, 0, 0}),
                               service.NowMicros());
    if (reply.ok()) classes[c] = reply->outputs[0].int64;
  };
  clients.emplace_back(send, 0);
  factory.last->WaitRunning(1);
  for (int c = 1; c < 4; ++c) clients.emplace_back(send, c);
  for (int i = 0; i < 5000 && (*served)->batcher->queued_rows() < 6; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ASSERT_EQ((*served)->batcher->queued_rows(), 6);
  factory.last->Release();
  for (std::thread& client : clients) client.join();
  for (int c = 0; c < 4; ++c) {
    EXPECT_EQ(classes[c], (std::vector<int64_t>{2 * c, 2 * c + 1})) << "client " << c;
  }
  const ModelMetrics& metrics = *(*served)->metrics;
  EXPECT_EQ(metrics.successes.load(), 4);
  EXPECT_EQ(metrics.inferences.load(), 8);
  // Two executions: the first request alone, then the three merged.
  EXPECT_EQ(metrics.executions.load(), 2);
  EXPECT_EQ(metrics.queue.Read().count, 4);  // Once per request.
}

TEST(ModelRepositoryTest, LoadRemovesTemporariesOfWritersThatAreGone) {
  FakeFactory factory;
  ModelRepository repository(factory.Make());
  BundleDir bundle("gati_temporaries");
  // A pid that is certainly gone: a child that has exited and been reaped.
  const pid_t child = ::fork();
  if (child == 0) ::_exit(0);
  ASSERT_GT(child, 0);
  ::waitpid(child, nullptr, 0);
  const std::string stale = bundle.path() + "/manifest.json.tmp." + std::to_string(child);
  const std::string live = bundle.path() + "/manifest.json.tmp." + std::to_string(::getpid());
  const std::string fresh = bundle.path() + "/caches.bin.tmp." + std::to_string(child);
  std::ofstream(stale) << "half";
  std::ofstream(live) << "being written";
  std::ofstream(fresh) << "just written";
  // Left alone for two minutes (the gone writer's file, and ours).
  const auto old = std::filesystem::file_time_type::clock::now() - std::chrono::minutes(2);
  std::filesystem::last_write_time(stale, old);
  std::filesystem::last_write_time(live, old);
  ASSERT_TRUE(repository.Register("r", bundle.path()).ok());
  ASSERT_TRUE(repository.Load("r").ok());
  EXPECT_FALSE(std::filesystem::exists(stale));
  EXPECT_TRUE(std::filesystem::exists(live));  // Its writer still runs.
  // Its writer looks gone, but may run in another PID namespace: too recent
  // to remove.
  EXPECT_TRUE(std::filesystem::exists(fresh));
}

TEST(ModelRepositoryTest, StartUpServesTheModelsThatLoad) {
  std::atomic<bool> broken_fails{true};
  ModelRepository repository([&](const std::string& dir)
                                 -> absl::StatusOr<std::unique_ptr<Engine>> {
    if (dir == "/b/broken" && broken_fails) return absl::DataLossError(dir + ": truncated");
    return std::unique_ptr<Engine>(std::make_unique<FakeEngine>(1));
  });
  ASSERT_TRUE(repository.Register("broken", "/b/broken").ok());
  ASSERT_TRUE(repository.Register("good", "/b/good").ok());
  ASSERT_TRUE(repository.LoadAll().ok());
  EXPECT_TRUE(repository.Get("good").ok());
  auto broken = repository.Get("broken");
  EXPECT_TRUE(absl::IsUnavailable(broken.status()));
  EXPECT_NE(broken.status().message().find("truncated"), absl::string_view::npos);
  EXPECT_TRUE(repository.AllReady());

  ModelRepository nothing([](const std::string& dir) -> absl::StatusOr<std::unique_ptr<Engine>> {
    return absl::DataLossError(dir + ": truncated");
  });
  ASSERT_TRUE(nothing.Register("a", "/b/a").ok());
  absl::Status none = nothing.LoadAll();
  EXPECT_TRUE(absl::IsFailedPrecondition(none));
  EXPECT_NE(none.message().find("model 'a'"), absl::string_view::npos) << none;
}

TEST_F(ServeCoreTest, RegistrationValidatesNamesAndDirectories) {
  EXPECT_TRUE(absl::IsInvalidArgument(repository_.Register("m", "/x")));  // Twice.
  EXPECT_TRUE(absl::IsInvalidArgument(repository_.Register("a/b", "/x")));
  EXPECT_TRUE(absl::IsInvalidArgument(repository_.Register("", "/x")));
  EXPECT_TRUE(absl::IsInvalidArgument(repository_.Register("..", "/x")));
  EXPECT_TRUE(absl::IsNotFound(repository_.RegisterDirectory("/nonexistent/repository")));
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("gati_repo_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir / "notes");
  EXPECT_TRUE(absl::IsNotFound(repository_.RegisterDirectory(dir.string())));
  std::filesystem::create_directories(dir / "fast");
  std::ofstream(dir / "fast" / "manifest.json") << "{}";
  // Skipped, not fatal: gati build's staging directory and a bad name.
  std::filesystem::create_directories(dir / ".fast.tmp.123");
  std::ofstream(dir / ".fast.tmp.123" / "manifest.json") << "{";
  std::filesystem::create_directories(dir / "bad name");
  std::ofstream(dir / "bad name" / "manifest.json") << "{}";
  EXPECT_TRUE(repository_.RegisterDirectory(dir.string()).ok());
  std::vector<std::string> names;
  for (const ModelState& state : repository_.States()) names.push_back(state.name);
  EXPECT_EQ(names, (std::vector<std::string>{"fast", "m"}));
  EXPECT_TRUE(absl::IsUnavailable(repository_.Get("fast").status()));  // Registered, not loaded.
  EXPECT_TRUE(repository_.AllReady());  // "m" serves; "fast" does not hold it back.
  EXPECT_TRUE(repository_.Load("fast").ok());
  EXPECT_TRUE(repository_.AllReady());
  std::filesystem::remove_all(dir);
}

TEST_F(ServeCoreTest, ABatchIsAnsweredPerSampleWithItsLatestExit) {
  auto reply = Infer(Request({3, 1, 2, 2}, {1, 0, 0, 0, 4, 0, 0, 0, 7, 0, 0, 0},
                             {"probabilities", "class"}));
  ASSERT_TRUE(reply.ok()) << reply.status();
  ASSERT_EQ(reply->outputs.size(), 2u);
  EXPECT_EQ(reply->outputs[0].name, "probabilities");
  EXPECT_EQ(reply->outputs[0].shape, (std::vector<int64_t>{3, 10}));
  EXPECT_EQ(reply->outputs[0].fp32[10 + 4], 1.0f);
  EXPECT_EQ(reply->outputs[1].int64, (std::vector<int64_t>{1, 4, 7}));
  EXPECT_EQ(reply->id, "r1");
  // Sample 3 needed the base model, so the batch reports it and no hit.
  EXPECT_EQ(std::get<int64_t>(reply->parameters[0].second), kBaseExit);
  EXPECT_FALSE(std::get<bool>(reply->parameters[1].second));
  // Without an outputs list: every output, as the protocol says.
  auto single = Infer(Request({1, 1, 2, 2}, {2, 0, 0, 0}));
  ASSERT_TRUE(single.ok());
  ASSERT_EQ(single->outputs.size(), 2u);
  EXPECT_EQ(single->outputs[0].name, "class");
  EXPECT_EQ(single->outputs[0].int64, (std::vector<int64_t>{2}));
  EXPECT_EQ(single->outputs[1].name, "probabilities");
  EXPECT_EQ(single->outputs[1].shape, (std::vector<int64_t>{1, 10}));
  EXPECT_EQ(std::get<int64_t>(single->parameters[0].second), 3);
  EXPECT_TRUE(std::get<bool>(single->parameters[1].second));
}

TEST_F(ServeCoreTest, RequestsThatDoNotFitTheModelAreInvalidAndCounted) {
  const auto message = [&](DecodedRequest request) {
    auto reply = Infer(std::move(request));
    EXPECT_TRUE(absl::IsInvalidArgument(reply.status())) << reply.status();
    return std::string(reply.status().message());
  };
  EXPECT_NE(message(Request({1, 2, 3}, std::vector<float>(6))).find("[-1, 1, 2, 2]"),
            std::string::npos);
  // The batch dimension is part of the declared shape: one rule for all.
  EXPECT_NE(message(Request({1, 2, 2}, std::vector<float>(4))).find("[-1, 1, 2, 2]"),
            std::string::npos);
  EXPECT_NE(message(Request({0, 1, 2, 2}, {})).find("no sample"), std::string::npos);
  EXPECT_NE(message(Request({1, 1, 2, 2}, {1, 0, 0, 0}, {"logits"})).find("no output 'logits'"),
            std::string::npos);
  DecodedRequest renamed = Request({1, 1, 2, 2}, {1, 0, 0, 0});
  renamed.inputs[0].name = "x";
  EXPECT_NE(message(renamed).find("no input 'x'"), std::string::npos);
  DecodedRequest two = Request({1, 1, 2, 2}, {1, 0, 0, 0});
  two.inputs.push_back(two.inputs[0]);
  EXPECT_NE(message(two).find("takes one input"), std::string::npos);
  auto decode_error = service_.Infer("m", "", absl::InvalidArgumentError("not JSON"),
                                     service_.NowMicros());
  EXPECT_EQ(decode_error.status().message(), "not JSON");
  auto failed = Infer(Request({1, 1, 2, 2}, {-1, 0, 0, 0}));
  EXPECT_TRUE(absl::IsInternal(failed.status()));
  EXPECT_TRUE(absl::IsNotFound(Infer(Request({1, 1, 2, 2}, {1, 0, 0, 0}), "absent").status()));

  auto metrics = repository_.MetricsOf("m");
  EXPECT_EQ(metrics->failures[static_cast<int>(FailureReason::kInvalidArgument)].load(), 7);
  EXPECT_EQ(metrics->failures[static_cast<int>(FailureReason::kInternal)].load(), 1);
  EXPECT_EQ(metrics->successes.load(), 0);
  EXPECT_EQ(HttpStatusOf(failed.status()), 500);
  EXPECT_EQ(HttpStatusOf(absl::UnavailableError("")), 503);
}

TEST_F(ServeCoreTest, AFullQueueAnswersUnavailableAndDrainingTurnsNewRequestsAway) {
  FakeEngine* engine = factory_.last;
  engine->Hold();
  std::vector<std::thread> callers;
  std::atomic<int> ok{0};
  for (int i = 0; i < 2; ++i) {
    callers.emplace_back([&] {
      if (Infer(Request({1, 1, 2, 2}, {1, 0, 0, 0})).ok()) ++ok;
    });
  }
  engine->WaitRunning(2);
  EXPECT_EQ(service_.in_flight(), 2);
  auto overloaded = Infer(Request({1, 1, 2, 2}, {1, 0, 0, 0}));
  EXPECT_TRUE(absl::IsUnavailable(overloaded.status()));
  EXPECT_NE(overloaded.status().message().find("overloaded"), absl::string_view::npos);

  service_.BeginDrain();
  EXPECT_FALSE(service_.Ready());
  EXPECT_FALSE(service_.WaitIdle(std::chrono::milliseconds(20)));  // Two still held.
  auto turned_away = Infer(Request({1, 1, 2, 2}, {1, 0, 0, 0}));
  EXPECT_NE(turned_away.status().message().find("shutting down"), absl::string_view::npos);
  engine->Release();
  for (std::thread& caller : callers) caller.join();
  EXPECT_TRUE(service_.WaitIdle(std::chrono::milliseconds(1000)));
  EXPECT_EQ(ok.load(), 2);  // Admitted requests finish during the drain.
  auto metrics = repository_.MetricsOf("m");
  EXPECT_EQ(metrics->failures[static_cast<int>(FailureReason::kOverloaded)].load(), 1);
  EXPECT_EQ(metrics->failures[static_cast<int>(FailureReason::kShuttingDown)].load(), 1);
}

TEST_F(ServeCoreTest, LatencyAndTimestampsComeFromTheServicesClock) {
  clock_.Advance(1e6);
  const double received = service_.NowMicros();
  EXPECT_EQ(received, 1e6);
  auto reply = Infer(Request({1, 1, 2, 2}, {1, 0, 0, 0}));
  ASSERT_TRUE(reply.ok()) << reply.status();
  clock_.Advance(2500);  // The front end takes 2.5 ms to encode the reply.
  service_.RecordLatency(*reply, received);
  auto metrics = repository_.MetricsOf("m");
  const LatencyHistogram::Snapshot latency = metrics->request.Read();
  EXPECT_EQ(latency.count, 1);
  EXPECT_NEAR(latency.sum_seconds, 0.0025, 1e-6);
  EXPECT_EQ(metrics->last_inference_ms.load(), clock_.UnixMillis() - 2);
  // Nothing in flight: idle at once. (The drain test holds requests: there
  // WaitIdle gives up after its timeout of fake time, with no real wait.)
  EXPECT_TRUE(service_.WaitIdle(std::chrono::milliseconds(0)));
}

TEST_F(ServeCoreTest, RecordsAnsweredInputsAsShardsOfRawValues) {
  gati::testing::TempDir dir;
  RecordOptions record;
  record.dir = dir.File("rec");
  record.rate = 1.0;
  record.shard_samples = 3;
  auto recorder = TrafficRecorder::Create(record);
  ASSERT_TRUE(recorder.ok()) << recorder.status();
  {
    ServiceOptions options = options_;
    options.recorder = recorder->get();
    InferenceService service(&repository_, options);
    auto infer = [&](DecodedRequest request) {
      return service.Infer("m", "", std::move(request), service.NowMicros());
    };
    for (int i = 0; i < 6; ++i) {
      ASSERT_TRUE(infer(Request({1, 1, 2, 2}, {static_cast<float>(i % 4), 0, 1, 2})).ok());
    }
    // A batch of one more; a request of the wrong shape and one the model
    // fails are not recorded.
    ASSERT_TRUE(infer(Request({1, 1, 2, 2}, {3, 3, 3, 3})).ok());
    EXPECT_FALSE(infer(Request({1, 2, 3}, std::vector<float>(6))).ok());
    EXPECT_FALSE(infer(Request({1, 1, 2, 2}, {-1, 0, 0, 0})).ok());
    (*recorder)->Flush();
    EXPECT_EQ((*recorder)->shards(), 2);  // Two full shards; one sample buffered.
  }
  EXPECT_EQ((*recorder)->recorded(), 7);
  recorder->reset();  // Writes the partial shard.
  const std::string model_dir = dir.File("rec/m");
  for (const char* shard : {"shard-000000.npy", "shard-000001.npy", "shard-000002.npy"}) {
    EXPECT_TRUE(std::filesystem::exists(model_dir + "/" + shard)) << shard;
  }
  for (const auto& entry : std::filesystem::directory_iterator(model_dir)) {
    EXPECT_EQ(entry.path().extension(), ".npy") << entry.path();  // No temporary left.
  }
  // Read back as data: raw values, the model's normalization undone.
  auto data = OpenDataSource(model_dir, "", gati::Split::kValidation);
  ASSERT_TRUE(data.ok()) << data.status();
  EXPECT_EQ((*data)->count(), 7);
  EXPECT_EQ((*data)->sample_shape(), (std::vector<int64_t>{1, 2, 2}));
  EXPECT_FALSE((*data)->has_labels());
  std::vector<float> sample(4);
  ASSERT_TRUE((*data)->Read(1, sample.data()).ok());
  EXPECT_EQ(sample, (std::vector<float>{0.75f, 0.5f, 0.75f, 1.0f}));
  ASSERT_TRUE((*data)->Read(6, sample.data()).ok());
  EXPECT_EQ(sample, (std::vector<float>{1.25f, 1.25f, 1.25f, 1.25f}));
}

TEST_F(ServeCoreTest, RecordingKeepsItsRateAndStopsAtItsCap) {
  gati::testing::TempDir dir;
  RecordOptions record;
  record.dir = dir.File("rec");
  record.rate = 0.25;
  record.shard_samples = 10;
  // Room for two shards of 10 samples of 4 floats (and their headers).
  record.max_bytes = 2 * (10 * 4 * 4 + 128);
  auto recorder = TrafficRecorder::Create(record);
  ASSERT_TRUE(recorder.ok());
  ModelMetadata metadata;
  metadata.input_shape = {4};
  metadata.mean = {0, 0, 0, 0};
  metadata.std = {1, 1, 1, 1};
  std::vector<float> samples(400 * 4, 0.5f);
  (*recorder)->Offer("v", metadata, samples.data(), 400);
  (*recorder)->Flush();
  EXPECT_EQ((*recorder)->shards(), 2);
  EXPECT_EQ((*recorder)->recorded(), 20);
  // About a quarter of the 400 offered were drawn; those past the cap dropped.
  EXPECT_GT((*recorder)->recorded() + (*recorder)->dropped(), 70);
  EXPECT_LT((*recorder)->recorded() + (*recorder)->dropped(), 130);
  EXPECT_LE((*recorder)->written_bytes(), record.max_bytes);
  EXPECT_FALSE(TrafficRecorder::Create({dir.File("x"), 0.0}).ok());
  EXPECT_FALSE(TrafficRecorder::Create({dir.File("x"), 0.5, 0}).ok());
  gati::testing::WriteFile(dir.File("file"), "x");
  EXPECT_FALSE(TrafficRecorder::Create({dir.File("file") + "/sub", 0.5}).ok());
}

TEST_F(ServeCoreTest, RawUint8ImagesAreNormalizedInEitherLayout) {
  // The fake model takes 1x2x2 with mean 0.5, std 0.25, and answers
  // round(first input value): pixel 255 -> (1 - 0.5) / 0.25 = 2.
  for (std::vector<int64_t> shape :
       {std::vector<int64_t>{1, 1, 2, 2}, {1, 2, 2, 1}}) {
    DecodedRequest request = Request(shape, {255, 0, 0, 0});
    request.inputs[0].datatype = "UINT8";
    auto reply = Infer(std::move(request));
    ASSERT_TRUE(reply.ok()) << reply.status();
    EXPECT_EQ(reply->outputs[0].int64[0], 2)
        << ::testing::PrintToString(shape);
  }
  // A batch of two in H x W x C: each sample's own first pixel.
  DecodedRequest batch = Request({2, 2, 2, 1}, {255, 0, 0, 0, 128, 0, 0, 0});
  batch.inputs[0].datatype = "UINT8";
  auto batched = Infer(std::move(batch));
  ASSERT_TRUE(batched.ok()) << batched.status();
  EXPECT_EQ(batched->outputs[0].int64,
            (std::vector<int64_t>{2, 0}));  // (128/255 - 0.5) / 0.25 = 0.008.
  DecodedRequest wrong = Request({3, 3}, std::vector<float>(9));
  wrong.inputs[0].datatype = "UINT8";
  auto rejected = Infer(std::move(wrong));
  ASSERT_FALSE(rejected.ok());
  EXPECT_NE(rejected.status().message().find("UINT8 shape [3, 3] does not fit model 'm'"),
            std::string::npos)
      << rejected.status();
}

TEST(LatencyHistogramTest, BucketsAreCumulativeAndSumInSeconds) {
  LatencyHistogram histogram;
  histogram.Observe(0.00005);  // First bucket.
  histogram.Observe(0.001);    // Exactly on a bound: counts as <= it.
  histogram.Observe(0.004);
  histogram.Observe(100);      // Above every bound.
  const LatencyHistogram::Snapshot snapshot = histogram.Read();
  EXPECT_EQ(snapshot.count, 4);
  EXPECT_EQ(snapshot.cumulative[0], 1);
  EXPECT_EQ(snapshot.cumulative[3], 2);  // <= 1 ms.
  EXPECT_EQ(snapshot.cumulative[6], 3);  // <= 5 ms.
  EXPECT_EQ(snapshot.cumulative.back(), 3);
  EXPECT_NEAR(snapshot.sum_seconds, 100.00505, 1e-9);
}

TEST_F(ServeCoreTest, ExpositionHasOneFamilyHeaderAndConsistentHistograms) {
  ASSERT_TRUE(Infer(Request({2, 1, 2, 2}, {1, 0, 0, 0, 7, 0, 0, 0})).ok());
  const std::string text = service_.RenderMetrics();
  EXPECT_NE(text.find("gati_request_success_total{model=\"m\",version=\"1\"} 1\n"),
            std::string::npos);
  EXPECT_NE(text.find("gati_inferences_total{model=\"m\",version=\"1\"} 2\n"),
            std::string::npos);
  // Queue and compute are observed once per request, as Triton counts them.
  EXPECT_NE(text.find("gati_queue_duration_seconds_count{model=\"m\",version=\"1\"} 1\n"),
            std::string::npos);
  EXPECT_NE(text.find("gati_queue_duration_seconds_bucket{model=\"m\",version=\"1\",le=\"0.0001\"} "
                      "1\n"),
            std::string::npos);
  // Bounds print as written, not as the nearest doubles' 17 digits.
  EXPECT_NE(text.find("le=\"0.00025\"}"), std::string::npos);
  EXPECT_EQ(text.find("0.00025000000000000001"), std::string::npos);
  EXPECT_NE(text.find("gati_tap_misses_total{model=\"m\",version=\"1\",tap=\"3\"} 6\n"),
            std::string::npos);
  // Triton's names for the same counters.
  EXPECT_NE(text.find("nv_inference_request_success{model=\"m\",version=\"1\"} 1\n"),
            std::string::npos);
  EXPECT_NE(text.find("nv_inference_count{model=\"m\",version=\"1\"} 2\n"), std::string::npos);
  // One request, whose rows waited 100 us for the engine.
  EXPECT_NE(text.find("nv_inference_queue_duration_us{model=\"m\",version=\"1\"} 100\n"),
            std::string::npos);
  // A request for a model the server does not have: one bounded series.
  EXPECT_TRUE(absl::IsNotFound(Infer(Request({1, 1, 2, 2}, {1, 0, 0, 0}), "nope").status()));
  const std::string later = service_.RenderMetrics();
  EXPECT_NE(later.find("gati_request_failure_total{model=\"(unknown)\",version=\"\",reason=\"not_found\"} 1\n"),
            std::string::npos);
  EXPECT_EQ(later.find("nope"), std::string::npos);
  EXPECT_NE(text.find("gati_request_queue_capacity 2\n"), std::string::npos);
  // Every family is declared exactly once.
  size_t families = 0, position = 0;
  while ((position = text.find("# TYPE gati_tap_hits_total ", position)) != std::string::npos) {
    ++families;
    ++position;
  }
  EXPECT_EQ(families, 1u);
}

}  // namespace
}  // namespace gati::serve
