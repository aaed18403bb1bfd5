#pragma once
#include <chrono>
#include <deque>
#include <optional>

#include "proxy/poller.hpp"

namespace drainproxy::proxy {

// Idle keep-alive connections to the app, per worker and route. LIFO, so the
// warmest connection is reused and the coldest ones age out.
class UpstreamPool {
 public:
  using time_point = std::chrono::steady_clock::time_point;

  UpstreamPool(std::size_t max_idle, std::chrono::milliseconds idle_timeout)
      : max_idle_(max_idle), idle_timeout_(idle_timeout) {}

  // A connection the app has not closed, or none. The poller saw any FIN or stray
  // bytes as a readiness event, so the check costs a syscall only after one.
  std::optional<Socket> take(time_point now);
  void put(Socket s, time_point now);
  // Closes connections idle longer than the idle timeout.
  void expire(time_point now);
  void clear();
  std::size_t size() const { return idle_.size(); }

 private:
  struct Idle {
    Socket socket;
    time_point since;
  };
  std::size_t max_idle_;
  std::chrono::milliseconds idle_timeout_;
  std::deque<Idle> idle_;  // front: oldest
};

}  // namespace drainproxy::proxy
