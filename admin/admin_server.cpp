#include "admin/admin_server.hpp"
#include "proxy/task_error.hpp"

#include <array>
#include <string_view>

#include <spdlog/spdlog.h>

#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

namespace drainproxy::admin {

namespace beast = boost::beast;
namespace http = beast::http;

namespace {

constexpr std::size_t kMaxConnections = 128;
constexpr auto kReadTimeout = std::chrono::seconds(10);
// After refusing a request, how long and how much of the rest of it is read and dropped.
constexpr auto kLingerTimeout = std::chrono::seconds(1);
constexpr std::size_t kLingerBytes = 64 * 1024;

void log_exception(std::exception_ptr e) { log_task_exception("admin", "admin server task", e); }

// The status for a request the parser refused, or 0 when there is no one to answer:
// the peer closed, went silent, or the socket failed.
unsigned status_for_read_error(const error_code& ec) {
  if (ec.category() != make_error_code(http::error::bad_target).category()) return 0;
  if (ec == http::error::end_of_stream || ec == http::error::partial_message) return 0;
  if (ec == http::error::header_limit) return 431;
  if (ec == http::error::body_limit) return 413;
  return 400;
}

// Every answer leaves the same way: our Server header, never cached, written within
// the read timeout.
awaitable<void> write_response(beast::tcp_stream& stream, Response out, unsigned version, bool keep_alive,
                               error_code& ec) {
  http::response<http::string_body> res{static_cast<http::status>(out.status), version};
  res.set(http::field::server, "drainproxy");
  res.set(http::field::content_type, out.content_type);
  res.set(http::field::cache_control, "no-store");
  res.keep_alive(keep_alive);
  res.body() = std::move(out.body);
  res.prepare_payload();
  stream.expires_after(kReadTimeout);
  co_await http::async_write(stream, res, asio::redirect_error(use_awaitable, ec));
}

// Shuts our side and reads until the client closes, for at most kLingerTimeout and
// kLingerBytes.
awaitable<void> linger(beast::tcp_stream& stream) {
  error_code ec;
  stream.socket().shutdown(tcp::socket::shutdown_send, ec);
  stream.expires_after(kLingerTimeout);
  std::array<char, 4096> sink;
  for (std::size_t drained = 0; !ec && drained < kLingerBytes;) {
    drained += co_await stream.async_read_some(asio::buffer(sink), asio::redirect_error(use_awaitable, ec));
  }
}

}  // namespace

AdminServer::AdminServer(asio::io_context& ioc, const tcp::endpoint& ep, Handler& handler)
    : acceptor_(ioc), handler_(handler) {
  acceptor_.open(ep.protocol());
  acceptor_.set_option(asio::socket_base::reuse_address(true));
  acceptor_.bind(ep);
  acceptor_.listen();
}

void AdminServer::start() { asio::co_spawn(acceptor_.get_executor(), accept_loop(this), log_exception); }

void AdminServer::stop() {
  error_code ignored;
  acceptor_.close(ignored);
}

awaitable<void> AdminServer::accept_loop(AdminServer* self) {
  asio::steady_timer backoff(self->acceptor_.get_executor());
  while (self->acceptor_.is_open()) {
    error_code ec;
    tcp::socket s = co_await self->acceptor_.async_accept(asio::redirect_error(use_awaitable, ec));
    if (ec == asio::error::operation_aborted) co_return;
    if (ec) {
      spdlog::get("admin")->warn("admin accept failed: {}", ec.message());
      backoff.expires_after(std::chrono::milliseconds(50));
      co_await backoff.async_wait(asio::redirect_error(use_awaitable, ec));
      continue;
    }
    if (self->connections_ >= kMaxConnections) {
      // Probes and scrapes are few; a flood must not starve the event loop or memory.
      s.close(ec);
      continue;
    }
    ++self->connections_;
    asio::co_spawn(self->acceptor_.get_executor(), session(self, std::move(s)), log_exception);
  }
}

awaitable<void> AdminServer::session(AdminServer* self, tcp::socket socket) {
  beast::tcp_stream stream(std::move(socket));
  beast::flat_buffer buffer(8192);
  error_code ec;
  const auto peer = stream.socket().remote_endpoint(ec).address();
  for (;;) {
    http::request_parser<http::string_body> parser;
    parser.header_limit(8192);
    parser.body_limit(4096);
    stream.expires_after(kReadTimeout);
    co_await http::async_read(stream, buffer, parser, asio::redirect_error(use_awaitable, ec));
    if (ec) {
      // A malformed probe or scrape gets an answer naming the problem, not a silent close.
      if (const unsigned status = status_for_read_error(ec); status != 0) {
        spdlog::get("admin")->debug("admin request from {} refused ({}): {}", peer.to_string(), status, ec.message());
        // Named, not a temporary in the co_await: g++ 12 destroys such temporaries twice.
        Response refusal{.status = status, .body = ec.message() + "\n"};
        co_await write_response(stream, std::move(refusal), 11, false, ec);
        // The client may still be sending what was refused (an oversized head or
        // body). Closing with those bytes unread would reset the connection, and the
        // reset can destroy the answer before the client reads it.
        if (!ec) co_await linger(stream);
      }
      break;
    }
    stream.expires_never();
    auto& req = parser.get();

    ++self->inflight_;
    Request r;
    r.method = std::string(req.method_string());
    const std::string_view target(req.target().data(), req.target().size());
    const auto q = target.find('?');
    r.path = std::string(target.substr(0, q));
    if (q != std::string_view::npos) r.query = std::string(target.substr(q + 1));
    r.authorization = std::string(req[http::field::authorization]);
    r.peer = peer;
    Response out = co_await self->handler_.handle(std::move(r));

    const bool keep_alive = req.keep_alive();
    co_await write_response(stream, std::move(out), req.version(), keep_alive, ec);
    --self->inflight_;
    if (ec || !keep_alive) break;
  }
  stream.socket().shutdown(tcp::socket::shutdown_send, ec);
  --self->connections_;
}

}  // namespace drainproxy::admin
