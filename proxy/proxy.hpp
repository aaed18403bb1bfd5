#pragma once
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "config/config.hpp"
#include "proxy/connection_limiter.hpp"
#include "proxy/route.hpp"
#include "proxy/stats.hpp"
#include "proxy/worker.hpp"

namespace drainproxy::proxy {

// The data plane: N workers, each with its own SO_REUSEPORT acceptor per route.
// Called from the control thread only; everything it does to a worker is posted.
class Proxy {
 public:
  // Binds the listen sockets at once so start-up fails early and clearly.
  // Throws std::system_error (bind) or config::ConfigError (unresolvable upstream).
  Proxy(const config::Config& cfg, const drain::DrainDecision& drain, Listener::RefusedCallback on_upstream_refused);
  ~Proxy();

  void start();
  // Returns once every worker has closed its listening sockets (bounded by kStopAcceptingWait).
  void stop_accepting();
  static constexpr std::chrono::milliseconds kStopAcceptingWait{1000};
  void force_close();
  void shutdown();

  void ping_workers();
  // The oldest answer to a ping: how long the slowest worker has been unresponsive.
  std::chrono::steady_clock::time_point oldest_pong() const;

  const Route& route() const { return route_; }
  tcp::endpoint local_endpoint() const { return local_endpoint_; }
  StatsSnapshot snapshot() const;
  std::size_t active_connections() const { return limiter_.active(); }
  // Whether the workers move socket bytes through io_uring; if not under
  // --io-uring auto, why the kernel refused it (empty under off).
  bool batching() const { return batching_; }
  const std::string& batching_refusal() const { return batching_refusal_; }

 private:
  Route route_;
  ConnectionLimiter limiter_;
  std::vector<ListenerStats> stats_;  // one per worker
  std::vector<std::unique_ptr<Worker>> workers_;
  tcp::endpoint local_endpoint_;
  bool batching_ = false;
  std::string batching_refusal_;
};

}  // namespace drainproxy::proxy
