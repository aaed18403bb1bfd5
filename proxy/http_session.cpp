#include "proxy/http_session.hpp"
#include "proxy/task_error.hpp"

#include <spdlog/spdlog.h>

#include <sys/socket.h>
#include <unistd.h>

#include <array>

#include "http/head_writer.hpp"
#include "http/parser.hpp"
#include "proxy/listener.hpp"
#include "proxy/pump.hpp"
#include "proxy/socket_options.hpp"

namespace drainproxy::proxy {

namespace {

using Clock = LoopClock;
constexpr auto kLingerTime = std::chrono::seconds(1);
// Response bodies at least this long (and of known length) are relayed by splice(2).
constexpr std::uint64_t kSpliceMinBytes = 64 * 1024;

// Once per body, before the first wait for more of it: the sender may be waiting
// for our ACK (see Socket::ack_promptly). A body that came with its head costs nothing.
void ack_once(Socket& s, bool& acked) {
  if (acked) return;
  s.ack_promptly();
  acked = true;
}

std::string_view status_text(unsigned status) {
  switch (status) {
    case 400: return "Bad Request";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 417: return "Expectation Failed";
    case 431: return "Request Header Fields Too Large";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "Error";
  }
}

void error_response(unsigned status, std::string_view reason, std::string& out) {
  out.clear();
  out += "HTTP/1.1 ";
  out += std::to_string(status);
  out += ' ';
  out += status_text(status);
  out += "\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ";
  out += std::to_string(reason.size() + 1);
  out += "\r\nConnection: close\r\nServer: drainproxy\r\n\r\n";
  out += reason;
  out += '\n';
}

// RFC 9110 §9.2.2: requests that may be sent again if the first attempt's fate is unknown.
bool is_idempotent(std::string_view method) {
  return method == "GET" || method == "HEAD" || method == "OPTIONS" || method == "TRACE" || method == "PUT" ||
         method == "DELETE";
}

}  // namespace

HttpSession::HttpSession(Socket client, std::string client_ip, Listener& listener)
    : client_(std::move(client)), listener_(listener), client_ip_(std::move(client_ip)) {
  client_.set_no_delay();
  idle_wait_.session = this;
}

void HttpSession::start(std::shared_ptr<HttpSession> self) {
  self->listener_.attach(*self);
  // No buffer until the first byte arrives: a connected but silent client costs only its socket.
  wait_readable(std::move(self));
}

void HttpSession::refuse_overload(int client_fd) {
  static const std::string kResponse = [] {
    std::string r;
    error_response(503, "over --max-connections, try again later", r);
    return r;
  }();
  // Best effort and never blocking: the answer fits any fresh socket's send buffer.
  [[maybe_unused]] const ssize_t sent = ::send(client_fd, kResponse.data(), kResponse.size(), MSG_NOSIGNAL);
  ::shutdown(client_fd, SHUT_WR);
  ::close(client_fd);
}

void HttpSession::wait_readable(std::shared_ptr<HttpSession> self) {
  HttpSession& s = *self;
  s.idle_since = Clock::now();
  s.listener_.mark_idle(s);
  s.idle_wait_.ec.clear();
  s.idle_self_ = std::move(self);
  if (s.client_.start_read(s.idle_wait_)) {
    // Bytes are already there; resumed from the queue to keep the stack flat.
    s.listener_.poller().defer(&s.idle_wait_);
  }
}

// A just-accepted connection is not in the epoll set yet, so whether its request is
// there is unknown: read straight into an exchange. Nothing there yet: the exchange
// goes back to the pool and the wait adds the socket to the epoll set, so a connected
// but silent client still holds no buffer.
bool HttpSession::first_read() {
  if (!x_) x_ = listener_.exchanges().acquire();
  const auto space = x_->in.prepare();
  error_code ec;
  const std::size_t n = client_.recv(space.data(), space.size(), ec);
  if (n > 0) {
    x_->in.commit(n);
    last_activity_ = Clock::now();
    listener_.stats().bytes_rx.add(n);
    return true;
  }
  listener_.exchanges().release(std::move(x_));
  // End of stream or an error: the request path reads it again and closes as usual.
  return ec != asio::error::would_block;
}

void HttpSession::on_idle_ready() {
  auto self = std::move(idle_self_);
  idle_hook.unlink();
  if (idle_wait_.ec || closed_) {
    if (!closed_) end(CloseReason::Error);
    finish();
    return;
  }
  spawn_serve(std::move(self));
}

void HttpSession::spawn_serve(std::shared_ptr<HttpSession> self) {
  self->listener_.mark_busy(*self);
  auto task = serve(self);
  spawn(std::move(task), [self = std::move(self)](std::exception_ptr e) {
    if (!e) return;
    log_task_exception("proxy", "http session", e);
    self->end(CloseReason::Error);
    self->finish();
  });
}

Task<void> HttpSession::serve(std::shared_ptr<HttpSession> self) {
  if (!self->x_) self->x_ = self->listener_.exchanges().acquire();
  for (;;) {
    const Outcome how = co_await self->exchange();
    if (how == Outcome::KeepAlive) {
      if (!self->x_->in.empty()) continue;  // a pipelined request is already here
      break;
    }
    if (!self->closed_ && (how == Outcome::Close || (how == Outcome::CloseNow && self->client_sent_more())))
      co_await self->linger_close();
    self->end(self->reason_.value_or(CloseReason::Client));
    self->finish();
    co_return;
  }
  self->clear_deadline();
  self->listener_.exchanges().release(std::move(self->x_));
  wait_readable(std::move(self));
}

// One request and its response. Returns whether the client connection stays open.
Task<HttpSession::Outcome> HttpSession::exchange() {
  Exchange& x = *x_;
  const Route& route = listener_.route();
  ListenerStats& stats = listener_.stats();
  request_open_ = false;
  response_started_ = false;
  close_now_ = false;
  fail_status_ = 0;

  if (!co_await read_head()) {
    if (fail_status_ != 0) co_return co_await reject(fail_status_, fail_reason_);
    co_return Outcome::Abort;
  }
  request_open_ = true;
  request_started_ = Clock::now();
  stats.requests_started.add();

  const http::RequestHead& req = x.req;
  if (req.is_connect()) co_return co_await reject(405, "CONNECT is not supported by this proxy");
  if (route.max_body_bytes != 0 && req.framing == http::Framing::ContentLength &&
      req.content_length > route.max_body_bytes)
    co_return co_await reject(413, "request body is larger than --max-body-bytes");

  // What is needed after the head's bytes leave the buffer (the views die with them).
  const bool client_keep_alive = req.keep_alive;
  const unsigned client_minor = req.version_minor;
  const bool websocket = req.upgrade_websocket;
  x.req_kind = req.kind();
  req_framing_ = req.framing;
  const bool has_body = req_framing_ != http::Framing::None;
  const bool replayable = !has_body && is_idempotent(req.method);
  // The proxy answers 100-continue itself and streams the body on: the app may not
  // implement the expectation, and waiting on it would stall the client.
  const bool send_continue = req.expect_continue && has_body;

  x.head.clear();
  http::ForwardInfo fi;
  fi.client_ip = client_ip_;
  fi.keep_alive_upstream = true;
  fi.strip_expect = send_continue;
  http::write_request_head(req, fi, x.head);
  if (client_minor == 0) {
    // An HTTP/1.0 client can't decode chunked, so the app is asked as HTTP/1.0 and
    // answers with a length or close-delimited body ("HTTP/1.1\r\n" -> "HTTP/1.0\r\n").
    const auto eol = x.head.find("\r\n");
    if (eol != std::string::npos && eol >= 1) x.head[eol - 1] = '0';
  }
  x.in.consume(req.head_size);
  body_left_ = req_framing_ == http::Framing::ContentLength ? req.content_length : 0;

  if (send_continue) {
    static constexpr std::string_view k100 = "HTTP/1.1 100 Continue\r\n\r\n";
    if (!co_await write_client(asio::buffer(k100))) co_return Outcome::Abort;
  }

  // Upstream; a pooled connection that fails before answering is replaced once.
  for (int attempt = 0;; ++attempt) {
    bool reused = false;
    if (!co_await acquire_upstream(reused)) co_return co_await reject(fail_status_, fail_reason_);
    // Sending may take as long as the client takes to upload: only stalls count.
    set_deadline(Deadline::Activity, route.idle_timeout);
    const bool head_sent = co_await write_upstream(asio::buffer(x.head));
    if (head_sent && !co_await relay_request_body()) {
      if (fail_status_ != 0) co_return co_await reject(fail_status_, fail_reason_);
      co_return Outcome::Abort;
    }
    // --upstream-timeout runs from the end of the request to the start of the response.
    if (head_sent) set_deadline(Deadline::Response, route.upstream_timeout);
    if (head_sent && co_await read_response_head()) break;
    if (fail_status_ == 0 && !closed_) fail_status_ = 502, fail_reason_ = "the app closed the connection without responding";
    const bool stale = reused && !response_bytes_ && (!head_sent || replayable) && expired_ == Deadline::None;
    release_upstream(false);
    if (closed_) co_return Outcome::Abort;
    if (attempt == 0 && stale) {
      spdlog::get("proxy")->debug("listener={} retrying on a fresh app connection", route.name);
      x.out.clear();
      continue;
    }
    co_return co_await reject(fail_status_, fail_reason_);
  }

  http::ResponseHead& resp = x.resp;
  if (resp.status == 101) {
    if (!websocket) co_return co_await reject(502, "the app switched protocols without an upgrade request");
    x.head.clear();
    http::write_response_head(resp, http::ResponseForwardInfo{false, client_minor}, x.head);
    x.out.consume(resp.head_size);
    finish_request(101);
    if (!co_await write_client(asio::buffer(x.head))) co_return Outcome::Abort;
    co_await tunnel();
    co_return Outcome::Abort;
  }

  // The client connection closes after this response if the client or the app asked
  // for it, if the body is delimited by close, or if the pod is draining.
  const bool close_client = !client_keep_alive || !resp.keep_alive || resp.framing == http::Framing::UntilClose ||
                            listener_.drain().draining() || body_left_ != 0;
  const unsigned status = resp.status;
  x.head.clear();
  http::write_response_head(resp, http::ResponseForwardInfo{close_client, client_minor}, x.head);
  const http::Framing resp_framing = resp.framing;
  const std::uint64_t resp_length = resp.content_length;
  const bool upstream_keep_alive = resp.keep_alive;
  x.out.consume(resp.head_size);

  // RFC 9112 §9.6: a client that sent "close" sends no further request; with nothing
  // unread, the connection can close at once, its FIN riding on the response.
  close_now_ = close_client && !client_keep_alive && body_left_ == 0 && x.in.empty();
  bool upstream_clean = false;
  if (!co_await relay_response_body(resp_framing, resp_length, upstream_clean)) {
    if (fail_status_ != 0) co_return co_await reject(fail_status_, fail_reason_);
    finish_request(0);
    co_return Outcome::Abort;
  }
  finish_request(status);
  release_upstream(upstream_clean && upstream_keep_alive && body_left_ == 0 && x.out.empty());
  if (!close_client) co_return Outcome::KeepAlive;
  co_return close_now_ ? Outcome::CloseNow : Outcome::Close;
}

Task<bool> HttpSession::read_head() {
  Exchange& x = *x_;
  const Route& route = listener_.route();
  set_deadline(Deadline::Header, route.header_timeout);
  http::Error err;
  for (;;) {
    x.req.clear();
    const auto st = http::parse_request_head(x.in.view(), route.limits, x.req, err);
    if (st == http::ParseStatus::Complete) co_return true;
    if (st == http::ParseStatus::Error) {
      fail_status_ = err.status;
      fail_reason_ = err.reason;
      co_return false;
    }
    if (x.in.full()) {
      // A head larger than the pooled buffer: room up to the configured limit.
      if (x.in.capacity() >= route.limits.max_head_bytes) {
        fail_status_ = 431;
        fail_reason_ = "request header section too large";
        co_return false;
      }
      x.in.grow(route.limits.max_head_bytes);
    }
    error_code ec;
    if (!co_await read_some(client_, x.in, ec)) {
      if (expired_ == Deadline::Header) {
        fail_status_ = 408;
        fail_reason_ = "request header not complete within --header-timeout";
      } else if (!x.in.empty() && ec == asio::error::eof) {
        fail_status_ = 400;
        fail_reason_ = "connection closed in the middle of a request header";
      }
      if (!reason_) reason_ = is_peer_gone(ec) || ec == asio::error::operation_aborted ? CloseReason::Client
                                                                                    : CloseReason::Error;
      co_return false;
    }
  }
}

Task<bool> HttpSession::acquire_upstream(bool& reused) {
  const Route& route = listener_.route();
  if (auto pooled = listener_.upstreams().take(Clock::now())) {
    upstream_ = std::move(*pooled);
    reused = true;
    co_return true;
  }
  set_deadline(Deadline::Connect, route.connect_timeout);
  const error_code ec = co_await Socket::connect(listener_.poller(), route.upstream, upstream_);
  if (!ec && expired_ == Deadline::None) co_return true;
  listener_.stats().upstream_connect_errors.add();
  if (ec == asio::error::connection_refused) listener_.upstream_refused();
  if (expired_ == Deadline::Connect) {
    fail_status_ = 504;
    fail_reason_ = "connecting to the app timed out";
  } else {
    fail_status_ = 502;
    fail_reason_ = ec == asio::error::connection_refused ? "the app refused the connection"
                                                         : "cannot connect to the app";
  }
  upstream_.close();
  co_return false;
}

Task<bool> HttpSession::relay_request_body() {
  Exchange& x = *x_;
  const Route& route = listener_.route();
  bool acked = false;
  switch (req_framing_) {
    case http::Framing::None:
      co_return true;
    case http::Framing::ContentLength:
      while (body_left_ > 0) {
        if (x.in.empty()) {
          ack_once(client_, acked);
          error_code ec;
          if (!co_await read_some(client_, x.in, ec)) {
            if (!reason_) reason_ = CloseReason::Client;
            co_return false;
          }
        }
        const std::size_t take = static_cast<std::size_t>(std::min<std::uint64_t>(body_left_, x.in.size()));
        if (!co_await write_upstream(asio::buffer(x.in.data(), take))) {
          fail_status_ = 502;
          fail_reason_ = "the app connection failed while sending the request body";
          co_return false;
        }
        x.in.consume(take);
        body_left_ -= take;
      }
      co_return true;
    default: {  // chunked: forwarded unchanged, validated on the way
      x.framer.reset();
      for (;;) {
        if (x.in.empty()) {
          ack_once(client_, acked);
          error_code ec;
          if (!co_await read_some(client_, x.in, ec)) {
            if (!reason_) reason_ = CloseReason::Client;
            body_left_ = 1;  // the body did not end: the app connection can't be reused
            co_return false;
          }
        }
        const auto r = x.framer.feed(x.in.view());
        // Checked before forwarding: the app must never see a complete over-limit body.
        if (route.max_body_bytes != 0 && x.framer.payload_bytes() > route.max_body_bytes) {
          body_left_ = 1;
          fail_status_ = 413;
          fail_reason_ = "request body is larger than --max-body-bytes";
          co_return false;
        }
        if (r.consumed > 0 && !co_await write_upstream(asio::buffer(x.in.data(), r.consumed))) {
          fail_status_ = 502;
          fail_reason_ = "the app connection failed while sending the request body";
          co_return false;
        }
        x.in.consume(r.consumed);
        if (r.error) {
          body_left_ = 1;
          fail_status_ = 400;
          fail_reason_ = r.reason;
          co_return false;
        }
        if (r.done) co_return true;
      }
    }
  }
}

Task<bool> HttpSession::read_response_head() {
  Exchange& x = *x_;
  const Route& route = listener_.route();
  response_bytes_ = false;
  http::Error err;
  for (;;) {
    x.resp.clear();
    const auto st = http::parse_response_head(x.out.view(), x.req_kind, route.limits, x.resp, err);
    if (st == http::ParseStatus::Error) {
      fail_status_ = 502;
      fail_reason_ = err.reason;
      co_return false;
    }
    if (st == http::ParseStatus::Complete) {
      if (x.resp.status >= 200 || x.resp.status == 101) co_return true;
      // An interim response (103 Early Hints, a 100 the app sent anyway): pass it on.
      x.head.clear();
      http::write_response_head(x.resp, http::ResponseForwardInfo{false, 1}, x.head);
      x.out.consume(x.resp.head_size);
      if (!co_await write_client(asio::buffer(x.head))) co_return false;
      continue;
    }
    if (x.out.full()) {
      fail_status_ = 502;
      fail_reason_ = "response header from the app is too large";
      co_return false;
    }
    error_code ec;
    if (!co_await read_some(upstream_, x.out, ec)) {
      if (expired_ == Deadline::Response) {
        fail_status_ = 504;
        fail_reason_ = "the app did not respond within --upstream-timeout";
      } else {
        fail_status_ = 502;
        fail_reason_ = x.out.empty() ? "the app closed the connection without responding"
                                     : "the app closed the connection in the middle of the response header";
      }
      co_return false;
    }
    response_bytes_ = true;
  }
}

Task<bool> HttpSession::relay_response_body(http::Framing framing, std::uint64_t length, bool& upstream_clean) {
  Exchange& x = *x_;
  set_deadline(Deadline::Activity, listener_.route().idle_timeout);
  // The head goes out with the first piece of body already buffered: one write for small responses.
  asio::const_buffer head = asio::buffer(x.head);
  if (framing == http::Framing::None) {
    upstream_clean = true;
    co_return co_await write_client(head, {}, true);
  }
  if (framing == http::Framing::Chunked) x.framer.reset();
  std::uint64_t left = length;
  std::size_t since_yield = 0;
  bool acked = false;
  for (;;) {
    std::size_t take = x.out.size();
    bool done = false;
    if (framing == http::Framing::ContentLength) {
      take = static_cast<std::size_t>(std::min<std::uint64_t>(left, take));
      left -= take;
      done = left == 0;
    } else if (framing == http::Framing::Chunked) {
      const auto r = x.framer.feed(x.out.view());
      if (r.error) {
        spdlog::get("proxy")->debug("listener={} malformed chunked body from the app: {}", listener_.route().name,
                                    r.reason);
        if (head.size() > 0) {
          // Nothing reached the client yet, so it can still get a clear answer instead
          // of a connection that closes without a byte.
          fail_status_ = 502;
          fail_reason_ = "the app sent a malformed chunked body";
        }
        if (!reason_) reason_ = CloseReason::Upstream;
        co_return false;
      }
      take = r.consumed;
      done = r.done;
    }
    if (take > 0 || head.size() > 0) {
      if (!co_await write_client(head, asio::buffer(x.out.data(), take), done)) co_return false;
      head = asio::const_buffer();
      x.out.consume(take);
    }
    if (done) {
      upstream_clean = true;
      co_return true;
    }
    ack_once(upstream_, acked);
    if (framing == http::Framing::ContentLength && left >= kSpliceMinBytes && x.out.empty()) {
      // A large body of known length: kernel to kernel, never more than `left` bytes.
      if (!co_await splice_response_body(left)) co_return false;
      upstream_clean = true;
      co_return true;
    }
    since_yield += take;
    if (since_yield >= kFairShare && upstream_.maybe_readable()) {
      since_yield = 0;
      co_await listener_.poller().yield();
    }
    error_code ec;
    if (!co_await read_some(upstream_, x.out, ec)) {
      if (framing == http::Framing::UntilClose && ec == asio::error::eof) co_return true;
      if (!reason_) reason_ = expired_ != Deadline::None ? CloseReason::IdleTimeout : CloseReason::Upstream;
      co_return false;
    }
  }
}

Task<bool> HttpSession::splice_response_body(std::uint64_t left) {
  PipePool& pipes = listener_.pipes();
  PipePool::Pipe pipe = pipes.acquire();
  std::size_t pending = 0;  // in the pipe, not yet sent to the client
  std::size_t since_yield = 0;
  error_code ec;
  bool ok = false;
  while (pipe) {
    if (pending == 0) {
      if (left == 0) {
        ok = true;
        break;
      }
      if (!upstream_.maybe_readable()) {
        since_yield = 0;
        ec = co_await upstream_.wait_readable();
        if (ec) break;
      } else if (since_yield >= kFairShare) {
        // One fast download must not keep the worker's other connections waiting.
        since_yield = 0;
        co_await listener_.poller().yield();
      }
      pending = upstream_.splice_in(pipe.write, static_cast<std::size_t>(std::min<std::uint64_t>(left, kSpliceChunk)), ec);
      if (ec == asio::error::would_block) continue;
      if (ec) break;
      left -= pending;
      last_activity_ = Clock::now();
      continue;
    }
    const std::size_t n = client_.splice_out(pipe.read, pending, ec);
    if (ec == asio::error::would_block || (!ec && n == 0)) {
      ec = co_await client_.wait_writable();
      if (ec) {
        if (!reason_) reason_ = expired_ != Deadline::None ? CloseReason::IdleTimeout : CloseReason::Client;
        break;
      }
      continue;
    }
    if (ec) {
      if (!reason_) reason_ = expired_ != Deadline::None ? CloseReason::IdleTimeout : CloseReason::Client;
      break;
    }
    pending -= n;
    since_yield += n;
    listener_.stats().bytes_tx.add(n);
    last_activity_ = Clock::now();
  }
  if (!pipe) {
    // No pipe to be had (out of descriptors): copy through the exchange buffer.
    Exchange& x = *x_;
    while (left > 0) {
      if (!co_await read_some(upstream_, x.out, ec)) break;
      const std::size_t take = static_cast<std::size_t>(std::min<std::uint64_t>(left, x.out.size()));
      if (!co_await write_client(asio::buffer(x.out.data(), take))) co_return false;
      x.out.consume(take);
      left -= take;
    }
    ok = left == 0;
  }
  pipes.release(pipe, pending == 0);
  if (!ok && !reason_) reason_ = expired_ != Deadline::None ? CloseReason::IdleTimeout : CloseReason::Upstream;
  co_return ok;
}

Task<HttpSession::Outcome> HttpSession::reject(unsigned status, std::string_view reason) {
  if (closed_) co_return Outcome::Abort;
  ListenerStats& stats = listener_.stats();
  if (!request_open_) {
    request_open_ = true;
    request_started_ = Clock::now();
    stats.requests_started.add();
  }
  stats.rejected_with(reject_for_status(status));
  release_upstream(false);
  if (response_started_) {
    // Part of a response already went out; nothing sane can follow it.
    finish_request(0);
    co_return Outcome::Abort;
  }
  spdlog::get("proxy")->debug("listener={} answering {}: {}", listener_.route().name, status, reason);
  error_response(status, reason, x_->head);
  set_deadline(Deadline::Linger, kLingerTime);
  const bool sent = co_await write_client(asio::buffer(x_->head));
  finish_request(sent ? status : 0);
  if (!reason_) reason_ = status >= 500 ? CloseReason::Upstream : CloseReason::Error;
  co_return sent ? Outcome::Close : Outcome::Abort;
}

bool HttpSession::client_sent_more() {
  // The response just sent was the last and the client knew it, so it should send
  // nothing more. If it did anyway, closing now would answer with RST, and the kernel
  // would drop the response still held back for the FIN (MSG_MORE) along with it.
  std::array<char, 512> sink;
  error_code ec;
  const std::size_t n = client_.recv(sink.data(), sink.size(), ec);
  return !ec && n > 0;
}

Task<void> HttpSession::linger_close() {
  // Closing with unread request bytes would send RST, which can destroy the response
  // still in flight to the client. Shut down our side and read until the client closes.
  client_.shutdown_send();
  set_deadline(Deadline::Linger, kLingerTime);
  std::array<char, 512> sink;
  for (;;) {
    const IoResult r = co_await client_.read_some(sink.data(), sink.size());
    if (r.ec) break;
  }
  if (!reason_) reason_ = CloseReason::Client;
}

Task<void> HttpSession::tunnel() {
  Exchange& x = *x_;
  set_deadline(Deadline::Activity, listener_.route().idle_timeout);
  // Bytes that arrived with the heads belong to the new protocol.
  if (!x.in.empty()) {
    if (!co_await write_upstream(asio::buffer(x.in.data(), x.in.size()))) co_return;
    x.in.clear();
  }
  if (!x.out.empty()) {
    if (!co_await write_client(asio::buffer(x.out.data(), x.out.size()))) co_return;
    x.out.clear();
  }
  // Upstream -> client runs as its own coroutine; this one pumps client -> upstream
  // and then waits for it, so the session ends when both directions have.
  tunnel_pumps_ = 2;
  auto self = shared_from_this();
  spawn(tunnel_pump(self, false), [self](std::exception_ptr e) {
    if (e) {
      log_task_exception("proxy", "http session", e);
      self->end(CloseReason::Error);
    }
    if (--self->tunnel_pumps_ == 0 && self->tunnel_waiter_) resume(std::exchange(self->tunnel_waiter_, {}));
  });
  co_await tunnel_pump(self, true);
  --tunnel_pumps_;
  co_await TunnelJoin{*this};
}

Task<void> HttpSession::tunnel_pump(std::shared_ptr<HttpSession> self, bool from_client) {
  ListenerStats& stats = self->listener_.stats();
  error_code ec;
  const PumpEnd how = co_await pump_bytes(from_client ? self->client_ : self->upstream_,
                                          from_client ? self->upstream_ : self->client_, self->listener_.buffers(), nullptr,
                                          from_client ? &stats.bytes_rx : nullptr,
                                          from_client ? nullptr : &stats.bytes_tx, self->last_activity_, ec);
  const CloseReason source = from_client ? CloseReason::Client : CloseReason::Upstream;
  if (how == PumpEnd::SourceEof) {
    if (!self->reason_) self->reason_ = source;
    if (self->tunnel_pumps_ > 1) (from_client ? self->upstream_ : self->client_).shutdown_send();
    co_return;
  }
  if (!self->closed_) {
    const CloseReason sink = from_client ? CloseReason::Upstream : CloseReason::Client;
    self->reason_ = self->expired_ == Deadline::Activity ? CloseReason::IdleTimeout
                    : is_peer_gone(ec)                 ? (how == PumpEnd::SourceError ? source : sink)
                                                       : CloseReason::Error;
    self->end(*self->reason_);
  }
}

Task<bool> HttpSession::read_some(Socket& s, ByteBuffer& b, error_code& ec) {
  const auto space = b.prepare();
  if (space.size() == 0) {
    ec = asio::error::no_buffer_space;
    co_return false;
  }
  const IoResult r = co_await s.read_some(space.data(), space.size());
  ec = r.ec;
  if (ec) co_return false;
  const std::size_t n = r.bytes;
  b.commit(n);
  last_activity_ = Clock::now();
  if (&s == &client_) listener_.stats().bytes_rx.add(n);
  co_return true;
}

Task<bool> HttpSession::write_client(asio::const_buffer a, asio::const_buffer b, bool last) {
  const IoResult r = co_await client_.write_all(a.data(), a.size(), b.data(), b.size(), last && close_now_);
  listener_.stats().bytes_tx.add(r.bytes);
  response_started_ = true;
  if (r.ec) {
    if (!reason_) reason_ = expired_ != Deadline::None ? CloseReason::IdleTimeout : CloseReason::Client;
    co_return false;
  }
  last_activity_ = Clock::now();
  co_return true;
}

Task<bool> HttpSession::write_upstream(asio::const_buffer a, asio::const_buffer b) {
  const IoResult r = co_await upstream_.write_all(a.data(), a.size(), b.data(), b.size());
  if (r.ec) co_return false;
  last_activity_ = Clock::now();
  co_return true;
}

void HttpSession::set_deadline(Deadline what, Clock::duration in) {
  deadline_ = what;
  expired_ = Deadline::None;
  last_activity_ = Clock::now();
  deadline_at_ = last_activity_ + in;
}

void HttpSession::check_deadline(Clock::time_point now) {
  if (closed_ || deadline_ == Deadline::None) return;
  const Clock::time_point due =
      deadline_ == Deadline::Activity ? last_activity_ + listener_.route().idle_timeout : deadline_at_;
  if (now < due) return;
  // Cancelling the pending reads and writes lets the coroutine see which deadline hit.
  expired_ = deadline_;
  deadline_ = Deadline::None;
  client_.cancel();
  upstream_.cancel();
}

void HttpSession::finish_request(unsigned status) {
  if (!request_open_) return;
  request_open_ = false;
  listener_.stats().request_done(status, Clock::now() - request_started_);
}

void HttpSession::release_upstream(bool reusable) {
  if (!upstream_.is_open()) return;
  if (reusable && !closed_ && !listener_.drain().draining()) {
    listener_.upstreams().put(std::move(upstream_), Clock::now());
    return;
  }
  upstream_.close();
}

void HttpSession::force_close() {
  // The deadline overrides a reason noted earlier (say, a client's half-close).
  if (!closed_) reason_ = CloseReason::DrainForced;
  end(CloseReason::DrainForced);
}

void HttpSession::close_idle(CloseReason why) {
  reason_ = why;
  end(why);
}

void HttpSession::end(CloseReason why) {
  if (!reason_) reason_ = why;
  if (closed_) return;
  closed_ = true;
  deadline_ = Deadline::None;
  client_.close();
  upstream_.close();
}

void HttpSession::finish() {
  if (finished_) return;
  finished_ = true;
  finish_request(0);
  if (x_) listener_.exchanges().release(std::move(x_));
  idle_hook.unlink();
  unlink();
  listener_.session_closed(reason_.value_or(CloseReason::Error));
}

}  // namespace drainproxy::proxy
