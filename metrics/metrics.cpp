#include "metrics/metrics.hpp"

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

namespace drainproxy::metrics {

namespace {
void advance(prometheus::Counter* c, std::uint64_t now, std::uint64_t before) {
  if (now > before) c->Increment(static_cast<double>(now - before));
}
}  // namespace

Metrics::Metrics(const std::string& listener, bool http) : registry_(std::make_shared<prometheus::Registry>()) {
  using prometheus::BuildCounter;
  using prometheus::BuildGauge;
  auto& r = *registry_;
  const prometheus::Labels l{{"listener", listener}};

  ready_ = &BuildGauge().Name("drainproxy_ready").Help("1 when /ready answers 200.").Register(r).Add({});
  auto& phase = BuildGauge().Name("drainproxy_phase").Help("1 for the current drain phase, 0 for the others.").Register(r);
  for (std::size_t i = 0; i < drain::kAllPhases.size(); ++i)
    phase_[i] = &phase.Add({{"phase", drain::to_string(drain::kAllPhases[i])}});
  drain_started_ = &BuildGauge()
                        .Name("drainproxy_drain_started_timestamp_seconds")
                        .Help("Unix time of the drain trigger, 0 before.")
                        .Register(r)
                        .Add({});
  drain_duration_ = &BuildGauge()
                         .Name("drainproxy_drain_duration_seconds")
                         .Help("Seconds from the drain trigger to stopped; grows while draining.")
                         .Register(r)
                         .Add({});
  active_ = &BuildGauge().Name("drainproxy_connections_active").Help("Open proxied connections.").Register(r).Add(l);
  accepted_ =
      &BuildCounter().Name("drainproxy_connections_total").Help("Accepted client connections.").Register(r).Add(l);
  auto& closed = BuildCounter()
                     .Name("drainproxy_connections_closed_total")
                     .Help("Closed proxied connections by reason.")
                     .Register(r);
  for (std::size_t i = 0; i < proxy::kCloseReasonCount; ++i)
    closed_[i] = &closed.Add({{"listener", listener}, {"reason", proxy::to_string(static_cast<proxy::CloseReason>(i))}});
  upstream_healthy_ = &BuildGauge()
                           .Name("drainproxy_upstream_healthy")
                           .Help("1 if the last upstream health verdict was healthy.")
                           .Register(r)
                           .Add({});
  connect_errors_ = &BuildCounter()
                         .Name("drainproxy_upstream_connect_errors_total")
                         .Help("Failed connection attempts to the upstream.")
                         .Register(r)
                         .Add(l);
  auto& bytes = BuildCounter()
                    .Name("drainproxy_bytes_total")
                    .Help("Bytes proxied: rx from clients, tx to clients.")
                    .Register(r);
  bytes_rx_ = &bytes.Add({{"listener", listener}, {"direction", "rx"}});
  bytes_tx_ = &bytes.Add({{"listener", listener}, {"direction", "tx"}});
  if (!http) return;

  auto& requests = BuildCounter()
                       .Name("drainproxy_requests_total")
                       .Help("HTTP responses sent to clients, by status class.")
                       .Register(r);
  static constexpr const char* kClasses[] = {"1xx", "2xx", "3xx", "4xx", "5xx"};
  for (std::size_t i = 0; i < requests_.size(); ++i) requests_[i] = &requests.Add({{"listener", listener}, {"code", kClasses[i]}});
  inflight_ = &BuildGauge()
                   .Name("drainproxy_requests_inflight")
                   .Help("HTTP requests received and not yet answered.")
                   .Register(r)
                   .Add(l);
  const prometheus::Histogram::BucketBoundaries bounds(proxy::kDurationBuckets.begin(), proxy::kDurationBuckets.end());
  duration_ = &prometheus::BuildHistogram()
                   .Name("drainproxy_request_duration_seconds")
                   .Help("HTTP request duration, first byte in to last byte out.")
                   .Register(r)
                   .Add(l, bounds);
  auto& rejected = BuildCounter()
                       .Name("drainproxy_http_rejected_total")
                       .Help("Requests the proxy answered itself with an error, by reason.")
                       .Register(r);
  for (std::size_t i = 0; i < proxy::kRejectCount; ++i)
    rejected_[i] = &rejected.Add({{"listener", listener}, {"reason", proxy::to_string(static_cast<proxy::Reject>(i))}});
}

Metrics::~Metrics() = default;

std::string Metrics::render(const Sample& s) {
  ready_->Set(s.ready ? 1 : 0);
  for (std::size_t i = 0; i < drain::kAllPhases.size(); ++i) phase_[i]->Set(drain::kAllPhases[i] == s.phase ? 1 : 0);
  drain_started_->Set(s.drain_started_unix);
  drain_duration_->Set(s.drain_seconds);
  upstream_healthy_->Set(s.upstream_healthy ? 1 : 0);
  active_->Set(static_cast<double>(s.stats.active()));

  advance(accepted_, s.stats.accepted, exported_.accepted);
  for (std::size_t i = 0; i < proxy::kCloseReasonCount; ++i) advance(closed_[i], s.stats.closed[i], exported_.closed[i]);
  advance(connect_errors_, s.stats.upstream_connect_errors, exported_.upstream_connect_errors);
  advance(bytes_rx_, s.stats.bytes_rx, exported_.bytes_rx);
  advance(bytes_tx_, s.stats.bytes_tx, exported_.bytes_tx);
  if (duration_) {
    for (std::size_t i = 0; i < requests_.size(); ++i)
      advance(requests_[i], s.stats.responses_by_class[i], exported_.responses_by_class[i]);
    for (std::size_t i = 0; i < proxy::kRejectCount; ++i) advance(rejected_[i], s.stats.rejected[i], exported_.rejected[i]);
    inflight_->Set(static_cast<double>(s.stats.requests_inflight()));
    std::vector<double> buckets(s.stats.duration_buckets.size());
    bool any = false;
    for (std::size_t i = 0; i < buckets.size(); ++i) {
      buckets[i] = static_cast<double>(s.stats.duration_buckets[i] - exported_.duration_buckets[i]);
      any = any || buckets[i] > 0;
    }
    if (any) duration_->ObserveMultiple(buckets, static_cast<double>(s.stats.duration_sum_us - exported_.duration_sum_us) / 1e6);
  }
  exported_ = s.stats;

  return prometheus::TextSerializer().Serialize(registry_->Collect());
}

}  // namespace drainproxy::metrics
