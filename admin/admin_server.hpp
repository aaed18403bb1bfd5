#pragma once
#include <cstddef>
#include <string>

#include "proxy/asio.hpp"

namespace drainproxy::admin {

struct Request {
  std::string method;
  std::string path;   // without the query
  std::string query;  // without the '?'
  std::string authorization;
  asio::ip::address peer;
};

struct Response {
  unsigned status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
};

// What the admin endpoints do; the server only speaks HTTP.
class Handler {
 public:
  virtual ~Handler() = default;
  // May suspend for a long time (a blocking /drain).
  virtual awaitable<Response> handle(Request req) = 0;
};

// A small HTTP/1.1 server for /ready, /live, /metrics, /drain, /status on the control
// io_context. Its connections are never counted as proxied traffic, and it keeps
// answering until the process exits.
class AdminServer {
 public:
  AdminServer(asio::io_context& ioc, const tcp::endpoint& ep, Handler& handler);
  void start();
  void stop();
  tcp::endpoint local_endpoint() const { return acceptor_.local_endpoint(); }
  // Requests being handled or answered right now.
  std::size_t inflight() const { return inflight_; }

 private:
  static awaitable<void> accept_loop(AdminServer* self);
  static awaitable<void> session(AdminServer* self, tcp::socket socket);

  tcp::acceptor acceptor_;
  Handler& handler_;
  std::size_t connections_ = 0;
  std::size_t inflight_ = 0;
};

}  // namespace drainproxy::admin
