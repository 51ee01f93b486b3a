// `gati serve`: serves bundles over the Open Inference Protocol (HTTP and
// gRPC) with Prometheus metrics, until SIGTERM or SIGINT, which drain the
// requests in flight before the process exits 0.
#include <CLI/CLI.hpp>

#include <malloc.h>
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <future>
#include <thread>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "cli/commands.h"
#include "cli/engine_flags.h"
#include "gati/engine.h"
#include "gati/plan.h"
#include "serve/access.h"
#include "serve/grpc_server.h"
#include "serve/http_server.h"
#include "serve/inference_service.h"
#include "serve/model_repository.h"
#include "serve/recorder.h"
#include "spdlog/spdlog.h"

namespace gati::cli {
namespace {

struct ServeFlags {
  std::string repository;
  std::vector<std::string> models;  // NAME=BUNDLE
  std::string host = "0.0.0.0";
  std::string metrics_host;  // Empty: --host.
  int http_port = 8000;
  int grpc_port = 8001;
  int metrics_port = 8002;
  int http_threads = 96;
  int max_connections = 4096;
  int max_queue = 64;
  std::string max_body = "64MB";
  std::string max_header = "64KB";
  std::string max_bodies = "1GB";
  double idle_timeout_seconds = 60;
  double request_timeout_seconds = 30;
  std::vector<std::string> restricted_api;  // API[,API...]:KEY=VALUE
  double drain_seconds = 30;
  std::string record;  // Directory; empty = no recording.
  double record_rate = 0.01;
  std::string record_bytes = "1GB";
  // Dynamic batching, for models whose bundle holds no config.json.
  std::string batching = "on";
  int max_batch_size = 32;
  int64_t max_queue_delay_us = 0;
  int64_t busy_delay_us = 2000;
  std::vector<int> preferred_batch_sizes;
  EngineFlags engine;
};

int Fail(const absl::Status& status) {
  std::fprintf(stderr, "gati serve: %s\n", status.ToString().c_str());
  return kExitError;
}

int RunServe(const ServeFlags& flags) {
  if (flags.repository.empty() && flags.models.empty()) {
    return Fail(absl::InvalidArgumentError(
        "give --repository DIR (one bundle per subdirectory) or --model NAME=BUNDLE"));
  }
  auto max_body = ParseByteSize(flags.max_body);
  if (!max_body.ok() || *max_body < 1024) {
    return Fail(absl::InvalidArgumentError(absl::StrCat(
        "--max-body: ", max_body.ok() ? "must be at least 1KB" : max_body.status().message())));
  }
  auto max_header = ParseByteSize(flags.max_header);
  if (!max_header.ok() || *max_header < 1024 || *max_header > (int64_t{1} << 30)) {
    return Fail(absl::InvalidArgumentError(absl::StrCat(
        "--max-header: ", max_header.ok() ? "must lie in [1KB, 1GB]"
                                          : max_header.status().message())));
  }
  auto max_bodies = ParseByteSize(flags.max_bodies);
  if (!max_bodies.ok() || *max_bodies < *max_body) {
    return Fail(absl::InvalidArgumentError(absl::StrCat(
        "--max-bodies: ", max_bodies.ok() ? "must be at least --max-body"
                                          : max_bodies.status().message())));
  }
  serve::AccessPolicy access;
  for (const std::string& spec : flags.restricted_api) {
    absl::Status added = access.Add(spec);
    if (!added.ok()) return Fail(added);
  }
  auto engine_options = MakeEngineOptions(flags.engine);
  if (!engine_options.ok()) return Fail(engine_options.status());
  const EngineOptions options = *engine_options;
  std::unique_ptr<serve::TrafficRecorder> recorder;
  if (!flags.record.empty()) {
    auto record_bytes = ParseByteSize(flags.record_bytes);
    if (!record_bytes.ok()) {
      return Fail(absl::InvalidArgumentError(
          absl::StrCat("--record-bytes: ", record_bytes.status().message())));
    }
    serve::RecordOptions record;
    record.dir = flags.record;
    record.rate = flags.record_rate;
    record.max_bytes = *record_bytes;
    auto made = serve::TrafficRecorder::Create(record);
    if (!made.ok()) return Fail(made.status());
    recorder = std::move(*made);
  }

  // Signals go to the thread that waits for them below, not to the server
  // threads that inherit this mask; a peer closing its socket mid-write is
  // an error for that connection, not for the process.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  std::signal(SIGPIPE, SIG_IGN);
  // Every engine runs threads of its own, and glibc gives threads arenas
  // that keep freed memory; a few arenas keep reloads from growing memory
  // (MALLOC_ARENA_MAX in the environment still wins).
  if (std::getenv("MALLOC_ARENA_MAX") == nullptr) mallopt(M_ARENA_MAX, 4);
  // One descriptor per connection: take the hard limit.
  rlimit files{};
  if (getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur < files.rlim_max) {
    files.rlim_cur = files.rlim_max;
    setrlimit(RLIMIT_NOFILE, &files);
  }

  serve::BatchingOptions batching;
  batching.dynamic = flags.batching == "on";
  // Off: the model config says 0, each request its own batch dimension.
  batching.max_batch_size = batching.dynamic ? flags.max_batch_size : 0;
  batching.max_queue_delay_us = flags.max_queue_delay_us;
  batching.busy_delay_us = flags.busy_delay_us;
  batching.preferred_batch_sizes = flags.preferred_batch_sizes;
  std::sort(batching.preferred_batch_sizes.begin(), batching.preferred_batch_sizes.end());
  // As many batches compute at once as requests would without batching.
  batching.max_concurrent = flags.engine.workers;
  if (absl::Status valid = serve::ValidateBatching(batching); !valid.ok()) {
    return Fail(absl::InvalidArgumentError(absl::StrCat("batching: ", valid.message())));
  }
  serve::ModelRepository repository(
      [options](const std::string& bundle_dir) { return Engine::Create(bundle_dir, options); });
  repository.SetBatchingDefaults(batching);
  if (!flags.repository.empty()) {
    absl::Status registered = repository.RegisterDirectory(flags.repository);
    if (!registered.ok()) return Fail(registered);
  }
  for (const std::string& spec : flags.models) {
    const size_t equals = spec.find('=');
    if (equals == std::string::npos) {
      return Fail(absl::InvalidArgumentError(
          absl::StrCat("--model '", spec, "': expected NAME=BUNDLE")));
    }
    absl::Status registered = repository.Register(spec.substr(0, equals), spec.substr(equals + 1));
    if (!registered.ok()) return Fail(registered);
  }
  absl::Status loaded = repository.LoadAll();
  if (!loaded.ok()) return Fail(loaded);
  for (const serve::ModelState& state : repository.States()) {
    if (!state.ready) {
      std::printf("model '%s' from %s is not served: %s\n", state.name.c_str(),
                  state.bundle_dir.c_str(), state.reason.c_str());
    }
  }

  serve::ServiceOptions service_options;
  service_options.max_queue = flags.max_queue;
  service_options.max_computing = flags.engine.workers;
  service_options.limits.max_elements = *max_body / static_cast<int64_t>(sizeof(float));
  service_options.recorder = recorder.get();
  serve::InferenceService service(&repository, service_options);

  serve::HttpOptions http_options;
  http_options.host = flags.host;
  http_options.port = flags.http_port;
  http_options.threads = flags.http_threads;
  http_options.max_body_bytes = *max_body;
  http_options.max_header_bytes = *max_header;
  http_options.max_bodies_bytes = *max_bodies;
  http_options.max_connections = flags.max_connections;
  http_options.idle_timeout =
      std::chrono::milliseconds(static_cast<int64_t>(flags.idle_timeout_seconds * 1000));
  http_options.request_timeout =
      std::chrono::milliseconds(static_cast<int64_t>(flags.request_timeout_seconds * 1000));
  http_options.access = &access;
  auto http = serve::HttpServer::Start(&service, serve::HttpServer::Routes::kInference,
                                       http_options);
  if (!http.ok()) return Fail(http.status());
  serve::HttpOptions metrics_options = http_options;
  metrics_options.port = flags.metrics_port;
  if (!flags.metrics_host.empty()) metrics_options.host = flags.metrics_host;
  metrics_options.threads = 2;
  auto metrics = serve::HttpServer::Start(&service, serve::HttpServer::Routes::kMetrics,
                                          metrics_options);
  if (!metrics.ok()) return Fail(metrics.status());
  serve::GrpcOptions grpc_options;
  grpc_options.host = flags.host;
  grpc_options.port = flags.grpc_port;
  grpc_options.max_receive_bytes = *max_body;
  grpc_options.max_threads = std::max(2, flags.http_threads);
  grpc_options.access = &access;
  auto grpc = serve::GrpcServer::Start(&service, grpc_options);
  if (!grpc.ok()) return Fail(grpc.status());

  for (const auto& model : repository.Loaded()) {
    std::printf("model '%s' version %lld from %s: %zu planned taps%s; mode %s\n",
                model->name.c_str(), static_cast<long long>(model->version),
                model->bundle_dir.c_str(), model->engine->planned_taps().size(),
                flags.engine.no_cache ? " (caches off)" : "",
                model->engine->mode_report().c_str());
  }
  const std::string shown_host = flags.host == "0.0.0.0" ? "localhost" : flags.host;
  const std::string metrics_host = metrics_options.host == "0.0.0.0" ? "localhost"
                                                                      : metrics_options.host;
  std::printf("gati serve: ready; HTTP on %s:%d, gRPC on %s:%d, metrics on http://%s:%d/metrics\n",
              shown_host.c_str(), (*http)->port(), shown_host.c_str(), (*grpc)->port(),
              metrics_host.c_str(), (*metrics)->port());
  std::fflush(stdout);

  int signal_number = 0;
  sigwait(&stop_signals, &signal_number);
  using Clock = std::chrono::steady_clock;
  const Clock::time_point deadline =
      Clock::now() + std::chrono::milliseconds(static_cast<int64_t>(flags.drain_seconds * 1000));
  auto left = [&deadline] {
    return std::max(std::chrono::milliseconds(0),
                    std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()));
  };
  std::printf("gati serve: %s; draining %lld requests in flight (at most %.1f s)\n",
              signal_number == SIGTERM ? "SIGTERM" : "SIGINT",
              static_cast<long long>(service.in_flight()), flags.drain_seconds);
  std::fflush(stdout);
  // New inference requests get 503 from here on; those admitted finish,
  // and their responses are written, until the deadline.
  service.BeginDrain();
  service.WaitIdle(left());
  // gRPC's synchronous server waits for its running handlers; it stops on
  // a thread of its own, so that the deadline still bounds the drain.
  auto grpc_stopped = std::make_shared<std::promise<void>>();
  std::future<void> grpc_done = grpc_stopped->get_future();
  std::thread grpc_stopper([server = grpc->get(), grpc_stopped, grace = left()] {
    server->Stop(grace);
    grpc_stopped->set_value();
  });
  // (A Shutdown with no grace left still takes a moment to cancel.)
  const bool grpc_finished =
      grpc_done.wait_for(std::max(left(), std::chrono::milliseconds(100))) ==
      std::future_status::ready;
  if (grpc_finished) {
    grpc_stopper.join();
  } else {
    grpc_stopper.detach();
  }
  int64_t cut_http = (*http)->Stop(left(), /*abandon=*/true);
  cut_http += (*metrics)->Stop(left(), /*abandon=*/true);
  const int64_t running = service.in_flight();
  if (running > 0 || cut_http > 0 || !grpc_finished) {
    std::fprintf(stderr,
                 "gati serve: the %.1f s drain deadline passed with %lld requests unanswered "
                 "(%lld inference requests still running%s); exiting without them\n",
                 flags.drain_seconds, static_cast<long long>(std::max(running, cut_http)),
                 static_cast<long long>(running),
                 grpc_finished ? "" : ", gRPC calls still running");
    std::fflush(stdout);
    std::fflush(stderr);
    // Their threads are not waited for: the deadline bounds the exit.
    std::_Exit(kExitError);
  }
  if (recorder) {
    recorder.reset();  // Writes the last, partial shards.
    std::printf("gati serve: recorded traffic under %s\n", flags.record.c_str());
  }
  std::printf("gati serve: drained; exiting\n");
  return kExitOk;
}

}  // namespace

std::function<int()> RegisterServeCommand(CLI::App& app) {
  auto flags = std::make_shared<ServeFlags>();
  CLI::App* command = app.add_subcommand(
      "serve",
      "Serve bundles over the Open Inference Protocol v2 (HTTP and gRPC) with Prometheus "
      "metrics; SIGTERM drains and exits.");
  command->add_option("--repository", flags->repository,
                      "directory with one bundle per subdirectory, named after it");
  command->add_option("--model", flags->models, "NAME=BUNDLE (repeatable)");
  command->add_option("--host", flags->host, "address to listen on");
  command->add_option("--metrics-host", flags->metrics_host,
                      "address the metrics port listens on (default: --host), e.g. 127.0.0.1 "
                      "to keep /metrics off the network");
  command->add_option("--http-port", flags->http_port, "HTTP port (0: any free port)")
      ->check(CLI::Range(0, 65535));
  command->add_option("--grpc-port", flags->grpc_port, "gRPC port (0: any free port)")
      ->check(CLI::Range(0, 65535));
  command->add_option("--metrics-port", flags->metrics_port,
                      "Prometheus /metrics port (0: any free port)")
      ->check(CLI::Range(0, 65535));
  command->add_option("--batching", flags->batching,
                      "dynamic batching of concurrent requests (models whose bundle holds a "
                      "config.json follow it instead)")
      ->check(CLI::IsMember({"on", "off"}));
  command->add_option("--max-batch-size", flags->max_batch_size,
                      "most rows the batcher merges into one batch")
      ->check(CLI::Range(1, 4096));
  command->add_option("--max-queue-delay-us", flags->max_queue_delay_us,
                      "longest a request waits for others to join its batch (0: none; a batch "
                      "is then what queued while the previous ones computed)")
      ->check(CLI::Range(int64_t{0}, int64_t{10'000'000}));
  command->add_option("--busy-delay-us", flags->busy_delay_us,
                      "while another batch computes, longest a request waits for others to "
                      "join its batch (an idle model answers at once; also for models with a "
                      "config.json)")
      ->check(CLI::Range(int64_t{0}, int64_t{10'000'000}));
  command->add_option("--preferred-batch-size", flags->preferred_batch_sizes,
                      "batch sizes run as soon as they can be formed (repeatable)")
      ->check(CLI::Range(1, 4096));
  command->add_option("--http-threads", flags->http_threads,
                      "threads running HTTP inference and repository requests (and most gRPC "
                      "threads); when all are busy, inference gets 503 at once")
      ->check(CLI::Range(2, 4096));
  command->add_option("--max-connections", flags->max_connections,
                      "most open HTTP connections; more are closed on accept")
      ->check(CLI::Range(1, 1 << 20));
  command->add_option("--max-bodies", flags->max_bodies,
                      "most bytes of HTTP request bodies held at once, all connections "
                      "together, e.g. 1GB; past it a request gets 503");
  command->add_option("--max-header", flags->max_header,
                      "largest HTTP request line and headers, e.g. 64KB; larger get 431");
  command->add_option("--idle-timeout", flags->idle_timeout_seconds,
                      "seconds an idle keep-alive HTTP connection stays open")
      ->check(CLI::Range(0.001, 86400.0));
  command->add_option("--request-timeout", flags->request_timeout_seconds,
                      "seconds an HTTP request may take to arrive whole once its headers are in (else the connection is closed)")
      ->check(CLI::Range(0.001, 86400.0));
  command->add_option("--restricted-api", flags->restricted_api,
                      "API[,API...]:KEY=VALUE (repeatable): those endpoint groups (health, "
                      "metadata, inference, model-config, model-repository, statistics) answer "
                      "only requests with header / gRPC metadata KEY set to VALUE (as Triton's "
                      "--http-restricted-api)");
  command->add_option("--max-queue", flags->max_queue,
                      "most inference requests queued or running at once; more get 503")
      ->check(CLI::Range(1, 1 << 20));
  command->add_option("--max-body", flags->max_body,
                      "largest request body / gRPC message, e.g. 64MB");
  command->add_option("--drain-seconds", flags->drain_seconds,
                      "on SIGTERM, longest wait for requests in flight")
      ->check(CLI::Range(0.0, 3600.0));
  command->add_option("--record", flags->record,
                      "record a sample of the inputs served, as .npy shards of raw values "
                      "under DIR/MODEL (gati build --data DIR/MODEL reads them)");
  command->add_option("--record-rate", flags->record_rate,
                      "share of the inputs served that --record keeps")
      ->check(CLI::Range(1e-9, 1.0));
  command->add_option("--record-bytes", flags->record_bytes,
                      "cap on the recording's shards, e.g. 1GB; recording stops there");
  AddEngineFlags(command, &flags->engine);
  return [flags] { return RunServe(*flags); };
}

}  // namespace gati::cli
