#include "serve/metrics.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <functional>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace gati::serve {

const char* TransportLabel(Transport transport) {
  switch (transport) {
    case Transport::kHttpJson: return "http_json";
    case Transport::kHttpBinary: return "http_binary";
    case Transport::kGrpc: return "grpc";
  }
  return "unknown";
}

const char* FailureReasonLabel(FailureReason reason) {
  switch (reason) {
    case FailureReason::kInvalidArgument: return "invalid_argument";
    case FailureReason::kOverloaded: return "overloaded";
    case FailureReason::kShuttingDown: return "shutting_down";
    case FailureReason::kUnavailable: return "unavailable";
    case FailureReason::kInternal: return "internal";
  }
  return "unknown";
}

namespace {

// Label values: backslash, double quote and newline escaped.
std::string Escape(const std::string& value) {
  std::string out;
  for (char c : value) {
    if (c == '\\') out += "\\\\";
    else if (c == '"') out += "\\\"";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

// The shortest decimal that reads back as `value` (0.00025, not
// 0.00025000000000000001).
std::string Number(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  if (value == std::floor(value) && std::fabs(value) < 1e15) {
    return absl::StrFormat("%.0f", value);
  }
  for (int digits = 1; digits < 17; ++digits) {
    std::string text = absl::StrFormat("%.*g", digits, value);
    if (std::strtod(text.c_str(), nullptr) == value) return text;
  }
  return absl::StrFormat("%.17g", value);
}

class Writer {
 public:
  // Starts a metric family.
  void Family(const std::string& name, const char* type, const char* help) {
    absl::StrAppend(&text_, "# HELP ", name, " ", help, "\n# TYPE ", name, " ", type, "\n");
  }
  void Sample(const std::string& name, const std::string& labels, double value) {
    absl::StrAppend(&text_, name, labels.empty() ? "" : "{", labels, labels.empty() ? "" : "}",
                    " ", Number(value), "\n");
  }
  template <size_t N>
  void Histogram(const std::string& name, const std::string& labels,
                 const BucketHistogram<N>& histogram) {
    const typename BucketHistogram<N>::Snapshot snapshot = histogram.Read();
    const std::string prefix = labels.empty() ? "" : labels + ",";
    for (size_t i = 0; i < N; ++i) {
      Sample(name + "_bucket", absl::StrCat(prefix, "le=\"", Number(histogram.bounds()[i]), "\""),
             static_cast<double>(snapshot.cumulative[i]));
    }
    Sample(name + "_bucket", prefix + "le=\"+Inf\"", static_cast<double>(snapshot.count));
    Sample(name + "_sum", labels, snapshot.sum_seconds);
    Sample(name + "_count", labels, static_cast<double>(snapshot.count));
  }
  std::string Take() { return std::move(text_); }

 private:
  std::string text_;
};

std::string ModelLabel(const std::string& model, int64_t version) {
  return absl::StrCat("model=\"", Escape(model), "\",version=\"",
                      version > 0 ? std::to_string(version) : "", "\"");
}

std::string TapLabels(const std::string& model, int64_t version, const TapStats& tap) {
  return absl::StrCat(ModelLabel(model, version), ",tap=\"", tap.tap, "\"");
}

constexpr char kUnknownModel[] = "(unknown)";

}  // namespace

std::string RenderPrometheus(const ServerMetricsView& server,
                             const std::vector<ModelMetricsView>& models) {
  Writer out;
  out.Family("gati_server_ready", "gauge", "1 when some model serves and the server is not draining.");
  out.Sample("gati_server_ready", "", server.ready ? 1 : 0);
  out.Family("gati_requests_in_flight", "gauge", "Inference requests admitted and not yet answered.");
  out.Sample("gati_requests_in_flight", "", static_cast<double>(server.in_flight));
  out.Family("gati_request_queue_capacity", "gauge",
             "Most inference requests admitted at once; more are answered 503.");
  out.Sample("gati_request_queue_capacity", "", static_cast<double>(server.queue_capacity));

  // Request outcomes: loaded models, then registered ones not loaded.
  struct Counted {
    std::string name;
    int64_t version;
    const ModelMetrics* metrics;
  };
  std::vector<Counted> all;
  for (const ModelMetricsView& model : models) {
    all.push_back({model.name, model.version, model.metrics});
  }
  for (const auto& model : server.unloaded) {
    all.push_back({model.name, model.version, model.metrics});
  }
  auto failures = [](const ModelMetrics& metrics) {
    int64_t total = 0;
    for (const auto& count : metrics.failures) total += count.load();
    return total;
  };

  out.Family("gati_request_success_total", "counter", "Inference requests answered.");
  for (const Counted& model : all) {
    out.Sample("gati_request_success_total", ModelLabel(model.name, model.version),
               static_cast<double>(model.metrics->successes.load()));
  }
  out.Family("gati_request_failure_total", "counter",
             "Inference requests that failed, by reason; requests naming a model the server "
             "does not have count under model \"(unknown)\", reason \"not_found\".");
  for (const Counted& model : all) {
    for (int r = 0; r < kNumFailureReasons; ++r) {
      out.Sample("gati_request_failure_total",
                 absl::StrCat(ModelLabel(model.name, model.version), ",reason=\"",
                              FailureReasonLabel(static_cast<FailureReason>(r)), "\""),
                 static_cast<double>(model.metrics->failures[r].load()));
    }
  }
  out.Sample("gati_request_failure_total",
             absl::StrCat(ModelLabel(kUnknownModel, 0), ",reason=\"not_found\""),
             static_cast<double>(server.unknown_model_requests));
  out.Family("gati_inferences_total", "counter", "Samples classified (a batch of N counts N).");
  for (const Counted& model : all) {
    out.Sample("gati_inferences_total", ModelLabel(model.name, model.version),
               static_cast<double>(model.metrics->inferences.load()));
  }
  struct HistogramFamily {
    const char* name;
    const char* help;
    const LatencyHistogram ModelMetrics::*member;
  };
  const HistogramFamily histograms[] = {
      {"gati_request_duration_seconds", "Whole inference request, decode to encoded answer.",
       &ModelMetrics::request},
      {"gati_queue_duration_seconds", "Per sample: waiting for an engine worker.",
       &ModelMetrics::queue},
      {"gati_compute_duration_seconds", "Per sample: engine time after the queue.",
       &ModelMetrics::compute},
  };
  for (const HistogramFamily& family : histograms) {
    out.Family(family.name, "histogram", family.help);
    for (const Counted& model : all) {
      out.Histogram(family.name, ModelLabel(model.name, model.version),
                    model.metrics->*family.member);
    }
  }

  if (server.overhead != nullptr) {
    out.Family("gati_server_overhead_seconds", "histogram",
               "Per inference request, the server's own time: request in (headers read) to "
               "response out, less the engine's time, by front end.");
    for (int t = 0; t < kNumTransports; ++t) {
      out.Histogram("gati_server_overhead_seconds",
                    absl::StrCat("transport=\"", TransportLabel(static_cast<Transport>(t)), "\""),
                    (*server.overhead)[t]);
    }
  }

  // Triton's names for the same counters.
  struct TritonFamily {
    const char* name;
    const char* help;
    std::function<double(const ModelMetrics&)> value;
  };
  auto micros = [](const LatencyHistogram ModelMetrics::*member) {
    return [member](const ModelMetrics& m) { return std::round((m.*member).Read().sum_seconds * 1e6); };
  };
  const TritonFamily triton[] = {
      {"nv_inference_request_success", "Number of successful inference requests, all batch sizes",
       [](const ModelMetrics& m) { return static_cast<double>(m.successes.load()); }},
      {"nv_inference_request_failure", "Number of failed inference requests, all batch sizes",
       [&](const ModelMetrics& m) { return static_cast<double>(failures(m)); }},
      {"nv_inference_count", "Number of inferences performed (a batch of N counts N)",
       [](const ModelMetrics& m) { return static_cast<double>(m.inferences.load()); }},
      {"nv_inference_exec_count", "Number of model executions performed",
       [](const ModelMetrics& m) { return static_cast<double>(m.executions.load()); }},
      {"nv_inference_request_duration_us", "Cumulative inference request duration in microseconds",
       micros(&ModelMetrics::request)},
      {"nv_inference_queue_duration_us", "Cumulative inference queuing duration in microseconds",
       micros(&ModelMetrics::queue)},
      {"nv_inference_compute_infer_duration_us",
       "Cumulative compute inference duration in microseconds", micros(&ModelMetrics::compute)},
  };
  for (const TritonFamily& family : triton) {
    out.Family(family.name, "counter", family.help);
    for (const Counted& model : all) {
      out.Sample(family.name, ModelLabel(model.name, model.version), family.value(*model.metrics));
    }
  }

  // Engine state of each loaded version.
  auto per_model = [&](const char* name, const char* type, const char* help,
                       const std::function<double(const ModelMetricsView&)>& value) {
    out.Family(name, type, help);
    for (const ModelMetricsView& model : models) {
      out.Sample(name, ModelLabel(model.name, model.version), value(model));
    }
  };
  per_model("gati_model_version", "gauge", "The loaded version (1, then +1 per reload).",
            [](const ModelMetricsView& m) { return static_cast<double>(m.version); });
  per_model("gati_cache_version", "gauge", "Version of the cache set in force (+1 per online update).",
            [](const ModelMetricsView& m) { return static_cast<double>(m.stats.cache_version); });
  per_model("gati_base_answers_total", "counter", "Requests the base model answered.",
            [](const ModelMetricsView& m) { return static_cast<double>(m.stats.base_answers); });
  per_model("gati_exact_cache_hits_total", "counter", "Requests the exact-match cache answered.",
            [](const ModelMetricsView& m) { return static_cast<double>(m.stats.exact_hits); });
  per_model("gati_feedback_requests_total", "counter",
            "Requests whose base-model answer was recorded as feedback.",
            [](const ModelMetricsView& m) { return static_cast<double>(m.stats.feedback_requests); });
  per_model("gati_feedback_boosted_requests_total", "counter",
            "Feedback requests sampled at the in-doubt rate (the live bound in doubt).",
            [](const ModelMetricsView& m) {
              return static_cast<double>(m.stats.feedback_boosted_requests);
            });
  per_model("gati_feedback_memory_bytes", "gauge", "Bytes held by the feedback ring buffers.",
            [](const ModelMetricsView& m) { return static_cast<double>(m.stats.feedback_bytes); });
  per_model("gati_feedback_memory_capacity_bytes", "gauge", "Cap on the feedback ring buffers.",
            [](const ModelMetricsView& m) {
              return static_cast<double>(m.stats.feedback_capacity_bytes);
            });
  per_model("gati_online_updates_accepted_total", "counter",
            "Cache updates the learner's gate accepted and installed.",
            [](const ModelMetricsView& m) { return static_cast<double>(m.stats.updates_accepted); });
  per_model("gati_online_updates_rejected_total", "counter",
            "Cache updates the learner's gate rejected.",
            [](const ModelMetricsView& m) { return static_cast<double>(m.stats.updates_rejected); });
  per_model("gati_live_disagreement_upper", "gauge",
            "Upper end of the anytime-valid confidence sequence on the disagreement with the "
            "base model over all answers (from feedback-sampled answers).",
            [](const ModelMetricsView& m) { return m.stats.live_disagreement_upper; });
  per_model("gati_live_disagreement_lower", "gauge",
            "Lower end of the same confidence sequence.",
            [](const ModelMetricsView& m) { return m.stats.live_disagreement_lower; });
  per_model("gati_live_answers_checked", "gauge",
            "Feedback-sampled answers in the live confidence sequence (since it last started).",
            [](const ModelMetricsView& m) { return static_cast<double>(m.stats.live_checked); });
  per_model("gati_live_tightenings_total", "counter",
            "Times the live bound acted (thresholds withdrawn, or a tap off) because the "
            "disagreement over all answers was above epsilon.",
            [](const ModelMetricsView& m) { return static_cast<double>(m.stats.live_tightenings); });
  per_model("gati_live_disagreement_weighted", "gauge",
            "Disagreement of the feedback-sampled answers weighted by the inverse of the rate "
            "each was sampled at (since the sequence last started).",
            [](const ModelMetricsView& m) { return m.stats.live_disagreement_weighted; });
  per_model("gati_thresholds_withdrawn", "gauge",
            "1 while every tap is off because the live bound was breached and recent feedback "
            "has not certified new thresholds yet.",
            [](const ModelMetricsView& m) {
              return m.stats.threshold_source == "none" ? 1.0 : 0.0;
            });
  per_model("gati_feedback_busy_seconds_total", "counter",
            "Worker time spent on feedback after the answers (remaining segments, checks, "
            "feedback rows, the recalibration window's lookups).",
            [](const ModelMetricsView& m) { return m.stats.feedback_busy_seconds; });
  per_model("gati_recalibration_busy_seconds_total", "counter",
            "Time the recalibration thread spent testing threshold policies.",
            [](const ModelMetricsView& m) { return m.stats.recalibration_busy_seconds; });
  per_model("gati_recalibrations_total", "counter",
            "Times recalibration on recent feedback changed the thresholds in force.",
            [](const ModelMetricsView& m) { return static_cast<double>(m.stats.recalibrations); });
  per_model("gati_learner_rounds_total", "counter", "Online learner rounds run.",
            [](const ModelMetricsView& m) { return static_cast<double>(m.stats.learner_rounds); });

  auto per_tap = [&](const char* name, const char* type, const char* help,
                     const std::function<double(const TapStats&)>& value) {
    out.Family(name, type, help);
    for (const ModelMetricsView& model : models) {
      for (const TapStats& tap : model.stats.taps) {
        out.Sample(name, TapLabels(model.name, model.version, tap), value(tap));
      }
    }
  };
  per_tap("gati_tap_lookups_total", "counter", "Cache lookups at the tap.",
          [](const TapStats& t) { return static_cast<double>(t.lookups); });
  per_tap("gati_tap_hits_total", "counter", "Requests the tap's cache answered.",
          [](const TapStats& t) { return static_cast<double>(t.hits); });
  per_tap("gati_tap_misses_total", "counter", "Lookups at the tap that did not answer.",
          [](const TapStats& t) { return static_cast<double>(t.lookups - t.hits); });
  per_tap("gati_tap_feedback_checked_hits_total", "counter",
          "Hits whose base-model answer feedback learned.",
          [](const TapStats& t) { return static_cast<double>(t.feedback_hits); });
  per_tap("gati_tap_false_hits_total", "counter",
          "Checked hits whose class differed from the base model's.",
          [](const TapStats& t) { return static_cast<double>(t.feedback_false_hits); });
  per_tap("gati_tap_false_hit_rate_lower_bound", "gauge",
          "Monitor: lower confidence bound of the false-hit rate over its window.",
          [](const TapStats& t) { return t.live_false_hit_lower; });
  per_tap("gati_tap_epsilon", "gauge", "The tap's bound on its false-hit rate.",
          [](const TapStats& t) { return t.epsilon; });
  per_tap("gati_tap_threshold", "gauge", "Selector threshold in force.",
          [](const TapStats& t) { return static_cast<double>(t.threshold); });
  per_tap("gati_tap_disabled", "gauge", "1 while the monitor has the tap switched off.",
          [](const TapStats& t) { return t.disabled ? 1.0 : 0.0; });
  per_tap("gati_tap_disabled_events_total", "counter", "Times the monitor switched the tap off.",
          [](const TapStats& t) { return static_cast<double>(t.times_disabled); });
  per_tap("gati_tap_feedback_rows", "gauge", "Feedback rows held for the tap.",
          [](const TapStats& t) { return static_cast<double>(t.feedback_rows); });
  per_tap("gati_tap_updates_accepted_total", "counter", "Online updates installed at the tap.",
          [](const TapStats& t) { return static_cast<double>(t.updates_accepted); });
  per_tap("gati_tap_updates_rejected_total", "counter", "Online updates the gate rejected at the tap.",
          [](const TapStats& t) { return static_cast<double>(t.updates_rejected); });
  return out.Take();
}

}  // namespace gati::serve
