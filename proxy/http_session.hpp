#pragma once
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "proxy/asio.hpp"
#include "proxy/exchange.hpp"
#include "proxy/poller.hpp"
#include "proxy/session.hpp"
#include "proxy/stats.hpp"
#include "proxy/task.hpp"

namespace drainproxy::proxy {

class Listener;

// One HTTP/1.1 client connection: parses each request strictly, forwards it to the
// app over a pooled keep-alive connection, streams both bodies through fixed
// buffers, and decides per response whether the client connection stays open
// (never while draining). Between requests it holds no buffers and no coroutine
// frame: only the socket, waiting to become readable.
class HttpSession final : public Session, public IdleConnection, public std::enable_shared_from_this<HttpSession> {
 public:
  HttpSession(Socket client, std::string client_ip, Listener& listener);
  static void start(std::shared_ptr<HttpSession> self);
  // Answers 503 and closes the descriptor: the connection limit is reached.
  static void refuse_overload(int client_fd);

  void force_close() override;
  void close_idle(CloseReason why) override;
  void check_deadline(std::chrono::steady_clock::time_point now) override;

 private:
  enum class Deadline : std::uint8_t { None, Header, Connect, Response, Activity, Linger };
  // How an exchange ended. Close lingers (reads until the client closes, so unread
  // bytes can't turn our FIN into an RST that destroys the response in flight);
  // CloseNow is for a client that said it sends nothing more and had nothing unread.
  enum class Outcome : std::uint8_t { KeepAlive, Close, CloseNow, Abort };

  // The wait for the next request: a member, so an idle connection needs no coroutine.
  struct IdleWait final : IoOp {
    HttpSession* session = nullptr;
    bool perform(Socket& s) override { return s.watched() ? s.maybe_readable() : session->first_read(); }
    void complete() override { session->on_idle_ready(); }
  };
  // Parks a coroutine until the other tunnel direction has finished.
  struct TunnelJoin {
    HttpSession& s;
    bool await_ready() const noexcept { return s.tunnel_pumps_ == 0; }
    void await_suspend(std::coroutine_handle<> h) noexcept { s.tunnel_waiter_ = h; }
    void await_resume() const noexcept {}
  };

  static Task<void> serve(std::shared_ptr<HttpSession> self);
  static void wait_readable(std::shared_ptr<HttpSession> self);
  static void spawn_serve(std::shared_ptr<HttpSession> self);
  void on_idle_ready();
  bool first_read();

  Task<Outcome> exchange();
  Task<bool> read_head();
  Task<bool> acquire_upstream(bool& reused);
  Task<bool> relay_request_body();
  Task<bool> read_response_head();
  Task<bool> relay_response_body(http::Framing framing, std::uint64_t length, bool& upstream_clean);
  Task<bool> splice_response_body(std::uint64_t left);
  Task<Outcome> reject(unsigned status, std::string_view reason);
  bool client_sent_more();
  Task<void> linger_close();
  Task<void> tunnel();
  static Task<void> tunnel_pump(std::shared_ptr<HttpSession> self, bool from_client);

  Task<bool> read_some(Socket& s, ByteBuffer& b, error_code& ec);
  Task<bool> write_client(asio::const_buffer a, asio::const_buffer b = {}, bool last = false);
  Task<bool> write_upstream(asio::const_buffer a, asio::const_buffer b = {});

  void set_deadline(Deadline what, std::chrono::steady_clock::duration in);
  void clear_deadline() { deadline_ = Deadline::None; }
  void finish_request(unsigned status);
  void release_upstream(bool reusable);
  void end(CloseReason why);
  void finish();

  Socket client_;
  Socket upstream_;
  Listener& listener_;
  std::unique_ptr<Exchange> x_;  // only while a request is in progress
  std::shared_ptr<HttpSession> idle_self_;  // keeps the session alive while it waits idle
  IdleWait idle_wait_;
  std::coroutine_handle<> tunnel_waiter_;
  std::string client_ip_;
  std::string_view fail_reason_;  // static text
  std::uint64_t body_left_ = 0;   // request body bytes not yet forwarded
  std::chrono::steady_clock::time_point deadline_at_;
  std::chrono::steady_clock::time_point request_started_;
  std::chrono::steady_clock::time_point last_activity_;
  std::optional<CloseReason> reason_;
  http::Framing req_framing_ = http::Framing::None;
  Deadline deadline_ = Deadline::None;
  Deadline expired_ = Deadline::None;
  bool closed_ = false;
  bool request_open_ = false;      // a request was counted and awaits its result
  bool response_started_ = false;  // bytes of the response reached the client
  bool response_bytes_ = false;    // the app sent bytes of a response
  bool finished_ = false;
  bool close_now_ = false;  // the response in progress is the last: the client asked to close
  unsigned fail_status_ = 0;  // the status to answer when a step fails; 0: just close
  int tunnel_pumps_ = 0;
};

}  // namespace drainproxy::proxy
