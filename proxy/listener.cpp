#include "proxy/listener.hpp"

#include <spdlog/spdlog.h>

#include "proxy/socket_options.hpp"
#include "proxy/tcp_session.hpp"

namespace drainproxy::proxy {

Listener::Listener(tcp::acceptor acceptor, const Route& route, ConnectionLimiter& limiter, ListenerStats& stats,
                   RefusedCallback on_upstream_refused)
    : acceptor_(std::move(acceptor)),
      route_(route),
      limiter_(limiter),
      stats_(stats),
      on_upstream_refused_(std::move(on_upstream_refused)) {}

void Listener::start() {
  asio::co_spawn(acceptor_->get_executor(), accept_loop(this), [](std::exception_ptr e) {
    if (e) {
      try {
        std::rethrow_exception(e);
      } catch (const std::exception& ex) {
        spdlog::get("proxy")->error("accept loop failed: {}", ex.what());
      }
    }
  });
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
    abort_socket(s);
    return;
  }
  TcpSession::start(std::make_shared<TcpSession>(std::move(s), *this));
}

void Listener::session_closed(CloseReason why) {
  stats_.closed_for(why).add();
  limiter_.release();
}

void Listener::stop_accepting() {
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

void Listener::force_close_all() {
  // force_close() only closes sockets; the sessions unlink later from their own
  // completion handlers, so iterating here is safe.
  for (auto& s : sessions_) s.force_close();
}

}  // namespace drainproxy::proxy
