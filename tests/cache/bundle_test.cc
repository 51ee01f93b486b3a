#include "gati/bundle.h"

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>

#include "cache/cache_testutil.h"
#include "data/file_io.h"
#include "testutil.h"

namespace gati {
namespace {

using testing::RandomActivation;
using testing::RandomCacheWeights;
using testing::ReadFile;
using testing::TempDir;
using testing::WriteFile;

class BundleTest : public ::testing::Test {
 protected:
  void SetUp() override {
    model_path_ = dir_.File("source_model.pt");
    WriteFile(model_path_, "not really a model, but hashed like one");
    weights_.push_back(RandomCacheWeights("gap:linear", 1, {8, 6, 6}, 10, 1));
    weights_.push_back(RandomCacheWeights("pool4:mlp256", 1, {8, 6, 6}, 10, 2));
    weights_.push_back(
        RandomCacheWeights("conv1x1-8:pool4:linear", 3, {16, 3, 3}, 10, 3));
    weights_[1].threshold = 0.731f;
    weights_[2].enabled = false;
    manifest_.model_name = "test";
    manifest_.input_shape = {1, 12, 12};
    manifest_.num_classes = 10;
    manifest_.num_stages = 6;
    manifest_.stage_p50_ms = {0.1, 0.2, 0.3, 0.4, 0.5, 0.6};
    manifest_.whole_p50_ms = 1.9;
    manifest_.build = {{"epsilon", "0.01"}};
    for (const CacheWeights& w : weights_) {
      CacheEntry entry;
      entry.tap = w.tap;
      entry.variant = w.variant.name;
      entry.metrics.hit_rate = 0.25;
      entry.metrics.hits = 42;
      manifest_.caches.push_back(entry);
    }
  }

  absl::Status Write(const std::string& dir, const PlanningRecords* records = nullptr) {
    std::vector<const CacheWeights*> caches;
    for (const CacheWeights& w : weights_) caches.push_back(&w);
    return Bundle::Write(dir, manifest_, model_path_, caches, records);
  }

  // Records for every cache, in reverse order (Write matches them by key).
  PlanningRecords Records() {
    PlanningRecords records;
    records.base_classes = {1, 2, 3, 4};
    for (auto w = weights_.rbegin(); w != weights_.rend(); ++w) {
      records.caches.push_back({w->tap, w->variant.name,
                                {0.1f, 0.9f, 0.5f, static_cast<float>(w->tap)},
                                {1, 2, 0, w->tap}});
    }
    return records;
  }

  TempDir dir_;
  std::string model_path_;
  std::vector<CacheWeights> weights_;
  BundleManifest manifest_;
};

TEST_F(BundleTest, RoundTripGivesBitIdenticalLookups) {
  const std::string out = dir_.File("bundle");
  ASSERT_TRUE(Write(out).ok());
  auto bundle = Bundle::Load(out);
  ASSERT_TRUE(bundle.ok()) << bundle.status();
  ASSERT_EQ((*bundle)->caches().size(), 3u);
  EXPECT_EQ((*bundle)->manifest().model_sha256,
            Sha256Hex(ReadFile(model_path_)));
  EXPECT_EQ((*bundle)->manifest().stage_p50_ms, manifest_.stage_p50_ms);
  EXPECT_EQ(ReadFile((*bundle)->model_path()), ReadFile(model_path_));
  for (const CacheWeights& w : weights_) {
    auto original = LearnedCache::Create(w);
    ASSERT_TRUE(original.ok());
    const LearnedCache* loaded = (*bundle)->Find(w.tap, w.variant.name);
    ASSERT_NE(loaded, nullptr) << w.variant.name;
    EXPECT_EQ(loaded->weights().threshold, w.threshold);
    EXPECT_EQ(loaded->weights().enabled, w.enabled);
    for (uint32_t seed = 0; seed < 20; ++seed) {
      std::vector<float> activation = RandomActivation(w.shape, seed);
      float p1[10], p2[10];
      LookupResult a = (*original)->Lookup(activation.data(), p1);
      LookupResult b = loaded->Lookup(activation.data(), p2);
      EXPECT_EQ(a.hit, b.hit);
      EXPECT_EQ(a.label, b.label);
      EXPECT_EQ(std::memcmp(&a.score, &b.score, sizeof(float)), 0);
      EXPECT_EQ(std::memcmp(p1, p2, sizeof(p1)), 0);
    }
  }
  EXPECT_EQ((*bundle)->Find(2, "gap:linear"), nullptr);
}

TEST_F(BundleTest, ManifestRoundTrips) {
  manifest_.model_sha256 = "abc";
  for (CacheEntry& entry : manifest_.caches) {
    entry.file = CacheFileName(entry.tap, entry.variant);
  }
  auto parsed = ParseManifest(ManifestToJson(manifest_), "m.json");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(ManifestToJson(*parsed), ManifestToJson(manifest_));
  // The selector choice and its AUROCs, where measured; a manifest without
  // them (built before) parses and is written back without them.
  EXPECT_EQ(ManifestToJson(manifest_).find("selector_auroc"), std::string::npos);
  manifest_.caches[0].metrics.selector = "max-softmax";
  manifest_.caches[0].metrics.selector_auroc = 0.875;
  manifest_.caches[0].metrics.max_softmax_auroc = 0.875;
  parsed = ParseManifest(ManifestToJson(manifest_), "m.json");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->caches[0].metrics.selector, "max-softmax");
  EXPECT_EQ(parsed->caches[0].metrics.selector_auroc, 0.875);
  EXPECT_EQ(parsed->caches[1].metrics.selector, "");
  manifest_.caches[0].metrics.selector = "magic";
  EXPECT_ERROR(ParseManifest(ManifestToJson(manifest_), "m.json").status(),
               absl::StatusCode::kInvalidArgument, "learned or max-softmax");
}

TEST_F(BundleTest, TypedBuildSettingsRoundTripAndAreChecked) {
  manifest_.model_sha256 = "abc";
  for (CacheEntry& entry : manifest_.caches) {
    entry.file = CacheFileName(entry.tap, entry.variant);
  }
  BuildSettings& b = manifest_.settings;
  b.present = true;
  b.data = "x.npy (600 samples of 3x32x32 uint8, unlabelled)";
  b.samples = 600;
  b.predictor_train = 300;
  b.selector_train = 120;
  b.calibration = 180;
  b.seed = 7;
  b.epsilon = 0.02;
  b.confidence = 0.95;
  b.alpha = 0.5;
  b.temperature = 4;
  b.epochs = 30;
  b.stream_epochs = 3;
  b.taps = {1, 4};
  b.variants = {"gap:linear", "cls:linear"};
  auto parsed = ParseManifest(ManifestToJson(manifest_), "m.json");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_TRUE(parsed->settings.present);
  EXPECT_EQ(parsed->settings.calibration, 180);
  EXPECT_EQ(parsed->settings.seed, 7u);
  EXPECT_EQ(parsed->settings.variants, b.variants);
  EXPECT_EQ(ManifestToJson(*parsed), ManifestToJson(manifest_));
  b.calibration = 181;  // The splits no longer add up.
  EXPECT_ERROR(ParseManifest(ManifestToJson(manifest_), "m.json").status(),
               absl::StatusCode::kInvalidArgument, "build_settings.samples");
  b.calibration = 180;
  b.epsilon = 0;
  EXPECT_ERROR(ParseManifest(ManifestToJson(manifest_), "m.json").status(),
               absl::StatusCode::kInvalidArgument, "build_settings.epsilon");
  // A manifest without them (an older bundle) still parses.
  b.present = false;
  auto old = ParseManifest(ManifestToJson(manifest_), "m.json");
  ASSERT_TRUE(old.ok());
  EXPECT_FALSE(old->settings.present);
}

TEST_F(BundleTest, ChangedModelIsRejected) {
  const std::string out = dir_.File("bundle");
  ASSERT_TRUE(Write(out).ok());
  WriteFile(out + "/model.pt", "another model");
  EXPECT_ERROR(Bundle::Load(out).status(), absl::StatusCode::kFailedPrecondition,
               "SHA-256 differs");
}

TEST_F(BundleTest, MissingOrTruncatedWeightFileIsRejected) {
  const std::string out = dir_.File("bundle");
  ASSERT_TRUE(Write(out).ok());
  const std::string file = out + "/" + CacheFileName(1, "pool4:mlp256");
  std::string bytes = ReadFile(file);
  WriteFile(file, bytes.substr(0, bytes.size() / 2));
  EXPECT_ERROR(Bundle::Load(out).status(), absl::StatusCode::kDataLoss,
               "tap01.pool4-mlp256.safetensors");
  std::filesystem::remove(file);
  EXPECT_ERROR(Bundle::Load(out).status(), absl::StatusCode::kNotFound,
               "tap01.pool4-mlp256.safetensors");
}

TEST_F(BundleTest, UnknownVersionAndBadManifestsAreRejected) {
  const std::string out = dir_.File("bundle");
  ASSERT_TRUE(Write(out).ok());
  std::string text = ReadFile(out + "/manifest.json");
  std::string future = text;
  future.replace(future.find("\"format_version\": 1"), 19, "\"format_version\": 7");
  WriteFile(out + "/manifest.json", future);
  EXPECT_ERROR(Bundle::Load(out).status(), absl::StatusCode::kInvalidArgument,
               "unknown bundle format version 7");
  WriteFile(out + "/manifest.json", text.substr(0, text.size() / 2));
  EXPECT_ERROR(Bundle::Load(out).status(), absl::StatusCode::kInvalidArgument,
               "not a JSON object");
  EXPECT_ERROR(ParseManifest("{\"format\": \"gati-bundle\"}", "m.json").status(),
               absl::StatusCode::kInvalidArgument, "field 'format_version'");
  std::string escape = text;
  escape.replace(escape.find("caches/tap01"), 12, "../../tap01");
  EXPECT_ERROR(ParseManifest(escape, "m.json").status(),
               absl::StatusCode::kInvalidArgument, "must lie under caches/");
  EXPECT_ERROR(Bundle::Load(dir_.File("absent")).status(),
               absl::StatusCode::kNotFound, "manifest.json");
}

TEST_F(BundleTest, WriteReplacesABundleButNothingElse) {
  const std::string out = dir_.File("bundle");
  ASSERT_TRUE(Write(out).ok());
  weights_[0].threshold = 0.25f;
  ASSERT_TRUE(Write(out).ok());
  auto bundle = Bundle::Load(out);
  ASSERT_TRUE(bundle.ok());
  EXPECT_EQ((*bundle)->Find(1, "gap:linear")->weights().threshold, 0.25f);
  // No staging directory is left behind.
  int entries = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir_.File(""))) {
    entries += entry.path().filename().string().rfind(".bundle", 0) == 0;
  }
  EXPECT_EQ(entries, 0);

  const std::string other = dir_.File("precious");
  std::filesystem::create_directories(other);
  WriteFile(other + "/notes.txt", "keep me");
  EXPECT_ERROR(Write(other), absl::StatusCode::kFailedPrecondition,
               "not a bundle");
  EXPECT_EQ(ReadFile(other + "/notes.txt"), "keep me");
}

TEST_F(BundleTest, WriteNeedsAnEntryPerCache) {
  manifest_.caches.pop_back();
  EXPECT_ERROR(Write(dir_.File("bundle")), absl::StatusCode::kInvalidArgument,
               "manifest entries");
  EXPECT_FALSE(std::filesystem::exists(dir_.File("bundle")));
}

TEST_F(BundleTest, PlanningRecordsAndPlanRoundTrip) {
  const std::string out = dir_.File("bundle");
  PlanningRecords records = Records();
  manifest_.has_plan = true;
  manifest_.plan.mode = "sequential";
  manifest_.plan.memory_budget_bytes = 12345;
  manifest_.plan.caches = {{1, "pool4:mlp256", 0.731f}};
  manifest_.plan.exit_share = {0.25, 0.75};
  manifest_.plan.mean_ms = 1.5;
  manifest_.plan.batch = 32;
  ASSERT_TRUE(Write(out, &records).ok());
  auto bundle = Bundle::Load(out);
  ASSERT_TRUE(bundle.ok()) << bundle.status();
  const PlanningRecords& loaded = (*bundle)->records();
  EXPECT_EQ(loaded.base_classes, records.base_classes);
  ASSERT_EQ(loaded.caches.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    const CacheEntry& entry = (*bundle)->manifest().caches[i];
    EXPECT_EQ(loaded.caches[i].tap, entry.tap);
    EXPECT_EQ(loaded.caches[i].variant, entry.variant);
    EXPECT_EQ(loaded.caches[i].classes[3], entry.tap);
  }
  const StoredPlan& plan = (*bundle)->manifest().plan;
  EXPECT_TRUE((*bundle)->manifest().has_plan);
  EXPECT_EQ(plan.mode, "sequential");
  EXPECT_EQ(plan.memory_budget_bytes, 12345);
  ASSERT_EQ(plan.caches.size(), 1u);
  EXPECT_EQ(plan.caches[0].threshold, 0.731f);
  EXPECT_EQ(plan.exit_share, (std::vector<double>{0.25, 0.75}));
  EXPECT_EQ(plan.batch, 32);

  // A new plan replaces only the manifest.
  BundleManifest manifest = (*bundle)->manifest();
  manifest.plan.caches.clear();
  ASSERT_TRUE(Bundle::WriteManifest(out, manifest).ok());
  auto replanned = Bundle::Load(out);
  ASSERT_TRUE(replanned.ok()) << replanned.status();
  EXPECT_TRUE((*replanned)->manifest().plan.caches.empty());

  // A plan naming a cache the bundle lacks, a future plan version, and
  // damaged records are errors.
  std::string text = ReadFile(out + "/manifest.json");
  manifest.plan.caches = {{2, "gap:linear", 0.5f}};
  EXPECT_ERROR(ParseManifest(ManifestToJson(manifest), "m.json").status(),
               absl::StatusCode::kInvalidArgument, "names no cache of the bundle");
  manifest.plan.caches.clear();
  // A plan's batch size outside [1, kMaxPlanBatch]; a plan without one
  // (written before it existed) was made for single requests.
  for (int batch : {0, -3, kMaxPlanBatch + 1}) {
    manifest.plan.batch = batch;
    EXPECT_ERROR(ParseManifest(ManifestToJson(manifest), "m.json").status(),
                 absl::StatusCode::kInvalidArgument, "plan.batch");
  }
  manifest.plan.batch = 8;
  std::string without_batch = ManifestToJson(manifest);
  const size_t at = without_batch.find("\"batch\": 8,");
  ASSERT_NE(at, std::string::npos) << without_batch;
  without_batch.erase(at, std::string("\"batch\": 8,").size());
  auto old_plan = ParseManifest(without_batch, "m.json");
  ASSERT_TRUE(old_plan.ok()) << old_plan.status();
  EXPECT_EQ(old_plan->plan.batch, 1);
  manifest.plan.version = 9;
  EXPECT_ERROR(ParseManifest(ManifestToJson(manifest), "m.json").status(),
               absl::StatusCode::kInvalidArgument, "field 'plan.version' is 9");
  WriteFile(out + "/planning.safetensors", "short");
  EXPECT_ERROR(Bundle::Load(out).status(), absl::StatusCode::kDataLoss,
               "planning.safetensors: SHA-256 differs");
}

TEST_F(BundleTest, RecordsMustMatchTheSplitLength) {
  PlanningRecords records = Records();
  records.caches[1].scores.pop_back();
  EXPECT_ERROR(Write(dir_.File("bundle"), &records), absl::StatusCode::kInvalidArgument,
               "have another length");
}

TEST(LearnedCacheTest, CreateRejectsMismatchedLayers) {
  CacheWeights weights =
      testing::RandomCacheWeights("pool2:mlp128", 0, {4, 8, 8}, 10, 5);
  EXPECT_TRUE(LearnedCache::Create(weights).ok());
  CacheWeights wrong_input = weights;
  wrong_input.shape.channels = 5;
  EXPECT_ERROR(LearnedCache::Create(wrong_input).status(),
               absl::StatusCode::kInvalidArgument, "predictor layer 0");
  CacheWeights no_selector = weights;
  no_selector.selector.clear();
  EXPECT_ERROR(LearnedCache::Create(no_selector).status(),
               absl::StatusCode::kInvalidArgument, "no selector");
  CacheWeights wide = testing::RandomCacheWeights("gap:linear", 0, {4, 1, 5000}, 10, 5);
  EXPECT_ERROR(LearnedCache::Create(wide).status(), absl::StatusCode::kInvalidArgument,
               "activations wider than 4096");
  CacheWeights nan = weights;
  nan.predictor[1].bias[3] = NAN;
  EXPECT_ERROR(LearnedCache::Create(nan).status(),
               absl::StatusCode::kInvalidArgument, "non-finite");
}

TEST(LearnedCacheTest, DisabledCacheNeverHits) {
  CacheWeights weights =
      testing::RandomCacheWeights("gap:linear", 0, {4, 8, 8}, 10, 6);
  weights.threshold = 0.0f;
  auto enabled = LearnedCache::Create(weights);
  weights.enabled = false;
  auto disabled = LearnedCache::Create(weights);
  std::vector<float> activation = testing::RandomActivation({4, 8, 8}, 1);
  EXPECT_TRUE((*enabled)->Lookup(activation.data()).hit);
  LookupResult result = (*disabled)->Lookup(activation.data());
  EXPECT_FALSE(result.hit);
  EXPECT_EQ(result.label, (*enabled)->Lookup(activation.data()).label);
}

}  // namespace
}  // namespace gati
