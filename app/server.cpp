#include "app/server.hpp"
#include "proxy/task_error.hpp"

#include <spdlog/spdlog.h>

#include <pthread.h>

#include <csignal>
#include <optional>
#include <string_view>
#include <cstdio>
#include <cstdlib>

#include "admin/drain_access.hpp"
#include "app/json.hpp"

namespace drainproxy::app {

using drain::Phase;
using drain::Trigger;

namespace {

constexpr auto kIdleTick = std::chrono::milliseconds(250);
constexpr auto kDrainTick = std::chrono::milliseconds(10);
constexpr auto kLivenessLimit = std::chrono::seconds(5);
constexpr auto kAnswerWaitersFor = std::chrono::seconds(2);

double unix_now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// The value of `key` in a query string such as "a=1&wait=false".
std::optional<std::string> query_value(std::string_view query, std::string_view key) {
  while (!query.empty()) {
    const auto amp = query.find('&');
    const std::string_view pair = query.substr(0, amp);
    const auto eq = pair.find('=');
    if (pair.substr(0, eq) == key) return std::string(eq == std::string_view::npos ? "" : pair.substr(eq + 1));
    if (amp == std::string_view::npos) break;
    query.remove_prefix(amp + 1);
  }
  return std::nullopt;
}

admin::Response text(unsigned status, std::string body) { return {status, "text/plain; charset=utf-8", std::move(body)}; }
admin::Response json(unsigned status, std::string body) { return {status, "application/json", std::move(body)}; }

tcp::endpoint admin_endpoint(const config::Endpoint& ep) {
  error_code ec;
  const auto addr = asio::ip::make_address(ep.host, ec);
  if (ec)
    throw config::ConfigError("invalid value '" + ep.to_string() + "' for --admin: the host must be an IP address");
  return {addr, ep.port};
}

}  // namespace

Server::Server(config::Config cfg)
    : cfg_(std::move(cfg)),
      log_(spdlog::get("main")),
      drain_(drain::DrainTimings{cfg_.propagation_delay, cfg_.drain_timeout}, clock_),
      metrics_(cfg_.listen.to_string(), cfg_.mode == config::Mode::Http),
      signals_(ioc_, SIGTERM, SIGINT),
      tick_(ioc_),
      phase_event_(ioc_, asio::steady_timer::time_point::max()) {
  const auto admin_ep = admin_endpoint(cfg_.admin);
  // A refused proxied connection is the fastest sign that the app went away:
  // ask the health checker (on the control thread) to look now.
  proxy_ = std::make_unique<proxy::Proxy>(cfg_, drain_, [this] {
    asio::post(ioc_, [this] {
      if (health_) health_->probe_soon();
    });
  });
  admin_ = std::make_unique<admin::AdminServer>(ioc_, admin_ep, *this);
  health_ = std::make_unique<health::HealthChecker>(
      ioc_, proxy_->route().upstream, cfg_.upstream.to_string(), cfg_.health,
      [this](bool healthy, const std::string& detail) { on_health(healthy, detail); });
}

Server::~Server() = default;

int Server::run() {
  log_->info("drainproxy listening on {} (mode {}, {} workers, io {}), upstream {}",
             proxy_->local_endpoint().address().to_string() + ":" + std::to_string(proxy_->local_endpoint().port()),
             config::to_string(cfg_.mode), cfg_.workers, io_name(), cfg_.upstream.to_string());
  if (!proxy_->batching_refusal().empty())
    log_->info("--io-uring auto: using plain syscalls, io_uring is unavailable: {}", proxy_->batching_refusal());
  log_->info("admin listening on {}:{}", admin_->local_endpoint().address().to_string(), admin_->local_endpoint().port());
  log_->info("timings: propagation-delay={} drain-timeout={} termination-grace-period={} (margin {})",
             config::format_duration(cfg_.propagation_delay), config::format_duration(cfg_.drain_timeout),
             config::format_duration(cfg_.termination_grace_period), config::format_duration(cfg_.grace_margin()));
  proxy_->start();
  admin_->start();
  health_->start();
  wait_for_signal();
  asio::co_spawn(ioc_, control_loop(this), [this](std::exception_ptr e) {
    if (!e) return;
    log_task_exception("main", "control loop", e);
    ioc_.stop();
  });
  ioc_.run();
  // Once the signal_set is destroyed, asio restores the default action, and kubelet's
  // SIGTERM (sent as soon as a preStop hook returns) would kill an orderly exit with
  // status 143. Block the signals: a drained proxy has nothing left to do with them.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  proxy_->shutdown();
  return drain_.phase() == Phase::Stopped ? 0 : 1;
}

void Server::wait_for_signal() {
  signals_.async_wait([this](const error_code& ec, int sig) {
    if (ec) return;
    on_signal(sig);
    wait_for_signal();
  });
}

void Server::on_signal(int sig) {
  if (sig == SIGINT && ++sigints_ >= 2) {
    // A human pressing Ctrl-C twice wants out now.
    log_->warn("second SIGINT: exiting at once with {} connections open", proxy_->active_connections());
    spdlog::shutdown();
    std::_Exit(130);
  }
  trigger_drain(sig == SIGINT ? Trigger::Sigint : Trigger::Sigterm);
}

void Server::trigger_drain(Trigger why) {
  const drain::Step step = drain_.start_drain(why);
  if (!step.changed) {
    log_->info("drain trigger {} ignored: already {}", drain::to_string(why), drain::to_string(drain_.phase()));
    return;
  }
  drain_started_unix_ = unix_now();
  at_trigger_ = proxy_->snapshot();
  apply(step);
  tick_.cancel();  // re-evaluate at the drain's pace at once
}

void Server::on_health(bool healthy, const std::string& detail) {
  upstream_healthy_ = healthy;
  if (healthy) log_->info("upstream {} healthy ({})", cfg_.upstream.to_string(), detail);
  else log_->warn("upstream {} unhealthy ({})", cfg_.upstream.to_string(), detail);
  apply(drain_.set_upstream_healthy(healthy));
}

void Server::apply(const drain::Step& step) {
  const auto active = proxy_->active_connections();
  if (step.force_close) {
    log_->warn("drain-timeout {} reached: force-closing {} connections", config::format_duration(cfg_.drain_timeout),
               active);
    proxy_->force_close();
  }
  if (!step.changed) return;
  // Wakes the /drain callers waiting for a phase; the timer never expires by itself.
  phase_event_.cancel();
  auto phase_log = spdlog::get("drain");
  phase_log->info("phase {} -> {} trigger={} active_connections={} elapsed={:.3f}s", drain::to_string(step.from),
                  drain::to_string(step.to), drain::to_string(drain_.trigger()), active, drain_.drain_seconds());
  switch (step.to) {
    case Phase::Draining:
      proxy_->stop_accepting();
      break;
    case Phase::Stopped:
      finish();
      break;
    default:
      break;
  }
}

Server::DrainTally Server::tally(const proxy::StatsSnapshot& now) const {
  DrainTally t;
  t.forced = now.closed_for(proxy::CloseReason::DrainForced) - at_trigger_.closed_for(proxy::CloseReason::DrainForced);
  t.overload = now.closed_for(proxy::CloseReason::Overload) - at_trigger_.closed_for(proxy::CloseReason::Overload);
  t.drained = now.closed_total() - at_trigger_.closed_total() - t.forced - t.overload;
  t.accepted = now.accepted - at_trigger_.accepted;
  return t;
}

void Server::finish() {
  at_stop_ = proxy_->snapshot();
  const DrainTally t = tally(at_stop_);
  spdlog::get("drain")->info(
      "drain complete: trigger={} duration={:.3f}s connections_drained={} connections_forced={} "
      "accepted_during_drain={} refused_overload={}",
      drain::to_string(drain_.trigger()), drain_.drain_seconds(), t.drained, t.forced, t.accepted, t.overload);
  health_->stop();
  admin_->stop();  // no new admin connections; the open ones are answered below
}

awaitable<void> Server::control_loop(Server* self) {
  auto last_ping = std::chrono::steady_clock::now() - std::chrono::hours(1);
  for (;;) {
    const auto now = std::chrono::steady_clock::now();
    if (now - last_ping >= std::chrono::seconds(1)) {
      self->proxy_->ping_workers();
      last_ping = now;
    }
    self->apply(self->drain_.advance(self->proxy_->active_connections()));
    if (self->drain_.phase() == Phase::Stopped) break;
    self->tick_.expires_after(self->drain_.draining() ? kDrainTick : kIdleTick);
    error_code ec;
    co_await self->tick_.async_wait(asio::redirect_error(use_awaitable, ec));
  }
  // Let blocked /drain callers and a last scrape get their answers before exiting.
  const auto deadline = std::chrono::steady_clock::now() + kAnswerWaitersFor;
  while (self->admin_->inflight() > 0 && std::chrono::steady_clock::now() < deadline) {
    self->tick_.expires_after(kDrainTick);
    error_code ec;
    co_await self->tick_.async_wait(asio::redirect_error(use_awaitable, ec));
  }
  self->ioc_.stop();
}

bool Server::ready() const { return drain_.phase() == Phase::Serving && upstream_healthy_; }

metrics::Sample Server::sample() const {
  metrics::Sample s;
  s.phase = drain_.phase();
  s.ready = ready();
  s.upstream_healthy = upstream_healthy_;
  s.drain_started_unix = drain_started_unix_;
  s.drain_seconds = drain_.drain_seconds();
  s.stats = proxy_->snapshot();
  return s;
}

const char* Server::io_name() const { return proxy_->batching() ? "io_uring" : "syscalls"; }

std::string Server::status_json() const {
  const auto stats = proxy_->snapshot();
  const double in_phase = std::chrono::duration<double>(clock_.now() - drain_.phase_since()).count();
  JsonObject timings;
  timings.add("propagation_delay_seconds", config::to_seconds(cfg_.propagation_delay))
      .add("drain_timeout_seconds", config::to_seconds(cfg_.drain_timeout))
      .add("termination_grace_period_seconds", config::to_seconds(cfg_.termination_grace_period))
      .add("connect_timeout_seconds", config::to_seconds(cfg_.connect_timeout))
      .add("idle_timeout_seconds", config::to_seconds(cfg_.idle_timeout))
      .add("health_interval_seconds", config::to_seconds(cfg_.health.interval))
      .add("health_timeout_seconds", config::to_seconds(cfg_.health.timeout));
  const auto ep = proxy_->local_endpoint();
  JsonObject o;
  o.add("phase", drain::to_string(drain_.phase()))
      .add("seconds_in_phase", in_phase)
      .add("ready", ready())
      .add("upstream_healthy", upstream_healthy_)
      .add("connections_active", stats.active())
      .add("connections_total", stats.accepted)
      .add("listen", ep.address().to_string() + ":" + std::to_string(ep.port()))
      .add("upstream", cfg_.upstream.to_string())
      .add("mode", config::to_string(cfg_.mode))
      .add("workers", static_cast<std::uint64_t>(cfg_.workers))
      .add("io", io_name())
      .add("drain_trigger", drain::to_string(drain_.trigger()))
      .add("drain_seconds", drain_.drain_seconds())
      .add_raw("timings", timings.str());
  return o.str() + "\n";
}

std::string Server::drain_summary_json() const {
  const bool done = drain_.phase() == Phase::Stopped;
  const auto now = done ? at_stop_ : proxy_->snapshot();
  const DrainTally t = tally(now);
  JsonObject o;
  o.add("phase", drain::to_string(drain_.phase()))
      .add("trigger", drain::to_string(drain_.trigger()))
      .add("drain_seconds", drain_.drain_seconds())
      .add("connections_open_at_trigger", at_trigger_.active())
      .add("connections_accepted_during_drain", t.accepted)
      .add("connections_drained", t.drained)
      .add("connections_forced", t.forced)
      .add("connections_active", now.active());
  return o.str() + "\n";
}

awaitable<admin::Response> Server::handle(admin::Request req) {
  const bool read_only = req.method == "GET" || req.method == "HEAD";
  if (req.path == "/drain") {
    if (req.method != "GET" && req.method != "POST") co_return text(405, "use GET or POST\n");
    co_return co_await handle_drain(std::move(req));
  }
  if (!read_only && (req.path == "/ready" || req.path == "/live" || req.path == "/metrics" || req.path == "/status"))
    co_return text(405, "use GET\n");
  if (req.path == "/ready") {
    if (ready()) co_return text(200, "ready\n");
    const Phase p = drain_.phase();
    if (p != Phase::Starting && p != Phase::Serving) co_return text(503, std::string(drain::to_string(p)) + "\n");
    if (!upstream_healthy_) co_return text(503, "upstream " + cfg_.upstream.to_string() + " not healthy\n");
    co_return text(503, std::string(drain::to_string(p)) + "\n");
  }
  if (req.path == "/live") {
    const auto lag = std::chrono::steady_clock::now() - proxy_->oldest_pong();
    if (lag > kLivenessLimit)
      co_return text(503, "a worker event loop has not responded for " +
                              std::to_string(std::chrono::duration_cast<std::chrono::seconds>(lag).count()) + "s\n");
    co_return text(200, "live\n");
  }
  if (req.path == "/metrics") co_return admin::Response{200, "text/plain; version=0.0.4; charset=utf-8", metrics_.render(sample())};
  if (req.path == "/status") co_return json(200, status_json());
  co_return text(404, "not found; try /ready /live /metrics /status /drain\n");
}

awaitable<admin::Response> Server::handle_drain(admin::Request req) {
  const auto access = admin::check_drain_access(req.peer, req.authorization, cfg_.drain_token);
  if (!access.allowed) {
    log_->warn("refused /drain from {}: {}", req.peer.to_string(), access.reason);
    co_return text(403, access.reason + "\n");
  }
  // wait=true (default): answer when the drain is over. wait=false: at once.
  // wait=draining: once the listeners are closed, so an app's preStop can hold its
  // SIGTERM until no new connection can reach it through the proxy.
  const std::string wait = query_value(req.query, "wait").value_or("true");
  if (wait != "true" && wait != "false" && wait != "draining")
    co_return text(400, "wait must be true, false or draining\n");
  trigger_drain(Trigger::Admin);
  if (wait == "false") co_return json(202, drain_summary_json());
  const Phase until = wait == "draining" ? Phase::Draining : Phase::Stopped;
  while (drain_.phase() < until) {
    error_code ec;
    co_await phase_event_.async_wait(asio::redirect_error(use_awaitable, ec));
  }
  co_return json(200, drain_summary_json());
}

}  // namespace drainproxy::app
