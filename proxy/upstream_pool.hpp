#pragma once
#include <chrono>
#include <deque>
#include <optional>

#include "proxy/asio.hpp"

namespace drainproxy::proxy {

// Idle keep-alive connections to the app, per worker and route. LIFO, so the
// warmest connection is reused and the coldest ones age out.
class UpstreamPool {
 public:
  using time_point = std::chrono::steady_clock::time_point;

  UpstreamPool(std::size_t max_idle, std::chrono::milliseconds idle_timeout)
      : max_idle_(max_idle), idle_timeout_(idle_timeout) {}

  // A connection the app has not closed (checked with a non-blocking peek), or none.
  std::optional<tcp::socket> take(time_point now);
  void put(tcp::socket s, time_point now);
  // Closes connections idle longer than the idle timeout.
  void expire(time_point now);
  void clear();
  std::size_t size() const { return idle_.size(); }

 private:
  struct Idle {
    tcp::socket socket;
    time_point since;
  };
  std::size_t max_idle_;
  std::chrono::milliseconds idle_timeout_;
  std::deque<Idle> idle_;  // front: oldest
};

}  // namespace drainproxy::proxy
