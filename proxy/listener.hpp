#pragma once
#include <functional>
#include <optional>

#include "drain/drain_decision.hpp"
#include "proxy/asio.hpp"
#include "proxy/buffer_pool.hpp"
#include "proxy/connection_limiter.hpp"
#include "proxy/exchange.hpp"
#include "proxy/pipe_pool.hpp"
#include "proxy/poller.hpp"
#include "proxy/route.hpp"
#include "proxy/session.hpp"
#include "proxy/stats.hpp"
#include "proxy/upstream_pool.hpp"

namespace drainproxy::proxy {

// One route's acceptor on one worker, the sessions it accepted and the per-worker
// resources they share (buffers, app connections). Everything here runs on the
// worker's thread.
class Listener {
 public:
  // How often housekeeping() runs while draining (and 10x less often otherwise);
  // HTTP timeouts are checked at this granularity.
  static constexpr std::chrono::milliseconds kDrainTick{20};

  using RefusedCallback = std::function<void()>;

  // Takes over the listening descriptor of `acceptor` (opened and bound by the caller).
  Listener(Poller& poller, tcp::acceptor acceptor, const Route& route, ConnectionLimiter& limiter,
           ListenerStats& stats, const drain::DrainDecision& drain, RefusedCallback on_upstream_refused);
  Listener(const Listener&) = delete;
  Listener& operator=(const Listener&) = delete;

  void start();
  // Enters `draining`: accepts what the kernel has already queued (those clients
  // already count as connected), closes the acceptor so new connections are
  // refused, and starts retiring idle keep-alive connections.
  void stop_accepting();
  void force_close_all();
  // Periodic work: idle timeouts, the paced close of idle connections while
  // draining, expiry of pooled app connections.
  void housekeeping(std::chrono::steady_clock::time_point now);
  // Hands buffers and exchanges kept beyond recent use back to the heap; returns bytes.
  std::size_t trim_pools() { return exchanges_.trim() + buffers_.trim(); }
  void close_acceptor() { listen_.close(); }
  // Closes every socket the listener itself holds, before the poller goes away.
  void release_sockets() {
    listen_.close();
    upstreams_.clear();
    backoff_.reset();
  }

  const Route& route() const { return route_; }
  Poller& poller() { return poller_; }
  ListenerStats& stats() { return stats_; }
  const drain::DrainDecision& drain() const { return drain_; }
  ExchangePool& exchanges() { return exchanges_; }
  BufferPool& buffers() { return buffers_; }
  PipePool& pipes() { return pipes_; }
  UpstreamPool& upstreams() { return upstreams_; }
  void attach(Session& s) { sessions_.push_back(s); }
  void mark_idle(IdleConnection& c) {
    c.idle_hook.unlink();
    idle_.push_back(c);
  }
  void mark_busy(IdleConnection& c) {
    c.idle_hook.unlink();
    busy_.push_back(c);
  }
  void session_closed(CloseReason why);
  void upstream_refused() const {
    if (on_upstream_refused_) on_upstream_refused_();
  }

 private:
  // Waits for the listening socket to become readable without holding a coroutine.
  struct AcceptWait final : IoOp {
    Listener* listener = nullptr;
    bool perform(Socket& s) override { return s.maybe_readable(); }
    void complete() override { listener->accept_pending(); }
  };
  void accept_pending();
  void on_accepted(int fd, const sockaddr_storage& peer);

  Poller& poller_;
  Socket listen_;
  AcceptWait accept_wait_;
  std::unique_ptr<Timer> backoff_;
  const Route& route_;
  ConnectionLimiter& limiter_;
  ListenerStats& stats_;
  const drain::DrainDecision& drain_;
  RefusedCallback on_upstream_refused_;
  SessionList sessions_;
  IdleList idle_;
  IdleList busy_;
  ExchangePool exchanges_;
  BufferPool buffers_;
  PipePool pipes_;
  UpstreamPool upstreams_;
  bool closing_idle_ = false;
  std::size_t idle_closes_per_tick_ = 1;
};

}  // namespace drainproxy::proxy
