#include "proxy/stats.hpp"

#include <numeric>

namespace drainproxy::proxy {

const char* to_string(CloseReason r) {
  switch (r) {
    case CloseReason::Client: return "client";
    case CloseReason::Upstream: return "upstream";
    case CloseReason::IdleTimeout: return "idle_timeout";
    case CloseReason::DrainIdle: return "drain_idle";
    case CloseReason::DrainForced: return "drain_forced";
    case CloseReason::Error: return "error";
    case CloseReason::Overload: return "overload";
  }
  return "unknown";
}

const char* to_string(Reject r) {
  switch (r) {
    case Reject::BadRequest: return "bad_request";
    case Reject::MethodNotAllowed: return "method_not_allowed";
    case Reject::RequestTimeout: return "request_timeout";
    case Reject::PayloadTooLarge: return "payload_too_large";
    case Reject::UriTooLong: return "uri_too_long";
    case Reject::ExpectationFailed: return "expectation_failed";
    case Reject::HeaderTooLarge: return "header_too_large";
    case Reject::NotImplemented: return "not_implemented";
    case Reject::BadGateway: return "bad_gateway";
    case Reject::Overload: return "overload";
    case Reject::GatewayTimeout: return "gateway_timeout";
    case Reject::VersionNotSupported: return "version_not_supported";
  }
  return "unknown";
}

Reject reject_for_status(unsigned status) {
  switch (status) {
    case 405: return Reject::MethodNotAllowed;
    case 408: return Reject::RequestTimeout;
    case 413: return Reject::PayloadTooLarge;
    case 414: return Reject::UriTooLong;
    case 417: return Reject::ExpectationFailed;
    case 431: return Reject::HeaderTooLarge;
    case 501: return Reject::NotImplemented;
    case 502: return Reject::BadGateway;
    case 503: return Reject::Overload;
    case 504: return Reject::GatewayTimeout;
    case 505: return Reject::VersionNotSupported;
    default: return Reject::BadRequest;
  }
}

void ListenerStats::request_done(unsigned status, std::chrono::steady_clock::duration took) {
  if (status == 0) {
    requests_aborted.add();
    return;
  }
  const std::size_t cls = status >= 100 && status < 600 ? status / 100 - 1 : 4;
  responses_by_class[cls].add();
  const double seconds = std::chrono::duration<double>(took).count();
  std::size_t b = 0;
  while (b < kDurationBuckets.size() && seconds > kDurationBuckets[b]) ++b;
  duration_buckets[b].add();
  duration_sum_us.add(static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(took).count()));
}

std::uint64_t StatsSnapshot::responses_total() const {
  return std::accumulate(responses_by_class.begin(), responses_by_class.end(), std::uint64_t{0});
}

std::uint64_t StatsSnapshot::closed_total() const {
  return std::accumulate(closed.begin(), closed.end(), std::uint64_t{0});
}

void StatsSnapshot::add(const ListenerStats& s) {
  // Read `closed` before `accepted`: a connection accepted and closed between the two
  // reads then shows as open for one scrape instead of making active() wrap below zero.
  for (std::size_t i = 0; i < kCloseReasonCount; ++i) closed[i] += s.closed[i].get();
  bytes_rx += s.bytes_rx.get();
  bytes_tx += s.bytes_tx.get();
  upstream_connect_errors += s.upstream_connect_errors.get();
  for (std::size_t i = 0; i < responses_by_class.size(); ++i) responses_by_class[i] += s.responses_by_class[i].get();
  for (std::size_t i = 0; i < duration_buckets.size(); ++i) duration_buckets[i] += s.duration_buckets[i].get();
  duration_sum_us += s.duration_sum_us.get();
  requests_aborted += s.requests_aborted.get();
  for (std::size_t i = 0; i < kRejectCount; ++i) rejected[i] += s.rejected[i].get();
  // Started after finished, for the same reason as accepted after closed.
  requests_started += s.requests_started.get();
  accepted += s.accepted.get();
}

}  // namespace drainproxy::proxy
