#include "proxy/listener.hpp"
#include "proxy/task_error.hpp"

#include <spdlog/spdlog.h>

#include "proxy/http_session.hpp"
#include "proxy/socket_options.hpp"
#include "proxy/tcp_session.hpp"

namespace drainproxy::proxy {

Listener::Listener(tcp::acceptor acceptor, const Route& route, ConnectionLimiter& limiter, ListenerStats& stats,
                   const drain::DrainDecision& drain, RefusedCallback on_upstream_refused)
    : acceptor_(std::move(acceptor)),
      route_(route),
      limiter_(limiter),
      stats_(stats),
      drain_(drain),
      on_upstream_refused_(std::move(on_upstream_refused)),
      upstreams_(route.upstream_keepalive, route.upstream_idle_timeout) {}

void Listener::start() {
  asio::co_spawn(acceptor_->get_executor(), accept_loop(this),
                 [](std::exception_ptr e) { log_task_exception("proxy", "accept loop", e); });
}

awaitable<void> Listener::accept_loop(Listener* self) {
  auto log = spdlog::get("proxy");
  asio::steady_timer backoff(co_await asio::this_coro::executor);
  for (;;) {
    if (!self->acceptor_ || !self->acceptor_->is_open()) co_return;
    error_code ec;
    tcp::socket s = co_await self->acceptor_->async_accept(asio::redirect_error(use_awaitable, ec));
    if (ec == asio::error::operation_aborted || !self->acceptor_ || !self->acceptor_->is_open()) co_return;
    if (ec) {
      // Out of descriptors or buffers: retrying at once would spin the loop.
      log->warn("listener={} accept failed: {}", self->route_.name, ec.message());
      backoff.expires_after(std::chrono::milliseconds(50));
      co_await backoff.async_wait(asio::redirect_error(use_awaitable, ec));
      continue;
    }
    self->on_accepted(std::move(s));
  }
}

void Listener::on_accepted(tcp::socket s) {
  stats_.accepted.add();
  if (!limiter_.try_acquire()) {
    stats_.closed_for(CloseReason::Overload).add();
    if (route_.mode == RouteMode::Http) {
      stats_.rejected_with(Reject::Overload);
      HttpSession::refuse_overload(s);
    } else {
      abort_socket(s);
    }
    return;
  }
  if (route_.mode == RouteMode::Http) HttpSession::start(std::make_shared<HttpSession>(std::move(s), *this));
  else TcpSession::start(std::make_shared<TcpSession>(std::move(s), *this));
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
  if (!acceptor_ || !acceptor_->is_open()) return;
  error_code ec;
  acceptor_->non_blocking(true, ec);
  // Bounded: a flood arriving right now must not keep the listener open forever.
  for (int i = 0; i < 4096 && !ec; ++i) {
    tcp::socket s(acceptor_->get_executor());
    acceptor_->accept(s, ec);
    if (!ec) on_accepted(std::move(s));
  }
  acceptor_->close(ec);
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
