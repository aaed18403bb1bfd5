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
  accepted += s.accepted.get();
}

}  // namespace drainproxy::proxy
