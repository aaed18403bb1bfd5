#include "proxy/tcp_session.hpp"
#include "proxy/task_error.hpp"

#include <spdlog/spdlog.h>

#include "proxy/listener.hpp"
#include "proxy/pump.hpp"

namespace drainproxy::proxy {

TcpSession::TcpSession(Socket client, Listener& listener)
    : client_(std::move(client)),
      timer_(listener.poller()),
      listener_(listener),
      last_activity_(LoopClock::now()) {}

void TcpSession::spawn_task(std::shared_ptr<TcpSession> self, Task<void> task) {
  ++self->tasks_;
  spawn(std::move(task), [self = std::move(self)](std::exception_ptr e) {
    if (e) {
      log_task_exception("proxy", "tcp session task", e);
      self->end(CloseReason::Error, true);
    }
    self->task_done();
  });
}

void TcpSession::start(std::shared_ptr<TcpSession> self) {
  self->listener_.attach(*self);
  auto task = connect(self);
  spawn_task(std::move(self), std::move(task));
}

Task<void> TcpSession::connect(std::shared_ptr<TcpSession> self) {
  const auto& route = self->listener_.route();
  self->timer_.expires_after(route.connect_timeout);
  std::weak_ptr<TcpSession> weak = self;
  self->timer_.async_wait([weak](const error_code& ec) {
    if (ec) return;
    if (auto s = weak.lock(); s && !s->closed_ && s->open_pumps_ == 0) {
      s->connect_timed_out_ = true;
      s->upstream_.close();
    }
  });

  const error_code ec = co_await Socket::connect(self->listener_.poller(), route.upstream, self->upstream_);
  self->timer_.cancel();
  if (self->closed_) co_return;  // force-closed while connecting
  if (ec || self->connect_timed_out_) {
    self->listener_.stats().upstream_connect_errors.add();
    if (ec == asio::error::connection_refused) self->listener_.upstream_refused();
    spdlog::get("proxy")->debug("listener={} upstream connect failed: {}", route.name,
                                self->connect_timed_out_ ? "timed out" : ec.message());
    self->end(CloseReason::Error, true);
    co_return;
  }
  self->client_.set_no_delay();
  self->touch();
  self->open_pumps_ = 2;
  spawn_task(self, pump(self, Side::Client));
  spawn_task(self, pump(self, Side::Upstream));
  ++self->tasks_;
  arm_watchdog(self);
}

Task<void> TcpSession::pump(std::shared_ptr<TcpSession> self, Side from_side) {
  const bool from_client = from_side == Side::Client;
  ListenerStats& stats = self->listener_.stats();
  const CloseReason from_reason = from_client ? CloseReason::Client : CloseReason::Upstream;
  const CloseReason to_reason = from_client ? CloseReason::Upstream : CloseReason::Client;
  error_code ec;
  const PumpEnd how = co_await pump_bytes(
      from_client ? self->client_ : self->upstream_, from_client ? self->upstream_ : self->client_,
      self->listener_.buffers(), &self->listener_.pipes(), from_client ? &stats.bytes_rx : nullptr,
      from_client ? nullptr : &stats.bytes_tx, self->last_activity_, ec);
  switch (how) {
    case PumpEnd::SourceEof:
      if (!self->reason_) self->reason_ = from_reason;
      // Half-close: the other direction may still have a reply to deliver. When it
      // has ended too, both sockets close right below and a shutdown would be wasted.
      if (self->open_pumps_ > 1) (from_client ? self->upstream_ : self->client_).shutdown_send();
      break;
    case PumpEnd::SourceError:
      if (!self->closed_) self->end(is_peer_gone(ec) ? from_reason : CloseReason::Error, true);
      break;
    case PumpEnd::SinkError:
      if (!self->closed_) self->end(is_peer_gone(ec) ? to_reason : CloseReason::Error, true);
      break;
  }
  if (--self->open_pumps_ == 0) self->end(self->reason_.value_or(from_reason), false);
}

void TcpSession::arm_watchdog(std::shared_ptr<TcpSession> self) {
  // A pump may have ended the session before the watchdog started (a client that
  // sent and reset at once): end() cancelled no wait then, so nothing would fire.
  if (self->closed_) {
    self->task_done();
    return;
  }
  const auto idle = self->listener_.route().idle_timeout;
  self->timer_.expires_at(self->last_activity_ + idle);
  TcpSession& s = *self;
  s.timer_.async_wait([self = std::move(self), idle](const error_code&) mutable {
    if (!self->closed_ && LoopClock::now() - self->last_activity_ >= idle) {
      spdlog::get("proxy")->debug("listener={} closing idle connection", self->listener_.route().name);
      self->end(CloseReason::IdleTimeout, false);
    }
    if (self->closed_) {
      self->task_done();
      return;
    }
    arm_watchdog(std::move(self));
  });
}

void TcpSession::force_close() { end(CloseReason::DrainForced, false); }

void TcpSession::end(CloseReason why, bool abortive) {
  if (!reason_ || why == CloseReason::DrainForced || why == CloseReason::IdleTimeout) {
    // A half-closed stream that is then cut by a timeout ends for the timeout's reason.
    if (!closed_) reason_ = why;
  }
  if (closed_) return;
  closed_ = true;
  timer_.cancel();
  if (abortive) {
    client_.abort();
    upstream_.abort();
  } else {
    client_.close();
    upstream_.close();
  }
}

void TcpSession::task_done() {
  if (--tasks_ > 0) return;
  if (!closed_) end(reason_.value_or(CloseReason::Error), false);
  unlink();
  listener_.session_closed(reason_.value_or(CloseReason::Error));
}

}  // namespace drainproxy::proxy
