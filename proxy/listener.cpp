#include "proxy/listener.hpp"

#include <spdlog/spdlog.h>

#include "proxy/http_session.hpp"
#include "proxy/socket_options.hpp"
#include "proxy/tcp_session.hpp"

namespace drainproxy::proxy {

Listener::Listener(Poller& poller, tcp::acceptor acceptor, const Route& route, ConnectionLimiter& limiter,
                   ListenerStats& stats, const drain::DrainDecision& drain, RefusedCallback on_upstream_refused)
    : poller_(poller),
      route_(route),
      limiter_(limiter),
      stats_(stats),
      drain_(drain),
      on_upstream_refused_(std::move(on_upstream_refused)),
      upstreams_(route.upstream_keepalive, route.upstream_idle_timeout) {
  accept_wait_.listener = this;
  acceptor.non_blocking(true);
  const int fd = acceptor.release();
  error_code ec;
  listen_ = Socket(poller, fd, ec);
  if (ec) throw boost::system::system_error(ec, "registering the listening socket");
}

void Listener::start() { accept_pending(); }

void Listener::accept_pending() {
  for (;;) {
    if (!listen_.is_open()) return;
    sockaddr_storage peer{};
    error_code ec;
    const int fd = listen_.accept(peer, ec);
    if (fd >= 0) {
      on_accepted(fd, peer);
      continue;
    }
    if (ec == asio::error::would_block) {
      // Parked until the next connection's edge; start_read() is true if one raced in.
      if (listen_.start_read(accept_wait_)) continue;
      return;
    }
    if (ec == asio::error::connection_aborted || ec == asio::error::interrupted) continue;
    // Out of descriptors or buffers: retrying at once would spin the loop.
    spdlog::get("proxy")->warn("listener={} accept failed: {}", route_.name, ec.message());
    if (!backoff_) backoff_ = std::make_unique<Timer>(poller_);
    backoff_->expires_after(std::chrono::milliseconds(50));
    backoff_->async_wait([this](const error_code& e) {
      if (!e) accept_pending();
    });
    return;
  }
}

void Listener::on_accepted(int fd, const sockaddr_storage& peer) {
  stats_.accepted.add();
  if (!limiter_.try_acquire()) {
    stats_.closed_for(CloseReason::Overload).add();
    if (route_.mode == RouteMode::Http) {
      stats_.rejected_with(Reject::Overload);
      HttpSession::refuse_overload(fd);
    } else {
      abort_fd(fd);
    }
    return;
  }
  Socket s(poller_, fd, Socket::Lazy{});
  if (route_.mode == RouteMode::Http)
    HttpSession::start(std::make_shared<HttpSession>(std::move(s), peer_address(peer), *this));
  else
    TcpSession::start(std::make_shared<TcpSession>(std::move(s), *this));
}

void Listener::session_closed(CloseReason why) {
  stats_.closed_for(why).add();
  limiter_.release();
}

void Listener::stop_accepting() {
  if (!closing_idle_) {
    closing_idle_ = true;
    upstreams_.clear();
    // Spread the idle closes over the window instead of a burst that all those
    // clients' pools see at once.
    const std::size_t idle = static_cast<std::size_t>(std::distance(idle_.begin(), idle_.end()));
    const auto ticks = std::max<std::int64_t>(1, route_.drain_idle_window / kDrainTick);
    idle_closes_per_tick_ = std::max<std::size_t>(1, (idle + static_cast<std::size_t>(ticks) - 1) /
                                                         static_cast<std::size_t>(ticks));
  }
  // Bounded: a flood arriving right now must not keep the listener open forever.
  for (int i = 0; i < 4096 && listen_.is_open(); ++i) {
    sockaddr_storage peer{};
    error_code ec;
    const int fd = listen_.accept(peer, ec);
    if (fd < 0) break;
    on_accepted(fd, peer);
  }
  listen_.close();
}

void Listener::housekeeping(std::chrono::steady_clock::time_point now) {
  while (!idle_.empty() && now - idle_.front().idle_since >= route_.idle_timeout) {
    IdleConnection& c = idle_.front();
    c.idle_hook.unlink();
    c.close_idle(CloseReason::IdleTimeout);
  }
  if (closing_idle_) {
    // A connection that went idle moments ago may be carrying its client's next
    // request right now; it gets the grace, and that request a Connection: close.
    for (std::size_t n = 0; n < idle_closes_per_tick_ && !idle_.empty(); ++n) {
      IdleConnection& c = idle_.front();
      if (now - c.idle_since < route_.drain_idle_grace) break;
      c.idle_hook.unlink();
      c.close_idle(CloseReason::DrainIdle);
    }
  }
  // check_deadline() only cancels socket operations; the sessions move between
  // lists later, from their own coroutines, so this walk is safe.
  for (auto& c : busy_) c.check_deadline(now);
  upstreams_.expire(now);
}

void Listener::force_close_all() {
  // force_close() only closes sockets; the sessions unlink later from their own
  // completion handlers, so iterating here is safe.
  for (auto& s : sessions_) s.force_close();
}

}  // namespace drainproxy::proxy
