#pragma once
#include <memory>
#include <spdlog/logger.h>

#include "admin/admin_server.hpp"
#include "config/config.hpp"
#include "drain/drain_manager.hpp"
#include "health/health_checker.hpp"
#include "metrics/metrics.hpp"
#include "proxy/proxy.hpp"

namespace drainproxy::app {

// The control plane: owns the data plane (Proxy), the drain state machine, health
// checks, signals and the admin endpoints, all on one control thread.
class Server final : public admin::Handler {
 public:
  // Binds every socket; throws config::ConfigError or std::system_error.
  explicit Server(config::Config cfg);
  ~Server() override;

  // Runs until the drain sequence has finished. Returns the process exit code.
  int run();

  awaitable<admin::Response> handle(admin::Request req) override;

 private:
  static awaitable<void> control_loop(Server* self);
  void wait_for_signal();
  void on_signal(int sig);
  void trigger_drain(drain::Trigger why);
  void apply(const drain::Step& step);
  void on_health(bool healthy, const std::string& detail);
  void finish();

  // What happened to connections between the trigger and `now`.
  struct DrainTally {
    std::uint64_t drained = 0;   // closed by themselves
    std::uint64_t forced = 0;    // closed at the deadline
    std::uint64_t overload = 0;  // refused over --max-connections
    std::uint64_t accepted = 0;
  };
  DrainTally tally(const proxy::StatsSnapshot& now) const;

  bool ready() const;
  metrics::Sample sample() const;
  std::string status_json() const;
  // How the workers move socket bytes: "io_uring" (batched) or "syscalls".
  const char* io_name() const;
  std::string drain_summary_json() const;
  awaitable<admin::Response> handle_drain(admin::Request req);

  config::Config cfg_;
  std::shared_ptr<spdlog::logger> log_;
  asio::io_context ioc_{1};
  drain::SteadyClock clock_;
  drain::DrainManager drain_;
  std::unique_ptr<proxy::Proxy> proxy_;
  std::unique_ptr<health::HealthChecker> health_;
  metrics::Metrics metrics_;
  std::unique_ptr<admin::AdminServer> admin_;
  asio::signal_set signals_;
  asio::steady_timer tick_;
  asio::steady_timer phase_event_;  // never expires; cancelled at every phase change
  bool upstream_healthy_ = false;
  int sigints_ = 0;
  double drain_started_unix_ = 0;
  proxy::StatsSnapshot at_trigger_;
  proxy::StatsSnapshot at_stop_;
};

}  // namespace drainproxy::app
