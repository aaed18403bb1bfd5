#pragma once
#include <functional>
#include <string>

#include "config/config.hpp"
#include "proxy/asio.hpp"

namespace drainproxy::health {

// Probes the app on a timer and decides healthy/unhealthy with thresholds.
// A refused connection means the app's port is gone, so it turns unhealthy at once
// instead of waiting for the failure threshold. Runs on the control io_context.
class HealthChecker {
 public:
  // Called on every change of state, and once for the first verdict.
  using Callback = std::function<void(bool healthy, const std::string& detail)>;

  HealthChecker(asio::io_context& ioc, tcp::endpoint upstream, std::string host_header, config::HealthCheck cfg,
                Callback on_change);

  void start();
  void stop();
  // A proxied connection to the app was refused: probe now rather than at the next tick.
  void probe_soon();
  bool healthy() const { return healthy_; }

 private:
  enum class Outcome { Ok, Refused, Failed };
  struct Result {
    Outcome outcome;
    std::string detail;
  };

  static awaitable<void> loop(HealthChecker* self);
  awaitable<Result> probe();
  awaitable<Result> probe_http();
  void record(const Result& r);

  asio::io_context& ioc_;
  tcp::endpoint upstream_;
  std::string host_header_;
  config::HealthCheck cfg_;
  Callback on_change_;
  asio::steady_timer interval_timer_;
  asio::steady_timer timeout_timer_;
  tcp::socket socket_;
  bool stopped_ = false;
  bool timed_out_ = false;
  bool decided_ = false;
  bool healthy_ = false;
  unsigned successes_ = 0;
  unsigned failures_ = 0;
};

}  // namespace drainproxy::health
