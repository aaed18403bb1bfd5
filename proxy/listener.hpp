#pragma once
#include <functional>
#include <optional>

#include "proxy/asio.hpp"
#include "proxy/connection_limiter.hpp"
#include "proxy/route.hpp"
#include "proxy/session.hpp"
#include "proxy/stats.hpp"

namespace drainproxy::proxy {

// One route's acceptor on one worker, and the sessions it accepted. Everything
// here runs on the worker's thread.
class Listener {
 public:
  using RefusedCallback = std::function<void()>;

  Listener(tcp::acceptor acceptor, const Route& route, ConnectionLimiter& limiter, ListenerStats& stats,
           RefusedCallback on_upstream_refused);
  Listener(const Listener&) = delete;
  Listener& operator=(const Listener&) = delete;

  void start();
  // Accepts what the kernel has already queued (those clients already count as
  // connected), then closes the acceptor so new connections are refused.
  void stop_accepting();
  void force_close_all();
  void close_acceptor() {
    error_code ignored;
    if (acceptor_) acceptor_->close(ignored);
  }
  // Releases the acceptor before the io_context goes away.
  void release_acceptor() { acceptor_.reset(); }

  const Route& route() const { return route_; }
  ListenerStats& stats() { return stats_; }
  void attach(Session& s) { sessions_.push_back(s); }
  void session_closed(CloseReason why);
  void upstream_refused() const {
    if (on_upstream_refused_) on_upstream_refused_();
  }

 private:
  static awaitable<void> accept_loop(Listener* self);
  void on_accepted(tcp::socket s);

  std::optional<tcp::acceptor> acceptor_;
  const Route& route_;
  ConnectionLimiter& limiter_;
  ListenerStats& stats_;
  RefusedCallback on_upstream_refused_;
  SessionList sessions_;
};

}  // namespace drainproxy::proxy
