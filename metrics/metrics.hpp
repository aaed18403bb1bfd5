#pragma once
#include <array>
#include <memory>
#include <string>

#include "drain/phase.hpp"
#include "proxy/stats.hpp"

namespace prometheus {
class Registry;
class Gauge;
class Counter;
class Histogram;
}  // namespace prometheus

namespace drainproxy::metrics {

// What a scrape reports, gathered by the control loop at scrape time.
struct Sample {
  drain::Phase phase = drain::Phase::Starting;
  bool ready = false;
  bool upstream_healthy = false;
  double drain_started_unix = 0;
  double drain_seconds = 0;
  proxy::StatsSnapshot stats;
};

// The prometheus-cpp registry behind /metrics. The data path never touches it:
// workers bump their own counters, and render() folds the sums in at scrape time.
class Metrics {
 public:
  // `http`: also register the request metrics of HTTP mode.
  Metrics(const std::string& listener, bool http);
  ~Metrics();

  // Prometheus text exposition format 0.0.4.
  std::string render(const Sample& s);

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Gauge* ready_;
  std::array<prometheus::Gauge*, drain::kAllPhases.size()> phase_;
  prometheus::Gauge* drain_started_;
  prometheus::Gauge* drain_duration_;
  prometheus::Gauge* active_;
  prometheus::Counter* accepted_;
  std::array<prometheus::Counter*, proxy::kCloseReasonCount> closed_;
  prometheus::Gauge* upstream_healthy_;
  prometheus::Counter* connect_errors_;
  prometheus::Counter* bytes_rx_;
  prometheus::Counter* bytes_tx_;
  // HTTP mode only
  std::array<prometheus::Counter*, 5> requests_{};
  prometheus::Gauge* inflight_ = nullptr;
  prometheus::Histogram* duration_ = nullptr;
  std::array<prometheus::Counter*, proxy::kRejectCount> rejected_{};

  proxy::StatsSnapshot exported_;  // what the counters already hold
};

}  // namespace drainproxy::metrics
