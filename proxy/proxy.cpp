#include "proxy/proxy.hpp"

#include <spdlog/spdlog.h>

#include "proxy/socket_options.hpp"

namespace drainproxy::proxy {

namespace {

tcp::endpoint resolve(const config::Endpoint& ep, const char* flag) {
  asio::io_context ioc;
  tcp::resolver resolver(ioc);
  error_code ec;
  auto results = resolver.resolve(ep.host, std::to_string(ep.port), ec);
  if (ec || results.empty())
    throw config::ConfigError("invalid value '" + ep.to_string() + "' for " + flag + ": cannot resolve host '" +
                              ep.host + "': " + (ec ? ec.message() : "no address"));
  return results.begin()->endpoint();
}

}  // namespace

Proxy::Proxy(const config::Config& cfg, const drain::DrainDecision& drain, Listener::RefusedCallback on_upstream_refused)
    : limiter_(cfg.max_connections), stats_(cfg.workers) {
  route_.name = cfg.listen.to_string();
  route_.mode = cfg.mode == config::Mode::Http ? RouteMode::Http : RouteMode::Tcp;
  route_.upstream = resolve(cfg.upstream, "--upstream");
  route_.connect_timeout = cfg.connect_timeout;
  route_.idle_timeout = cfg.idle_timeout;
  route_.header_timeout = cfg.header_timeout;
  route_.upstream_timeout = cfg.upstream_timeout;
  route_.limits.max_head_bytes = cfg.max_header_bytes;
  route_.max_body_bytes = cfg.max_body_bytes;
  route_.upstream_keepalive = cfg.upstream_keepalive;
  route_.upstream_idle_timeout = cfg.upstream_idle_timeout;
  route_.drain_idle_grace = cfg.drain_idle_grace;

  if (cfg.io_uring != config::IoUring::Off) {
    batching_ = Poller::batching_available(batching_refusal_);
    if (!batching_ && cfg.io_uring == config::IoUring::On)
      throw config::ConfigError("--io-uring on: " + batching_refusal_ + "; use --io-uring auto or off");
  }

  tcp::endpoint listen_ep = resolve(cfg.listen, "--listen");
  check_port_free(listen_ep);
  // Only opens and binds: each listener takes the descriptor over into its worker's poller.
  asio::io_context setup;
  for (unsigned i = 0; i < cfg.workers; ++i) {
    auto w = std::make_unique<Worker>(i, drain, batching_);
    tcp::acceptor a = open_reuseport_acceptor(setup, listen_ep);
    // With port 0 the first bind picks the port; the other workers join it.
    if (i == 0) listen_ep = a.local_endpoint();
    w->add_listener(std::make_unique<Listener>(w->poller(), std::move(a), route_, limiter_, stats_[i], drain, on_upstream_refused));
    workers_.push_back(std::move(w));
  }
  local_endpoint_ = listen_ep;
}

Proxy::~Proxy() { shutdown(); }

void Proxy::start() {
  for (auto& w : workers_) w->start();
}

void Proxy::stop_accepting() {
  std::vector<std::future<void>> closed;
  for (auto& w : workers_) closed.push_back(w->post_stop_accepting());
  // Once the phase says draining, a new connection must be refused: wait until every
  // worker has closed its listening sockets (bounded, so a stuck worker cannot
  // stall the control thread; the watchdog reports such a worker).
  const auto deadline = std::chrono::steady_clock::now() + kStopAcceptingWait;
  for (auto& c : closed) {
    if (c.wait_until(deadline) != std::future_status::ready) {
      spdlog::get("proxy")->warn("a worker did not close its listeners within {} ms; new connections may still be accepted",
                                 std::chrono::duration_cast<std::chrono::milliseconds>(kStopAcceptingWait).count());
      return;
    }
  }
}

void Proxy::force_close() {
  for (auto& w : workers_) w->post_force_close();
}

void Proxy::shutdown() {
  for (auto& w : workers_) w->shutdown(std::chrono::milliseconds(2000));
}

void Proxy::ping_workers() {
  for (auto& w : workers_) w->post_ping();
}

std::chrono::steady_clock::time_point Proxy::oldest_pong() const {
  auto oldest = std::chrono::steady_clock::time_point::max();
  for (const auto& w : workers_) oldest = std::min(oldest, w->last_pong());
  return oldest;
}

StatsSnapshot Proxy::snapshot() const {
  StatsSnapshot s;
  for (const auto& st : stats_) s.add(st);
  return s;
}

}  // namespace drainproxy::proxy
