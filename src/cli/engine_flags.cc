#include "cli/engine_flags.h"

#include <algorithm>

#include <CLI/CLI.hpp>

#include "gati/plan.h"

namespace gati::cli {

void AddEngineFlags(CLI::App* command, EngineFlags* flags) {
  command->add_option("--online", flags->online, "online learning: on or off")
      ->check(CLI::IsMember({"on", "off"}));
  command->add_option("--mode", flags->mode,
                      "auto (time both at start, serve in the faster, or the base model "
                      "alone when neither beats it), parallel or sequential")
      ->check(CLI::IsMember({"auto", "parallel", "sequential"}));
  command->add_option("--threads", flags->threads, "LibTorch intra-op threads")
      ->check(CLI::Range(1, 256));
  command->add_option("--workers", flags->workers, "requests computed at once")
      ->check(CLI::Range(1, 256));
  command->add_option("--spin-us", flags->spin_us,
                      "parallel mode: microseconds a waiting thread spins before it sleeps")
      ->check(CLI::Range(0.0, 100000.0));
  command->add_option("--feedback-rate", flags->feedback_rate,
                      "share of hits that still run the whole model for feedback")
      ->check(CLI::Range(0.0, 1.0));
  command->add_option("--feedback-rate-in-doubt", flags->feedback_rate_in_doubt,
                      "the sampling rate while the live bound is in doubt (answers seen "
                      "disagreeing, or a tap switched off, and the bound not yet certified)")
      ->check(CLI::Range(0.0, 1.0));
  command->add_option("--exact-cache", flags->exact_cache,
                      "exact-match front cache size, e.g. 16MB (0: off)");
  command->add_option("--epsilon", flags->epsilon,
                      "per-tap false-hit bound for the monitor and learner (0: the bundle's)")
      ->check(CLI::Range(0.0, 0.5));
  command->add_option("--live-bound", flags->live_bound,
                      "on: act when the live confidence sequence shows the disagreement over "
                      "all answers above --answer-epsilon (see --recalibrate); off: report only")
      ->check(CLI::IsMember({"on", "off"}));
  command->add_option("--recalibrate", flags->recalibrate,
                      "on: thresholds follow the stream, certified on recent feedback (a "
                      "breach of the live bound withdraws them until feedback certifies new "
                      "ones; a certified policy that saves more replaces the plan's); off: a "
                      "breach switches off the tap with the most false hits")
      ->check(CLI::IsMember({"on", "off"}));
  command->add_option("--recalibration-window", flags->recalibration_window,
                      "feedback-sampled requests the recalibration certifies thresholds on")
      ->check(CLI::Range(int64_t{100}, int64_t{100000}));
  command->add_option("--false-hit-cooldown", flags->false_hit_cooldown,
                      "requests the whole model answers after a checked false hit (0: none)")
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 40));
  command->add_option("--answer-epsilon", flags->answer_epsilon,
                      "bound on the disagreement over all answers for the live bound "
                      "(0: the plan's epsilon)")
      ->check(CLI::Range(0.0, 0.5));
  command->add_option("--trigger-rows", flags->trigger_rows,
                      "feedback requests between learner rounds")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 40));
  command->add_option("--learner-share", flags->learner_share,
                      "largest share of one core the learner uses")
      ->check(CLI::Range(0.01, 1.0));
  command->add_flag("--no-cache", flags->no_cache, "serve the base model alone");
  command->add_option("--device", flags->device, "cpu, or cuda with a CUDA build of LibTorch");
}

absl::StatusOr<EngineOptions> MakeEngineOptions(const EngineFlags& flags) {
  auto exact_bytes = ParseByteSize(flags.exact_cache);
  if (!exact_bytes.ok()) {
    return absl::InvalidArgumentError("--exact-cache: " +
                                      std::string(exact_bytes.status().message()));
  }
  GATI_ASSIGN_OR_RETURN(LookupMode mode, ParseLookupMode(flags.mode));
  EngineOptions options;
  options.intra_op_threads = flags.threads;
  options.device = flags.device;
  options.workers = flags.workers;
  options.spin_us = flags.spin_us;
  options.mode = mode;
  options.use_caches = !flags.no_cache;
  options.feedback_rate = flags.feedback_rate;
  options.feedback_rate_in_doubt = flags.feedback_rate_in_doubt;
  options.exact_cache_bytes = *exact_bytes;
  options.epsilon = flags.epsilon;
  options.learner.enabled = flags.online == "on";
  options.live_tightening = flags.live_bound == "on";
  options.answer_epsilon = flags.answer_epsilon;
  options.recalibration = flags.recalibrate == "on";
  options.recalibration_window = flags.recalibration_window;
  options.false_hit_cooldown_requests = flags.false_hit_cooldown;
  options.recalibration_every =
      std::min(options.recalibration_every, options.recalibration_window);
  options.learner.trigger_rows = flags.trigger_rows;
  options.learner.max_cpu_share = flags.learner_share;
  return options;
}

}  // namespace gati::cli
