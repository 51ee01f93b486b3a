// The `gati` command: parses the subcommand and its flags, runs it.
#include <CLI/CLI.hpp>

#include <cstdio>

#include "cli/commands.h"

int main(int argc, char** argv) {
  CLI::App app{
      "gati: serve deep classifiers faster with learned caches at hidden "
      "layers."};
  app.require_subcommand(1);
  app.set_version_flag("--version", "gati 0.1.0");
  auto run_info = gati::cli::RegisterInfoCommand(app);
  auto run_eval = gati::cli::RegisterEvalCommand(app);
  auto run_build = gati::cli::RegisterBuildCommand(app);
  auto run_plan = gati::cli::RegisterPlanCommand(app);
  auto run_replay = gati::cli::RegisterReplayCommand(app);
  auto run_trace = gati::cli::RegisterTraceCommand(app);
  auto run_serve = gati::cli::RegisterServeCommand(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  if (app.got_subcommand("info")) return run_info();
  if (app.got_subcommand("eval")) return run_eval();
  if (app.got_subcommand("build")) return run_build();
  if (app.got_subcommand("plan")) return run_plan();
  if (app.got_subcommand("replay")) return run_replay();
  if (app.got_subcommand("trace")) return run_trace();
  if (app.got_subcommand("serve")) return run_serve();
  std::fprintf(stderr, "gati: no subcommand\n");
  return 2;
}
