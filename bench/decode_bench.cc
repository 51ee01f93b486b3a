// Cost of the Open Inference Protocol codec per request, as `gati serve`
// pays it before and after the engine: decoding a one-image (1x1x28x28 FP32)
// infer request as flat JSON, nested JSON and binary tensor data, and
// encoding the answer (class, plus probabilities in JSON or binary).
//
//   gati_bench_decode [google benchmark flags]
#include <benchmark/benchmark.h>

#include <optional>
#include <random>
#include <string>
#include <vector>

#include "serve/oip_codec.h"

namespace {

constexpr int kValues = 28 * 28;

std::vector<float> Pixels() {
  std::mt19937 rng(5);
  std::normal_distribution<float> normal(0, 1);
  std::vector<float> values(kValues);
  for (float& v : values) v = normal(rng);
  return values;
}

std::string JsonNumbers(const std::vector<float>& values, bool nested) {
  std::string out = nested ? "[[[" : "[";
  for (int i = 0; i < kValues; ++i) {
    if (i > 0) out += (nested && i % 28 == 0) ? "],[" : ",";
    out += std::to_string(values[i]);
  }
  return out + (nested ? "]]]" : "]");
}

std::string JsonRequest(bool nested) {
  return R"({"id":"bench","inputs":[{"name":"input","datatype":"FP32","shape":[1,1,28,28],"data":)" +
         JsonNumbers(Pixels(), nested) + "}]}";
}

void DecodeJson(benchmark::State& state, bool nested) {
  const std::string body = JsonRequest(nested);
  for (auto _ : state) {
    auto request = gati::serve::DecodeInferRequest(body, std::nullopt);
    benchmark::DoNotOptimize(request);
  }
  state.counters["body_bytes"] = static_cast<double>(body.size());
}

void BM_DecodeFlatJson(benchmark::State& state) { DecodeJson(state, false); }
void BM_DecodeNestedJson(benchmark::State& state) { DecodeJson(state, true); }

void BM_DecodeBinary(benchmark::State& state) {
  const std::string header =
      R"({"id":"bench","inputs":[{"name":"input","datatype":"FP32","shape":[1,1,28,28],)"
      R"("parameters":{"binary_data_size":3136}}]})";
  const std::vector<float> pixels = Pixels();
  const std::string body =
      header + std::string(reinterpret_cast<const char*>(pixels.data()), kValues * 4);
  for (auto _ : state) {
    auto request = gati::serve::DecodeInferRequest(body, static_cast<int64_t>(header.size()));
    benchmark::DoNotOptimize(request);
  }
  state.counters["body_bytes"] = static_cast<double>(body.size());
}

void Encode(benchmark::State& state, bool binary) {
  gati::serve::ResponseOutput label{"class", {1}, {}, {7}, "INT64", false};
  gati::serve::ResponseOutput probabilities{"probabilities", {1, 10},
                                            std::vector<float>(10, 0.1f), {}, "FP32", binary};
  const std::vector<std::pair<std::string, gati::serve::ParameterValue>> parameters = {
      {"gati_exit_tap", int64_t{3}}, {"gati_cache_hit", true}, {"gati_cache_version", int64_t{1}}};
  for (auto _ : state) {
    auto response =
        gati::serve::EncodeInferResponse("demo", "1", "bench", parameters, {label, probabilities});
    benchmark::DoNotOptimize(response);
  }
}

void BM_EncodeJson(benchmark::State& state) { Encode(state, false); }
void BM_EncodeBinary(benchmark::State& state) { Encode(state, true); }

BENCHMARK(BM_DecodeFlatJson)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_DecodeNestedJson)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_DecodeBinary)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_EncodeJson)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_EncodeBinary)->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
