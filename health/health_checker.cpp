#include "health/health_checker.hpp"
#include "proxy/task_error.hpp"

#include <spdlog/spdlog.h>

#include <charconv>
#include <string_view>

namespace drainproxy::health {

HealthChecker::HealthChecker(asio::io_context& ioc, tcp::endpoint upstream, std::string host_header,
                             config::HealthCheck cfg, Callback on_change)
    : ioc_(ioc),
      upstream_(upstream),
      host_header_(std::move(host_header)),
      cfg_(std::move(cfg)),
      on_change_(std::move(on_change)),
      interval_timer_(ioc),
      timeout_timer_(ioc),
      socket_(ioc) {}

void HealthChecker::start() {
  if (cfg_.kind == config::HealthCheckKind::None) {
    record({Outcome::Ok, "health checks disabled"});
    return;
  }
  asio::co_spawn(ioc_, loop(this), [](std::exception_ptr e) { log_task_exception("health", "health check loop", e); });
}

void HealthChecker::stop() {
  stopped_ = true;
  interval_timer_.cancel();
  timeout_timer_.cancel();
  error_code ignored;
  socket_.close(ignored);
}

void HealthChecker::probe_soon() {
  if (!stopped_) interval_timer_.cancel();
}

awaitable<void> HealthChecker::loop(HealthChecker* self) {
  while (!self->stopped_) {
    Result r = co_await self->probe();
    if (self->stopped_) break;
    self->record(r);
    self->interval_timer_.expires_after(self->cfg_.interval);
    error_code ec;
    co_await self->interval_timer_.async_wait(asio::redirect_error(use_awaitable, ec));
  }
}

awaitable<HealthChecker::Result> HealthChecker::probe() {
  error_code ec;
  socket_.close(ec);
  timed_out_ = false;
  timeout_timer_.expires_after(cfg_.timeout);
  timeout_timer_.async_wait([this](const error_code& e) {
    if (e) return;
    timed_out_ = true;
    error_code ignored;
    socket_.close(ignored);
  });

  co_await socket_.async_connect(upstream_, asio::redirect_error(use_awaitable, ec));
  Result r{Outcome::Ok, "tcp connect ok"};
  if (ec == asio::error::connection_refused) {
    r = {Outcome::Refused, "connection refused"};
  } else if (ec || timed_out_) {
    r = {Outcome::Failed, timed_out_ ? "connect timed out" : "connect failed: " + ec.message()};
  } else if (cfg_.kind == config::HealthCheckKind::Http) {
    r = co_await probe_http();
  }
  timeout_timer_.cancel();
  socket_.close(ec);
  co_return r;
}

awaitable<HealthChecker::Result> HealthChecker::probe_http() {
  const std::string request = "GET " + cfg_.http_path + " HTTP/1.1\r\nHost: " + host_header_ +
                              "\r\nUser-Agent: drainproxy-health\r\nConnection: close\r\n\r\n";
  error_code ec;
  co_await asio::async_write(socket_, asio::buffer(request), asio::redirect_error(use_awaitable, ec));
  if (ec) co_return Result{Outcome::Failed, timed_out_ ? "http request timed out" : "write failed: " + ec.message()};

  // Only the status line matters; read until it is complete.
  std::array<char, 512> buf;
  std::size_t have = 0;
  std::string_view line;
  while (have < buf.size()) {
    const std::size_t n = co_await socket_.async_read_some(asio::buffer(buf.data() + have, buf.size() - have),
                                                           asio::redirect_error(use_awaitable, ec));
    if (ec) {
      co_return Result{Outcome::Failed,
                       timed_out_ ? "http response timed out" : "no status line: " + ec.message()};
    }
    have += n;
    const std::string_view got(buf.data(), have);
    if (const auto eol = got.find("\r\n"); eol != std::string_view::npos) {
      line = got.substr(0, eol);
      break;
    }
  }
  // "HTTP/1.1 200 OK"
  unsigned status = 0;
  if (line.size() >= 12 && line.substr(0, 5) == "HTTP/") {
    std::from_chars(line.data() + 9, line.data() + 12, status);
  }
  if (status == 0) co_return Result{Outcome::Failed, "malformed http status line"};
  if (status >= 200 && status < 400) co_return Result{Outcome::Ok, "http " + std::to_string(status)};
  co_return Result{Outcome::Failed, "http status " + std::to_string(status)};
}

void HealthChecker::record(const Result& r) {
  bool next = healthy_;
  if (r.outcome == Outcome::Ok) {
    failures_ = 0;
    if (++successes_ >= cfg_.healthy_threshold) next = true;
  } else {
    successes_ = 0;
    ++failures_;
    if (r.outcome == Outcome::Refused || failures_ >= cfg_.unhealthy_threshold) next = false;
  }
  if (next != healthy_ || !decided_) {
    // Before the first success there is nothing to report but "still starting".
    if (!decided_ && !next && r.outcome != Outcome::Refused && failures_ < cfg_.unhealthy_threshold) return;
    decided_ = true;
    healthy_ = next;
    on_change_(healthy_, r.detail);
  }
}

}  // namespace drainproxy::health
