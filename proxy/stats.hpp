#pragma once
#include <array>
#include <atomic>
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

// One listener's counters on one worker; cache-line aligned so workers never share a line.
struct alignas(64) ListenerStats {
  Counter accepted;
  std::array<Counter, kCloseReasonCount> closed;
  Counter bytes_rx;  // from clients
  Counter bytes_tx;  // to clients
  Counter upstream_connect_errors;

  Counter& closed_for(CloseReason r) { return closed[static_cast<std::size_t>(r)]; }
};

// Plain sums over workers, taken at scrape time.
struct StatsSnapshot {
  std::uint64_t accepted = 0;
  std::array<std::uint64_t, kCloseReasonCount> closed{};
  std::uint64_t bytes_rx = 0;
  std::uint64_t bytes_tx = 0;
  std::uint64_t upstream_connect_errors = 0;

  std::uint64_t closed_total() const;
  std::uint64_t closed_for(CloseReason r) const { return closed[static_cast<std::size_t>(r)]; }
  // Every accepted connection is closed exactly once, so the difference is what is open.
  std::uint64_t active() const { return accepted - closed_total(); }
  void add(const ListenerStats& s);
};

}  // namespace drainproxy::proxy
