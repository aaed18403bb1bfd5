// drainproxy-demo-app: a small HTTP/1.1 server used as "the app behind the proxy" in the README
// demo and in the integration tests.
//
// Its SIGTERM handling copies Go's http.Server.Shutdown, the behaviour drainproxy exists to make
// safe: the listener closes at once, idle keep-alive connections are closed at once (a client that
// sends on one of them races the close), and busy connections finish their response with
// "Connection: close". The process exits when no connection is left, or at --shutdown-timeout.
//
// Threading: one io_context, run by --threads threads. Each connection lives on its own strand
// (the socket's executor), so its state needs no lock. Server-wide state (the connection set) is
// under a mutex; the signal set and the shutdown timer share a "control" strand.
#include "proxy/asio.hpp"

#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <algorithm>
#include <array>
#include <charconv>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <vector>

namespace drainproxy::demo {
namespace {

namespace beast = boost::beast;
namespace http = beast::http;
using namespace std::chrono_literals;
using Request = http::request<http::string_body>;

constexpr std::uint64_t kMaxBody = 64ull << 20;
constexpr std::uint64_t kMaxDelayMs = 24ull * 3600 * 1000;  // keeps the timer arithmetic far from overflow
constexpr std::size_t kChunk = 16 * 1024;
// /bytes body: byte i is kPattern[i % 64], so tests can verify any slice; 64 divides kChunk.
constexpr std::string_view kPattern = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

struct Options {
  std::string host = "127.0.0.1";
  std::string port = "8080";
  std::string name = "demo-app";
  unsigned threads = 1;
  std::chrono::milliseconds shutdown_timeout = 10s;
  bool idle_close_on_term = true;
};

// One connection. Every field is touched only on the connection's strand.
struct Conn {
  explicit Conn(tcp::socket s) : socket(std::move(s)) {}
  tcp::socket socket;
  bool idle = false;      // waiting for the first byte of the next request
  bool draining = false;  // shutdown began: answer with Connection: close, then close
};

template <class T>
std::optional<T> parse_number(std::string_view s) {
  T v{};
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc{} || end != s.data() + s.size()) return std::nullopt;
  return v;
}

std::optional<std::uint64_t> query_uint(std::string_view query, std::string_view key) {
  while (!query.empty()) {
    const auto amp = query.find('&');
    const auto item = query.substr(0, amp);
    if (item.size() > key.size() && item.starts_with(key) && item[key.size()] == '=')
      return parse_number<std::uint64_t>(item.substr(key.size() + 1));
    query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
  }
  return std::nullopt;
}

class Server {
 public:
  Server(asio::io_context& ioc, Options opt)
      : ioc_(ioc),
        opt_(std::move(opt)),
        acceptor_(asio::make_strand(ioc)),
        control_(asio::make_strand(ioc)),
        signals_(control_, SIGINT, SIGTERM),
        force_timer_(control_) {}

  const std::string& name() const { return opt_.name; }

  void say(const std::string& what) const {
    std::fprintf(stderr, "demo-app %s %s\n", opt_.name.c_str(), what.c_str());
    std::fflush(stderr);
  }

  void log_exception(const char* where, std::exception_ptr e) const {
    if (!e) return;
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& ex) {
      say(std::string("error: exception in ") + where + ": " + ex.what());
    } catch (...) {
      say(std::string("error: unknown exception in ") + where);
    }
  }

  bool listen() {
    error_code ec;
    tcp::resolver resolver(ioc_);
    const auto results = resolver.resolve(opt_.host, opt_.port, tcp::resolver::passive, ec);
    if (ec || results.empty()) return fail_listen(ec ? ec.message() : "no address");
    const tcp::endpoint ep = results.begin()->endpoint();
    acceptor_.open(ep.protocol(), ec);
    if (!ec) acceptor_.set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec) acceptor_.bind(ep, ec);
    if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
    return ec ? fail_listen(ec.message()) : true;
  }

  void start() {
    signals_.async_wait([this](error_code ec, int signo) { on_signal(ec, signo); });
    asio::co_spawn(acceptor_.get_executor(), accept_loop(), AcceptDone{this});
    // Printed last, so a test that sends SIGTERM as soon as it sees this line gets a clean drain.
    error_code ec;
    const auto ep = acceptor_.local_endpoint(ec);
    const auto addr = ep.address().to_string();
    say("listening on " + (ep.address().is_v6() ? "[" + addr + "]" : addr) + ":" + std::to_string(ep.port()));
  }

  void connection_done(const std::shared_ptr<Conn>& c) {
    std::lock_guard lock(mu_);
    conns_.erase(c);
    maybe_finish_locked();
  }

 private:
  struct AcceptDone {
    Server* srv;
    void operator()(std::exception_ptr e) const {
      srv->log_exception("accept loop", e);
      std::lock_guard lock(srv->mu_);
      srv->accept_finished_ = true;
      srv->maybe_finish_locked();
    }
  };

  struct SessionDone {
    Server* srv;
    std::shared_ptr<Conn> conn;
    void operator()(std::exception_ptr e) const {
      srv->log_exception("connection", e);
      srv->connection_done(conn);
    }
  };

  bool fail_listen(const std::string& why) const {
    std::fprintf(stderr, "demo-app %s: cannot listen on %s:%s: %s\n", opt_.name.c_str(), opt_.host.c_str(),
                 opt_.port.c_str(), why.c_str());
    return false;
  }

  awaitable<void> accept_loop();

  void on_signal(error_code ec, int /*signo*/) {
    if (ec) return;  // cancelled: shutdown finished
    if (shutting_down_) return force("second signal");
    shutting_down_ = true;
    say("shutting down");
    force_timer_.expires_after(opt_.shutdown_timeout);
    force_timer_.async_wait([this](error_code e) {
      if (!e) force("shutdown timeout");
    });
    signals_.async_wait([this](error_code e, int s) { on_signal(e, s); });

    asio::post(acceptor_.get_executor(), [this] {
      error_code ignored;
      acceptor_.close(ignored);
    });
    std::lock_guard lock(mu_);
    stopping_ = true;
    for (const auto& c : conns_) {
      // Idle means no byte of a next request has been read, so closing loses nothing we accepted.
      asio::post(c->socket.get_executor(), [c, close_idle = opt_.idle_close_on_term] {
        c->draining = true;
        error_code ignored;
        if (close_idle && c->idle) c->socket.cancel(ignored);
      });
    }
    maybe_finish_locked();
  }

  void maybe_finish_locked() {
    if (!stopping_ || !accept_finished_ || !conns_.empty() || finish_posted_) return;
    finish_posted_ = true;
    // Cancelling the timer and the signal wait leaves the io_context without work: run() returns.
    asio::post(control_, [this] {
      if (done_) return;
      done_ = true;
      force_timer_.cancel();
      signals_.cancel();
      say("stopped");
    });
  }

  void force(const std::string& why) {  // on the control strand
    if (done_) return;
    done_ = true;
    std::size_t open = 0;
    {
      std::lock_guard lock(mu_);
      open = conns_.size();
    }
    say(why + ": closing " + std::to_string(open) + " connection(s)");
    say("stopped");
    ioc_.stop();
  }

  asio::io_context& ioc_;
  const Options opt_;
  tcp::acceptor acceptor_;                             // on its own strand
  asio::strand<asio::io_context::executor_type> control_;
  asio::signal_set signals_;                           // on control_
  asio::steady_timer force_timer_;                     // on control_
  bool shutting_down_ = false;                         // control_ only
  bool done_ = false;                                  // control_ only

  std::mutex mu_;
  std::set<std::shared_ptr<Conn>> conns_;  // guarded by mu_, as are the three flags below
  bool stopping_ = false;
  bool accept_finished_ = false;
  bool finish_posted_ = false;
};

template <class Body>
void set_common_headers(http::response<Body>& res, const Server& srv, const Conn& c, const Request& req,
                        std::string_view content_type) {
  res.version(req.version());
  res.set(http::field::server, "drainproxy-demo-app");
  res.set(http::field::content_type, beast::string_view(content_type.data(), content_type.size()));
  res.set("X-Served-By", srv.name());
  res.keep_alive(req.keep_alive() && !c.draining);
}

// Returns whether the connection may carry another request.
awaitable<bool> send_text(const Server& srv, Conn& c, const Request& req, unsigned status, std::string body,
                          std::string_view content_type = "text/plain") {
  http::response<http::string_body> res;
  res.result(status);
  set_common_headers(res, srv, c, req, content_type);
  const bool bodiless = status < 200 || status == 204 || status == 304;  // RFC 9110: no body, no length
  if (!bodiless) {
    res.body() = std::move(body);
    res.prepare_payload();
  }
  error_code ec;
  co_await http::async_write(c.socket, res, asio::redirect_error(use_awaitable, ec));
  co_return !ec && res.keep_alive();
}

// Streams n pattern bytes through one fixed buffer, so n can exceed memory.
awaitable<bool> send_bytes(const Server& srv, Conn& c, const Request& req, std::uint64_t n) {
  http::response<http::buffer_body> res;
  res.result(http::status::ok);
  set_common_headers(res, srv, c, req, "application/octet-stream");
  res.content_length(n);
  res.body().data = nullptr;
  res.body().more = true;
  http::response_serializer<http::buffer_body> sr{res};
  error_code ec;
  co_await http::async_write_header(c.socket, sr, asio::redirect_error(use_awaitable, ec));
  std::array<char, kChunk> chunk;
  for (std::size_t i = 0; i < chunk.size(); ++i) chunk[i] = kPattern[i % kPattern.size()];
  std::uint64_t left = n;
  while (!ec) {
    const auto size = static_cast<std::size_t>(std::min<std::uint64_t>(left, kChunk));
    left -= size;
    res.body().data = size ? chunk.data() : nullptr;
    res.body().size = size;
    res.body().more = left > 0;
    co_await http::async_write(c.socket, sr, asio::redirect_error(use_awaitable, ec));
    if (ec == http::error::need_buffer) ec = {};  // the serializer consumed this chunk and wants the next
    if (left == 0) break;
  }
  co_return !ec && res.keep_alive();
}

awaitable<bool> respond(const Server& srv, Conn& c, Request& req) {
  const std::string_view target(req.target().data(), req.target().size());
  const auto q = target.find('?');
  const std::string_view path = target.substr(0, q);
  const std::string_view query = q == std::string_view::npos ? std::string_view{} : target.substr(q + 1);
  const bool get = req.method() == http::verb::get;

  if (get && path == "/")
    co_return co_await send_text(srv, c, req, 200, "hello from " + srv.name() + "\n");
  if (get && path == "/healthz") co_return co_await send_text(srv, c, req, 200, "ok\n");
  if (get && path == "/delay") {
    const auto ms = query_uint(query, "ms");
    if (!ms || *ms > kMaxDelayMs) co_return co_await send_text(srv, c, req, 400, "bad ms\n");
    asio::steady_timer timer(c.socket.get_executor(), std::chrono::milliseconds(*ms));
    error_code ec;
    co_await timer.async_wait(asio::redirect_error(use_awaitable, ec));
    co_return co_await send_text(srv, c, req, 200, "slept " + std::to_string(*ms) + " ms\n");
  }
  if (get && path == "/bytes") {
    const auto n = query_uint(query, "n");
    if (!n) co_return co_await send_text(srv, c, req, 400, "bad n\n");
    co_return co_await send_bytes(srv, c, req, *n);
  }
  if ((req.method() == http::verb::post || req.method() == http::verb::put) && path == "/echo")
    co_return co_await send_text(srv, c, req, 200, std::move(req.body()), "application/octet-stream");
  if (get && path.starts_with("/status/")) {
    // 1xx would not end the exchange, and beast only writes 3-digit codes.
    const auto code = parse_number<unsigned>(path.substr(8));
    if (code && *code >= 200 && *code <= 599)
      co_return co_await send_text(srv, c, req, *code, "status " + std::to_string(*code) + "\n");
  }
  co_return co_await send_text(srv, c, req, 404, "not found\n");
}

// After an error response with request bytes still unread, closing at once makes the kernel send
// RST, which can destroy the response before the client reads it. So half-close, then discard
// input until the client closes or 2 s pass.
awaitable<void> linger(std::shared_ptr<Conn> c) {
  error_code ec;
  c->socket.shutdown(tcp::socket::shutdown_send, ec);
  asio::steady_timer deadline(c->socket.get_executor(), 2s);
  deadline.async_wait([c](error_code e) {
    error_code ignored;
    if (!e) c->socket.cancel(ignored);
  });
  std::array<char, kChunk> sink;
  while (!ec) co_await c->socket.async_read_some(asio::buffer(sink), asio::redirect_error(use_awaitable, ec));
}

awaitable<void> session(Server* srv, std::shared_ptr<Conn> c) {
  beast::flat_buffer buf;
  error_code ec;
  for (;;) {
    if (buf.size() == 0) {  // else a pipelined request is already buffered: not idle
      if (c->draining) break;
      // Wait for readability before reading, so "idle" means no byte of the next request is ours.
      c->idle = true;
      co_await c->socket.async_wait(tcp::socket::wait_read, asio::redirect_error(use_awaitable, ec));
      c->idle = false;
      if (ec) break;
    }
    http::request_parser<http::string_body> parser;
    parser.body_limit(kMaxBody);
    co_await http::async_read_header(c->socket, buf, parser, asio::redirect_error(use_awaitable, ec));
    if (!ec && beast::iequals(parser.get()[http::field::expect], "100-continue") && parser.get().version() >= 11) {
      // Otherwise curl waits a second before sending a large body.
      http::response<http::empty_body> cont{http::status::continue_, parser.get().version()};
      co_await http::async_write(c->socket, cont, asio::redirect_error(use_awaitable, ec));
    }
    if (!ec) co_await http::async_read(c->socket, buf, parser, asio::redirect_error(use_awaitable, ec));
    if (ec == http::error::body_limit || ec == http::error::header_limit ||
        (ec.category() == http::make_error_code(http::error::bad_target).category() &&
         ec != http::error::end_of_stream && ec != http::error::partial_message)) {
      // Answer as if to HTTP/1.1 without keep-alive: the stream is unusable after a parse error.
      Request bad;
      bad.version(11);
      bad.keep_alive(false);
      const bool too_big = ec == http::error::body_limit;
      co_await send_text(*srv, *c, bad, too_big ? 413 : 400, too_big ? "body too large\n" : "bad request\n");
      co_await linger(c);
      break;
    }
    if (ec) break;  // end_of_stream (clean close between requests), reset, cancelled...
    Request req = parser.release();
    if (!co_await respond(*srv, *c, req)) break;
  }
  error_code ignored;
  c->socket.shutdown(tcp::socket::shutdown_send, ignored);
  c->socket.close(ignored);
}

awaitable<void> Server::accept_loop() {
  for (;;) {
    error_code ec;
    // any_io_executor(strand): the socket is a plain tcp::socket whose executor is its own strand.
    tcp::socket s = co_await acceptor_.async_accept(asio::any_io_executor(asio::make_strand(ioc_)),
                                                    asio::redirect_error(use_awaitable, ec));
    if (!acceptor_.is_open()) co_return;  // closed by shutdown (close runs on this strand)
    if (ec) {                             // e.g. EMFILE: back off instead of spinning
      say("accept failed: " + ec.message());
      asio::steady_timer pause(acceptor_.get_executor(), 50ms);
      co_await pause.async_wait(asio::redirect_error(use_awaitable, ec));
      continue;
    }
    auto c = std::make_shared<Conn>(std::move(s));
    {
      std::lock_guard lock(mu_);
      if (stopping_) continue;  // accepted just before the close: drop it, the socket closes with c
      conns_.insert(c);
    }
    asio::co_spawn(c->socket.get_executor(), session(this, c), SessionDone{this, c});
  }
}

int usage(std::FILE* out, int rc) {
  std::fprintf(out,
               "usage: drainproxy-demo-app [--listen ADDR:PORT] [--name NAME] [--threads N]\n"
               "                           [--shutdown-timeout SECONDS] [--[no-]idle-close-on-term]\n");
  return rc;
}

int bad_flag(const std::string& flag, const std::string& why) {
  std::fprintf(stderr, "demo-app: %s: %s\n", flag.c_str(), why.c_str());
  return usage(stderr, 2);
}

// Returns -1 to go on, else the exit code. Accepts "--flag value" and "--flag=value".
int parse_args(int argc, char** argv, Options& opt) {
  for (int i = 1; i < argc; ++i) {
    std::string flag = argv[i];
    std::optional<std::string> value;
    if (const auto eq = flag.find('='); flag.starts_with("--") && eq != std::string::npos) {
      value = flag.substr(eq + 1);
      flag.resize(eq);
    }
    if (flag == "--help" || flag == "-h") return usage(stdout, 0);
    if (flag == "--idle-close-on-term" || flag == "--no-idle-close-on-term") {
      const std::string v = value.value_or("true");
      const bool on = v == "true" || v == "on" || v == "1";
      if (!on && v != "false" && v != "off" && v != "0") return bad_flag(flag, "expects true or false");
      opt.idle_close_on_term = (flag == "--idle-close-on-term") == on;
      continue;
    }
    if (flag != "--listen" && flag != "--name" && flag != "--threads" && flag != "--shutdown-timeout")
      return bad_flag(flag, "unknown flag");
    if (!value) {
      if (i + 1 >= argc) return bad_flag(flag, "missing value");
      value = argv[++i];
    }
    const std::string& v = *value;
    if (flag == "--listen") {
      // ADDR:PORT, [V6ADDR]:PORT, or :PORT for all IPv4 addresses.
      const auto colon = v.rfind(':');
      if (colon == std::string::npos || !parse_number<std::uint16_t>(v.substr(colon + 1)))
        return bad_flag(flag, "expects ADDR:PORT, got '" + v + "'");
      opt.host = v.substr(0, colon);
      opt.port = v.substr(colon + 1);
      if (opt.host.size() >= 2 && opt.host.front() == '[' && opt.host.back() == ']')
        opt.host = opt.host.substr(1, opt.host.size() - 2);
      if (opt.host.empty()) opt.host = "0.0.0.0";
    } else if (flag == "--name") {
      if (v.empty()) return bad_flag(flag, "must not be empty");
      opt.name = v;
    } else if (flag == "--threads") {
      const auto n = parse_number<unsigned>(v);
      if (!n || *n < 1 || *n > 256) return bad_flag(flag, "expects 1..256, got '" + v + "'");
      opt.threads = *n;
    } else {
      const auto s = parse_number<double>(v);
      if (!s || !(*s >= 0 && *s <= 1e6)) return bad_flag(flag, "expects seconds >= 0, got '" + v + "'");
      opt.shutdown_timeout = std::chrono::milliseconds(static_cast<std::int64_t>(*s * 1000));
    }
  }
  return -1;
}

void run(asio::io_context& ioc, const Server& srv) {
  try {
    ioc.run();
  } catch (...) {  // completion handlers catch everything; this is a last resort
    srv.log_exception("io_context::run", std::current_exception());
  }
}

}  // namespace
}  // namespace drainproxy::demo

int main(int argc, char** argv) {
  using namespace drainproxy::demo;
  try {
    Options opt;
    if (const int rc = parse_args(argc, argv, opt); rc >= 0) return rc;
    drainproxy::asio::io_context ioc(static_cast<int>(opt.threads));
    Server srv(ioc, opt);  // declared after ioc: destroyed first, while its sockets' context lives
    if (!srv.listen()) return 1;
    srv.start();
    std::vector<std::thread> extra;
    for (unsigned i = 1; i < opt.threads; ++i) extra.emplace_back(run, std::ref(ioc), std::cref(srv));
    run(ioc, srv);
    for (auto& t : extra) t.join();
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "demo-app: fatal: %s\n", e.what());
    return 1;
  }
}
