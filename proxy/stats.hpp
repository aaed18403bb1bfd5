#pragma once
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace drainproxy::proxy {

enum class CloseReason : std::uint8_t { Client, Upstream, IdleTimeout, DrainIdle, DrainForced, Error, Overload };
inline constexpr std::size_t kCloseReasonCount = 7;
const char* to_string(CloseReason r);

// A counter with a single writer (its worker thread) and any number of readers
// (the scrape). Load-then-store avoids a locked read-modify-write on the data path.
class Counter {
 public:
  void add(std::uint64_t n = 1) { v_.store(v_.load(std::memory_order_relaxed) + n, std::memory_order_release); }
  std::uint64_t get() const { return v_.load(std::memory_order_acquire); }

 private:
  std::atomic<std::uint64_t> v_{0};
};

// Why the proxy itself answered a request with an error instead of the app.
enum class Reject : std::uint8_t {
  BadRequest,          // 400: malformed or ambiguous request
  MethodNotAllowed,    // 405: CONNECT
  RequestTimeout,      // 408: head not complete within --header-timeout
  PayloadTooLarge,     // 413: body over --max-body-bytes
  UriTooLong,          // 414
  ExpectationFailed,   // 417
  HeaderTooLarge,      // 431
  NotImplemented,      // 501: unknown transfer coding
  BadGateway,          // 502: app refused, reset or sent a malformed response
  Overload,            // 503: over --max-connections
  GatewayTimeout,      // 504: no response within --upstream-timeout
  VersionNotSupported  // 505
};
inline constexpr std::size_t kRejectCount = 12;
const char* to_string(Reject r);
Reject reject_for_status(unsigned status);

// Upper bounds (seconds) of the request duration histogram buckets; +Inf is implied.
inline constexpr std::array<double, 12> kDurationBuckets{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                                        0.05,   0.1,   0.25,   0.5,   1.0,  5.0};

// One listener's counters on one worker; cache-line aligned so workers never share a line.
struct alignas(64) ListenerStats {
  Counter accepted;
  std::array<Counter, kCloseReasonCount> closed;
  Counter bytes_rx;  // from clients
  Counter bytes_tx;  // to clients
  Counter upstream_connect_errors;

  // HTTP mode
  Counter requests_started;
  std::array<Counter, 5> responses_by_class;  // 1xx (final responses never are) .. 5xx
  Counter requests_aborted;                    // ended before a complete response (client or app went away)
  std::array<Counter, kDurationBuckets.size() + 1> duration_buckets;  // non-cumulative; last is +Inf
  Counter duration_sum_us;
  std::array<Counter, kRejectCount> rejected;

  Counter& closed_for(CloseReason r) { return closed[static_cast<std::size_t>(r)]; }
  // status 0: the exchange ended without a complete response.
  void request_done(unsigned status, std::chrono::steady_clock::duration took);
  void rejected_with(Reject r) { rejected[static_cast<std::size_t>(r)].add(); }
};

// Plain sums over workers, taken at scrape time.
struct StatsSnapshot {
  std::uint64_t accepted = 0;
  std::array<std::uint64_t, kCloseReasonCount> closed{};
  std::uint64_t bytes_rx = 0;
  std::uint64_t bytes_tx = 0;
  std::uint64_t upstream_connect_errors = 0;
  std::uint64_t requests_started = 0;
  std::array<std::uint64_t, 5> responses_by_class{};
  std::uint64_t requests_aborted = 0;
  std::array<std::uint64_t, kDurationBuckets.size() + 1> duration_buckets{};
  std::uint64_t duration_sum_us = 0;
  std::array<std::uint64_t, kRejectCount> rejected{};

  std::uint64_t closed_total() const;
  std::uint64_t responses_total() const;
  std::uint64_t requests_inflight() const { return requests_started - responses_total() - requests_aborted; }
  std::uint64_t closed_for(CloseReason r) const { return closed[static_cast<std::size_t>(r)]; }
  // Every accepted connection is closed exactly once, so the difference is what is open.
  std::uint64_t active() const { return accepted - closed_total(); }
  void add(const ListenerStats& s);
};

}  // namespace drainproxy::proxy
