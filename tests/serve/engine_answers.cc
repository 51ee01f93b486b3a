// Test helper: the engine's answers for a file of inputs, so the server
// tests can check that HTTP and gRPC answers equal Engine::Infer's.
// Usage: engine_answers BUNDLE INPUTS.npy OUT.json
//   INPUTS.npy: float32 [N, C, H, W] model inputs (normalized).
//   OUT.json: {"labels": [...], "exit_taps": [...], "scores": [[...], ...]}.
#include <cstdio>
#include <fstream>

#include "data/npy.h"
#include "gati/engine.h"
#include "nlohmann/json.hpp"

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: engine_answers BUNDLE INPUTS.npy OUT.json\n");
    return 2;
  }
  gati::EngineOptions options;
  // As the server under test runs (auto could choose differently in two
  // processes, and the base-model fallback answers otherwise).
  options.feedback_rate = 0;
  options.mode = gati::LookupMode::kSequential;
  auto engine = gati::Engine::Create(argv[1], options);
  if (!engine.ok()) {
    std::fprintf(stderr, "engine_answers: %s\n", engine.status().ToString().c_str());
    return 1;
  }
  auto inputs = gati::ReadNpy(argv[2]);
  if (!inputs.ok() || inputs->dtype != gati::NpyDtype::kFloat32 || inputs->shape.empty()) {
    std::fprintf(stderr, "engine_answers: %s: need float32 [N, ...]\n", argv[2]);
    return 1;
  }
  const int64_t count = inputs->shape[0];
  const int64_t size = inputs->num_elements() / count;
  nlohmann::json out = {{"labels", nlohmann::json::array()},
                        {"exit_taps", nlohmann::json::array()},
                        {"scores", nlohmann::json::array()}};
  for (int64_t i = 0; i < count; ++i) {
    auto result = (*engine)->Infer(inputs->f32.data() + i * size, size, {/*want_scores=*/true});
    if (!result.ok()) {
      std::fprintf(stderr, "engine_answers: input %lld: %s\n", static_cast<long long>(i),
                   result.status().ToString().c_str());
      return 1;
    }
    out["labels"].push_back(result->label);
    out["exit_taps"].push_back(result->exit_tap);
    out["scores"].push_back(result->scores);
  }
  std::ofstream(argv[3]) << out.dump();
  return 0;
}
