// The engine flags `gati replay` and `gati serve` share, and the
// EngineOptions they make.
#ifndef GATI_CLI_ENGINE_FLAGS_H_
#define GATI_CLI_ENGINE_FLAGS_H_

#include <cstdint>
#include <string>

#include "gati/engine.h"
#include "gati/status.h"

namespace CLI {
class App;
}  // namespace CLI

namespace gati::cli {

struct EngineFlags {
  int threads = 1;
  int workers = 2;
  double spin_us = EngineOptions{}.spin_us;
  std::string mode = "auto";
  double feedback_rate = 0.05;
  double feedback_rate_in_doubt = EngineOptions{}.feedback_rate_in_doubt;
  std::string exact_cache = "0";
  double epsilon = 0;
  bool no_cache = false;
  std::string online = "off";
  std::string live_bound = "on";
  std::string recalibrate = "on";
  int64_t recalibration_window = EngineOptions{}.recalibration_window;
  int64_t false_hit_cooldown = EngineOptions{}.false_hit_cooldown_requests;
  double answer_epsilon = 0;
  int64_t trigger_rows = 1024;
  double learner_share = 0.25;
  std::string device = "cpu";
};

// Registers --threads --workers --spin-us --mode --feedback-rate --exact-cache
// --epsilon --no-cache --online --live-bound --answer-epsilon --recalibrate
// --recalibration-window --false-hit-cooldown --trigger-rows --learner-share
// --device.
void AddEngineFlags(CLI::App* command, EngineFlags* flags);

// The engine options the flags give; InvalidArgument naming the bad flag.
absl::StatusOr<EngineOptions> MakeEngineOptions(const EngineFlags& flags);

}  // namespace gati::cli

#endif  // GATI_CLI_ENGINE_FLAGS_H_
