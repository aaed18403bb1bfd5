#include "proxy/poller.hpp"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <future>
#include <thread>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "proxy/task.hpp"

namespace drainproxy::proxy {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// What a spawned task left behind: its I/O result and how spawn() ended.
struct Outcome {
  bool done = false;
  IoResult result;
  std::exception_ptr error;
};

void start(Task<void> task, Outcome& out) {
  spawn(std::move(task), [&out](std::exception_ptr e) {
    out.error = e;
    out.done = true;
  });
}

Task<void> read_into(Socket& s, void* data, std::size_t size, Outcome& out) {
  out.result = co_await s.read_some(data, size);
}

Task<void> try_read_into(Socket& s, void* data, std::size_t size, Outcome& out) {
  out.result = co_await s.try_read_some(data, size);
}

Task<void> write_from(Socket& s, const void* a, std::size_t a_size, const void* b, std::size_t b_size, Outcome& out) {
  out.result = co_await s.write_all(a, a_size, b, b_size);
}

Task<void> wait_for_bytes(Socket& s, Outcome& out) { out.result.ec = co_await s.wait_readable(); }

Task<void> connect_to(Poller& poller, tcp::endpoint ep, Socket& socket, Outcome& out) {
  out.result.ec = co_await Socket::connect(poller, ep, socket);
}

// Blocks (bounded, in the kernel) until `fd` reports one of `events`: used to know the
// peer's bytes or FIN have arrived before the poller is allowed to see them.
bool kernel_ready(int fd, short events) {
  pollfd p{fd, events, 0};
  return ::poll(&p, 1, 3000) == 1 && (p.revents & events) != 0;
}

std::vector<char> pattern(std::size_t size, unsigned seed) {
  std::vector<char> v(size);
  for (std::size_t i = 0; i < size; ++i) v[i] = static_cast<char>((i * 131 + seed + (i >> 12)) % 251);
  return v;
}

class PollerFixture : public ::testing::Test {
 protected:
  PollerFixture() : acceptor_(ioc_, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)) {}
  // Pending completions of a failed test are dropped with the poller, never run
  // against the test body's locals.

  // A loopback connection: the client side as a Socket, the server side in `server`.
  Socket connect(tcp::socket& server) {
    tcp::socket c(ioc_);
    c.connect(acceptor_.local_endpoint());
    server = acceptor_.accept();
    c.non_blocking(true);
    error_code ec;
    Socket s(poller_, c.release(), ec);
    EXPECT_FALSE(ec) << ec.message();
    return s;
  }

  // The same, as the listener makes it: outside the epoll set until it first waits.
  Socket connect_lazy(tcp::socket& server) {
    tcp::socket c(ioc_);
    c.connect(acceptor_.local_endpoint());
    server = acceptor_.accept();
    c.non_blocking(true);
    return Socket(poller_, c.release(), Socket::Lazy{});
  }

  // Turns the poller's loop until `pred` holds; false when it did not within `limit`.
  template <typename Pred>
  bool run_until(Pred pred, Clock::duration limit = 5s) {
    const auto deadline = Clock::now() + limit;
    while (!pred()) {
      if (Clock::now() >= deadline) return false;
      poller_.run_once(10ms);
    }
    return true;
  }

  // The next read on `s` must end with eof (no bytes), not hang.
  void expect_next_read_ends_with_eof(Socket& s, const char* what) {
    char buf[16];
    Outcome r;
    start(read_into(s, buf, sizeof buf, r), r);
    ASSERT_TRUE(run_until([&] { return r.done; }, 3s)) << what;
    EXPECT_EQ(r.result.ec, asio::error::eof) << r.result.ec.message();
    EXPECT_EQ(r.result.bytes, 0u);
  }

  // The poller delivers the next bytes `server` sends to a read on `s`.
  void expect_next_read_gets_again(Socket& s, tcp::socket& server, const char* what) {
    char buf[8] = {};
    Outcome r;
    start(read_into(s, buf, sizeof buf, r), r);
    asio::write(server, asio::buffer("again", 5));
    ASSERT_TRUE(run_until([&] { return r.done; })) << what;
    EXPECT_EQ(std::string(buf, r.result.bytes), "again");
  }

  // Runs everything that is ready now, without waiting.
  void settle() { poller_.run_once(0ms); }

  // Only for the peers' blocking sockets; never run.
  asio::io_context ioc_;
  Poller poller_;
  tcp::acceptor acceptor_;
};

using SocketTest = PollerFixture;
using PollerTest = PollerFixture;

// ---------------------------------------------------------------- reads

TEST_F(SocketTest, ShortReadClearsReadinessAndTheNextReadParksUntilMoreArrives) {
  tcp::socket server(ioc_);
  Socket s = connect(server);
  asio::write(server, asio::buffer("hello", 5));
  ASSERT_TRUE(run_until([&] { return s.maybe_readable(); })) << "the poller never reported the bytes";

  char buf[64] = {};
  Outcome first;
  start(read_into(s, buf, sizeof buf, first), first);
  ASSERT_TRUE(first.done) << "bytes were there: the read completes at once";
  EXPECT_FALSE(first.result.ec) << first.result.ec.message();
  EXPECT_EQ(first.result.bytes, 5u);
  EXPECT_EQ(std::string(buf, 5), "hello");
  EXPECT_FALSE(s.maybe_readable()) << "a short read took everything the kernel had";

  Outcome second;
  start(read_into(s, buf, sizeof buf, second), second);
  settle();
  EXPECT_FALSE(second.done) << "nothing to read: the read must park";

  asio::write(server, asio::buffer("world!", 6));
  ASSERT_TRUE(run_until([&] { return second.done; })) << "the parked read never completed";
  EXPECT_FALSE(second.error);
  EXPECT_FALSE(second.result.ec) << second.result.ec.message();
  EXPECT_EQ(second.result.bytes, 6u);
  EXPECT_EQ(std::string(buf, 6), "world!");
}

TEST_F(SocketTest, ReadThatFillsTheBufferKeepsReadinessAndFindsTheRest) {
  tcp::socket server(ioc_);
  Socket s = connect(server);
  asio::write(server, asio::buffer("0123456789", 10));
  ASSERT_TRUE(kernel_ready(s.native_handle(), POLLIN));
  ASSERT_TRUE(run_until([&] { return s.maybe_readable(); }));

  char buf[4] = {};
  std::string got;
  for (int i = 0; i < 3; ++i) {
    Outcome r;
    start(read_into(s, buf, sizeof buf, r), r);
    ASSERT_TRUE(r.done) << "read " << i << " should find bytes without a new event";
    ASSERT_FALSE(r.result.ec) << r.result.ec.message();
    got.append(buf, r.result.bytes);
  }
  EXPECT_EQ(got, "0123456789");
  EXPECT_FALSE(s.maybe_readable()) << "the last read (2 of 4 bytes) was short";
}

TEST_F(SocketTest, ParkedReadCompletesWhenThePeerSendsDataAndFin) {
  tcp::socket server(ioc_);
  Socket s = connect(server);
  char buf[64] = {};
  Outcome first;
  start(read_into(s, buf, sizeof buf, first), first);
  settle();
  ASSERT_FALSE(first.done);

  asio::write(server, asio::buffer("bye", 3));
  server.shutdown(tcp::socket::shutdown_send);
  ASSERT_TRUE(run_until([&] { return first.done; }));
  EXPECT_FALSE(first.result.ec) << first.result.ec.message();
  EXPECT_EQ(first.result.bytes, 3u);

  expect_next_read_ends_with_eof(s, "the end of stream was lost");
}

// Regression: the peer's bytes and FIN arrive together before anyone reads. The one
// edge reports both; a short read must not wait for another edge, since none comes.
TEST_F(SocketTest, DataAndFinBeforeTheFirstReadEndWithEofNotAHang) {
  tcp::socket server(ioc_);
  Socket s = connect(server);
  settle();
  asio::write(server, asio::buffer("last words", 10));
  server.shutdown(tcp::socket::shutdown_send);
  ASSERT_TRUE(kernel_ready(s.native_handle(), POLLRDHUP)) << "the FIN did not arrive";
  ASSERT_TRUE(run_until([&] { return s.maybe_readable(); }));

  char buf[64] = {};
  Outcome first;
  start(read_into(s, buf, sizeof buf, first), first);
  ASSERT_TRUE(run_until([&] { return first.done; }, 3s));
  EXPECT_FALSE(first.result.ec) << first.result.ec.message();
  EXPECT_EQ(first.result.bytes, 10u);
  EXPECT_EQ(std::string(buf, 10), "last words");
  EXPECT_TRUE(s.maybe_readable()) << "after the peer's FIN a short read does not clear readiness";

  expect_next_read_ends_with_eof(s, "the read after the data hangs instead of seeing eof");
}

// The same, for a connection whose data and FIN were queued before it was registered
// (the only edge is the one epoll reports when the descriptor is added).
TEST_F(SocketTest, DataAndFinQueuedBeforeRegistrationEndWithEof) {
  tcp::socket c(ioc_);
  c.connect(acceptor_.local_endpoint());
  tcp::socket server = acceptor_.accept();
  asio::write(server, asio::buffer("early", 5));
  server.shutdown(tcp::socket::shutdown_send);
  ASSERT_TRUE(kernel_ready(c.native_handle(), POLLRDHUP));
  c.non_blocking(true);
  error_code ec;
  Socket s(poller_, c.release(), ec);
  ASSERT_FALSE(ec) << ec.message();
  ASSERT_TRUE(run_until([&] { return s.maybe_readable(); })) << "no edge for bytes queued before registration";

  char buf[64] = {};
  Outcome first;
  start(read_into(s, buf, sizeof buf, first), first);
  ASSERT_TRUE(run_until([&] { return first.done; }, 3s));
  EXPECT_EQ(first.result.bytes, 5u);
  EXPECT_FALSE(first.result.ec) << first.result.ec.message();
  expect_next_read_ends_with_eof(s, "eof lost");
}

// The FIN arrives after the data's event was dispatched but before the read: the short
// read clears readiness, and the FIN's own (still queued) edge must end the next read.
TEST_F(SocketTest, FinArrivingAfterTheDataEventEndsTheNextReadWithEof) {
  tcp::socket server(ioc_);
  Socket s = connect(server);
  asio::write(server, asio::buffer("abc", 3));
  ASSERT_TRUE(kernel_ready(s.native_handle(), POLLIN));
  ASSERT_TRUE(run_until([&] { return s.maybe_readable(); }));
  server.shutdown(tcp::socket::shutdown_send);
  ASSERT_TRUE(kernel_ready(s.native_handle(), POLLRDHUP));

  char buf[64] = {};
  Outcome first;
  start(read_into(s, buf, sizeof buf, first), first);  // no turn of the loop in between
  ASSERT_TRUE(first.done);
  EXPECT_EQ(first.result.bytes, 3u);
  expect_next_read_ends_with_eof(s, "eof lost");
}

TEST_F(SocketTest, PeerResetCompletesAParkedReadWithAnError) {
  tcp::socket server(ioc_);
  Socket s = connect(server);
  char buf[16];
  Outcome r;
  start(read_into(s, buf, sizeof buf, r), r);
  settle();
  ASSERT_FALSE(r.done);
  server.set_option(asio::socket_base::linger(true, 0));
  server.close();  // RST
  ASSERT_TRUE(run_until([&] { return r.done; }, 3s));
  EXPECT_EQ(r.result.ec, asio::error::connection_reset) << r.result.ec.message();
}

TEST_F(SocketTest, WaitReadableParksUntilBytesArriveAndDoesNotConsumeThem) {
  tcp::socket server(ioc_);
  Socket s = connect(server);
  Outcome w;
  start(wait_for_bytes(s, w), w);
  settle();
  ASSERT_FALSE(w.done);
  asio::write(server, asio::buffer("xyz", 3));
  ASSERT_TRUE(run_until([&] { return w.done; }));
  EXPECT_FALSE(w.result.ec) << w.result.ec.message();
  char buf[8] = {};
  error_code ec;
  EXPECT_EQ(s.recv(buf, sizeof buf, ec), 3u);
  EXPECT_FALSE(ec) << ec.message();
  EXPECT_EQ(std::string(buf, 3), "xyz");
  EXPECT_EQ(s.recv(buf, sizeof buf, ec), 0u);
  EXPECT_EQ(ec, asio::error::would_block);
  EXPECT_FALSE(s.maybe_readable());
}

// ---------------------------------------------------------------- cancel and close

TEST_F(SocketTest, CancelCompletesAParkedReadWithOperationAbortedFromTheQueue) {
  tcp::socket server(ioc_);
  Socket s = connect(server);
  char buf[16] = {};
  Outcome r;
  start(read_into(s, buf, sizeof buf, r), r);
  settle();
  ASSERT_FALSE(r.done);

  s.cancel();
  EXPECT_FALSE(r.done) << "cancel() must not resume the reader on its own call stack";
  ASSERT_TRUE(run_until([&] { return r.done; }, 3s));
  EXPECT_EQ(r.result.ec, asio::error::operation_aborted) << r.result.ec.message();
  EXPECT_EQ(r.result.bytes, 0u);
  EXPECT_TRUE(s.is_open()) << "cancel leaves the socket open";

  // And it still works: the next read gets the peer's bytes.
  Outcome again;
  start(read_into(s, buf, sizeof buf, again), again);
  asio::write(server, asio::buffer("still", 5));
  ASSERT_TRUE(run_until([&] { return again.done; }));
  EXPECT_FALSE(again.result.ec) << again.result.ec.message();
  EXPECT_EQ(std::string(buf, again.result.bytes), "still");
}

TEST_F(SocketTest, CancelWithNothingPendingIsHarmless) {
  tcp::socket server(ioc_);
  Socket s = connect(server);
  s.cancel();
  settle();
  asio::write(server, asio::buffer("ok", 2));
  char buf[8];
  Outcome r;
  start(read_into(s, buf, sizeof buf, r), r);
  ASSERT_TRUE(run_until([&] { return r.done; }));
  EXPECT_FALSE(r.result.ec) << r.result.ec.message();
  EXPECT_EQ(r.result.bytes, 2u);
}

TEST_F(SocketTest, CloseAbortsAParkedReadAndLaterReadsFailWithBadDescriptor) {
  tcp::socket server(ioc_);
  Socket s = connect(server);
  char buf[16] = {};
  Outcome r;
  start(read_into(s, buf, sizeof buf, r), r);
  settle();
  ASSERT_FALSE(r.done);

  s.close();
  EXPECT_FALSE(s.is_open());
  EXPECT_EQ(s.native_handle(), -1);
  EXPECT_FALSE(r.done) << "close() must not resume the reader on its own call stack";
  ASSERT_TRUE(run_until([&] { return r.done; }, 3s));
  EXPECT_EQ(r.result.ec, asio::error::operation_aborted) << r.result.ec.message();

  Outcome late;
  start(read_into(s, buf, sizeof buf, late), late);
  ASSERT_TRUE(late.done) << "a read on a closed socket completes at once";
  EXPECT_EQ(late.result.ec, asio::error::bad_descriptor) << late.result.ec.message();

  Outcome late_write;
  start(write_from(s, "x", 1, nullptr, 0, late_write), late_write);
  ASSERT_TRUE(late_write.done);
  EXPECT_EQ(late_write.result.ec, asio::error::bad_descriptor) << late_write.result.ec.message();

  error_code ec;
  EXPECT_EQ(s.recv(buf, sizeof buf, ec), 0u);
  EXPECT_EQ(ec, asio::error::bad_descriptor);
  EXPECT_FALSE(s.idle_intact());

  // The peer sees a clean end of stream.
  char pbuf[4];
  server.read_some(asio::buffer(pbuf), ec);
  EXPECT_EQ(ec, asio::error::eof) << ec.message();
}

TEST_F(SocketTest, AbortMakesThePeerSeeAReset) {
  tcp::socket server(ioc_);
  Socket s = connect(server);
  s.abort();
  EXPECT_FALSE(s.is_open());
  char pbuf[4];
  error_code ec;
  server.read_some(asio::buffer(pbuf), ec);
  EXPECT_EQ(ec, asio::error::connection_reset) << ec.message();
}

TEST_F(SocketTest, ShutdownSendEndsThePeersStreamButKeepsReceiving) {
  tcp::socket server(ioc_);
  Socket s = connect(server);
  s.shutdown_send();
  char pbuf[4];
  error_code ec;
  server.read_some(asio::buffer(pbuf), ec);
  EXPECT_EQ(ec, asio::error::eof) << ec.message();

  asio::write(server, asio::buffer("back", 4));
  char buf[8] = {};
  Outcome r;
  start(read_into(s, buf, sizeof buf, r), r);
  ASSERT_TRUE(run_until([&] { return r.done; }));
  EXPECT_FALSE(r.result.ec) << r.result.ec.message();
  EXPECT_EQ(std::string(buf, r.result.bytes), "back");
}

// ---------------------------------------------------------------- writes

// Drains `server` into `got` until `expected` bytes arrived, turning the poller's loop
// whenever the peer has nothing more for now. False on timeout.
bool drain_peer(Poller& poller, tcp::socket& server, std::vector<char>& got, std::size_t expected) {
  server.non_blocking(true);
  std::vector<char> chunk(256 * 1024);
  const auto deadline = Clock::now() + 20s;
  while (got.size() < expected) {
    if (Clock::now() >= deadline) return false;
    error_code ec;
    const std::size_t n = server.read_some(asio::buffer(chunk), ec);
    if (ec == asio::error::would_block) {
      poller.run_once(5ms);
      continue;
    }
    if (ec) return false;
    got.insert(got.end(), chunk.begin(), chunk.begin() + static_cast<std::ptrdiff_t>(n));
  }
  return true;
}

TEST_F(SocketTest, WriteAllParksOnAFullSendBufferAndCompletesWhenThePeerDrains) {
  tcp::socket server(ioc_);
  Socket s = connect(server);
  const std::vector<char> data = pattern(8 << 20, 7);
  Outcome w;
  start(write_from(s, data.data(), data.size(), nullptr, 0, w), w);
  settle();
  ASSERT_FALSE(w.done) << "8 MiB to a peer that does not read should hit EAGAIN";

  std::vector<char> got;
  ASSERT_TRUE(drain_peer(poller_, server, got, data.size())) << "received " << got.size();
  ASSERT_TRUE(run_until([&] { return w.done; }, 3s));
  EXPECT_FALSE(w.error);
  EXPECT_FALSE(w.result.ec) << w.result.ec.message();
  EXPECT_EQ(w.result.bytes, data.size());
  EXPECT_EQ(got.size(), data.size());
  EXPECT_TRUE(got == data) << "bytes arrived out of order or corrupted";
}

// Two buffers, both larger than what one sendmsg takes: partial writes cross the
// boundary between them.
TEST_F(SocketTest, WriteAllOfTwoBuffersDeliversBothInOrder) {
  tcp::socket server(ioc_);
  Socket s = connect(server);
  const std::vector<char> a = pattern((3 << 20) + 7, 1);
  const std::vector<char> b = pattern((5 << 20) + 3, 2);
  Outcome w;
  start(write_from(s, a.data(), a.size(), b.data(), b.size(), w), w);
  settle();
  EXPECT_FALSE(w.done);

  std::vector<char> got;
  ASSERT_TRUE(drain_peer(poller_, server, got, a.size() + b.size())) << "received " << got.size();
  ASSERT_TRUE(run_until([&] { return w.done; }, 3s));
  EXPECT_FALSE(w.result.ec) << w.result.ec.message();
  EXPECT_EQ(w.result.bytes, a.size() + b.size());
  std::vector<char> expected = a;
  expected.insert(expected.end(), b.begin(), b.end());
  ASSERT_EQ(got.size(), expected.size());
  EXPECT_TRUE(got == expected);
}

TEST_F(SocketTest, SmallWriteOfTwoBuffersCompletesAtOnce) {
  tcp::socket server(ioc_);
  Socket s = connect(server);
  Outcome w;
  start(write_from(s, "head|", 5, "body", 4, w), w);
  ASSERT_TRUE(w.done) << "the send buffer has room: no parking";
  EXPECT_FALSE(w.result.ec) << w.result.ec.message();
  EXPECT_EQ(w.result.bytes, 9u);
  char pbuf[9];
  asio::read(server, asio::buffer(pbuf));
  EXPECT_EQ(std::string(pbuf, 9), "head|body");
}

TEST_F(SocketTest, CancelCompletesAParkedWriteWithOperationAbortedAndThePartialCount) {
  tcp::socket server(ioc_);
  Socket s = connect(server);
  const std::vector<char> data = pattern(8 << 20, 3);
  Outcome w;
  start(write_from(s, data.data(), data.size(), nullptr, 0, w), w);
  settle();
  ASSERT_FALSE(w.done);
  s.cancel();
  EXPECT_FALSE(w.done);
  ASSERT_TRUE(run_until([&] { return w.done; }, 3s));
  EXPECT_EQ(w.result.ec, asio::error::operation_aborted) << w.result.ec.message();
  EXPECT_GT(w.result.bytes, 0u);
  EXPECT_LT(w.result.bytes, data.size());
}

TEST_F(SocketTest, ParkedWriteFailsInsteadOfHangingWhenThePeerResets) {
  tcp::socket server(ioc_);
  Socket s = connect(server);
  const std::vector<char> data = pattern(8 << 20, 5);
  Outcome w;
  start(write_from(s, data.data(), data.size(), nullptr, 0, w), w);
  settle();
  ASSERT_FALSE(w.done);
  server.set_option(asio::socket_base::linger(true, 0));
  server.close();
  ASSERT_TRUE(run_until([&] { return w.done; }, 3s)) << "the parked write never noticed the reset";
  EXPECT_TRUE(w.result.ec == asio::error::connection_reset || w.result.ec == asio::error::broken_pipe)
      << w.result.ec.message();
}

// ---------------------------------------------------------------- connect

TEST_F(SocketTest, ConnectToAListeningPortSucceedsAndCarriesBytes) {
  Socket s;
  Outcome c;
  start(connect_to(poller_, acceptor_.local_endpoint(), s, c), c);
  ASSERT_TRUE(run_until([&] { return c.done; }));
  EXPECT_FALSE(c.error);
  ASSERT_FALSE(c.result.ec) << c.result.ec.message();
  ASSERT_TRUE(s.is_open());
  EXPECT_EQ(s.poller(), &poller_);
  tcp::socket server = acceptor_.accept();

  Outcome w;
  start(write_from(s, "ping", 4, nullptr, 0, w), w);
  ASSERT_TRUE(run_until([&] { return w.done; }));
  EXPECT_FALSE(w.result.ec) << w.result.ec.message();
  char pbuf[4];
  asio::read(server, asio::buffer(pbuf));
  EXPECT_EQ(std::string(pbuf, 4), "ping");

  asio::write(server, asio::buffer("pong", 4));
  char buf[8] = {};
  Outcome r;
  start(read_into(s, buf, sizeof buf, r), r);
  ASSERT_TRUE(run_until([&] { return r.done; }));
  EXPECT_FALSE(r.result.ec) << r.result.ec.message();
  EXPECT_EQ(std::string(buf, r.result.bytes), "pong");
}

TEST_F(SocketTest, ConnectToAClosedPortIsRefusedAndLeavesTheSocketClosed) {
  tcp::endpoint closed_ep;
  {
    tcp::acceptor probe(ioc_, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    closed_ep = probe.local_endpoint();
  }
  // The target socket was in use before: connect replaces it.
  tcp::socket server(ioc_);
  Socket s = connect(server);
  ASSERT_TRUE(s.is_open());
  Outcome c;
  start(connect_to(poller_, closed_ep, s, c), c);
  ASSERT_TRUE(run_until([&] { return c.done; }));
  EXPECT_FALSE(c.error);
  EXPECT_EQ(c.result.ec, asio::error::connection_refused) << c.result.ec.message();
  EXPECT_FALSE(s.is_open()) << "a failed connect leaves nothing half-open";
  EXPECT_EQ(s.native_handle(), -1);
  // The replaced connection was closed: its peer sees the end of stream.
  char pbuf[4];
  error_code ec;
  server.read_some(asio::buffer(pbuf), ec);
  EXPECT_EQ(ec, asio::error::eof) << ec.message();
}

TEST_F(SocketTest, CancelDuringConnectAbortsAndClosesTheSocket) {
  // A listener whose accept queue is full drops SYNs: a connect to it stays pending.
  tcp::acceptor full(ioc_);
  full.open(tcp::v4());
  full.bind(tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  full.listen(0);
  std::vector<Socket> fillers;
  Socket s;
  Outcome c;
  for (int i = 0; i < 8; ++i) {
    c = Outcome{};
    start(connect_to(poller_, full.local_endpoint(), s, c), c);
    settle();
    if (!c.done) break;
    ASSERT_FALSE(c.result.ec) << c.result.ec.message();
    fillers.push_back(std::move(s));
  }
  ASSERT_FALSE(c.done) << "every connect completed: the accept queue never filled";
  ASSERT_TRUE(s.is_open());
  s.cancel();
  EXPECT_FALSE(c.done);
  ASSERT_TRUE(run_until([&] { return c.done; }, 3s));
  EXPECT_EQ(c.result.ec, asio::error::operation_aborted) << c.result.ec.message();
  EXPECT_FALSE(s.is_open()) << "an aborted connect leaves nothing half-open";
}

// ---------------------------------------------------------------- idle_intact

TEST_F(SocketTest, IdleIntactForAHealthyIdleSocket) {
  tcp::socket server(ioc_);
  Socket s = connect(server);
  settle();
  EXPECT_TRUE(s.idle_intact());

  // After a response was read completely (the last read was short).
  asio::write(server, asio::buffer("response", 8));
  char buf[64];
  Outcome r;
  start(read_into(s, buf, sizeof buf, r), r);
  ASSERT_TRUE(run_until([&] { return r.done; }));
  ASSERT_EQ(r.result.bytes, 8u);
  EXPECT_TRUE(s.idle_intact());

  // After a read that exactly filled its buffer: readiness is stale, the check peeks.
  asio::write(server, asio::buffer("12345678", 8));
  ASSERT_TRUE(kernel_ready(s.native_handle(), POLLIN));
  ASSERT_TRUE(run_until([&] { return s.maybe_readable(); }));
  Outcome exact;
  start(read_into(s, buf, 8, exact), exact);
  ASSERT_TRUE(exact.done);
  ASSERT_EQ(exact.result.bytes, 8u);
  EXPECT_TRUE(s.maybe_readable());
  EXPECT_TRUE(s.idle_intact());
  EXPECT_FALSE(s.maybe_readable()) << "the peek saw EAGAIN";
}

TEST_F(SocketTest, IdleIntactIsFalseAfterThePeerClosed) {
  tcp::socket server(ioc_);
  Socket s = connect(server);
  settle();
  server.close();
  ASSERT_TRUE(kernel_ready(s.native_handle(), POLLRDHUP));
  ASSERT_TRUE(run_until([&] { return s.maybe_readable(); })) << "the FIN's event was never dispatched";
  EXPECT_FALSE(s.idle_intact());
  EXPECT_FALSE(s.idle_intact()) << "and stays false";
}

TEST_F(SocketTest, IdleIntactIsFalseAfterUnexpectedBytesAndDoesNotConsumeThem) {
  tcp::socket server(ioc_);
  Socket s = connect(server);
  settle();
  asio::write(server, asio::buffer("HTTP/1.1 408\r\n", 14));
  ASSERT_TRUE(kernel_ready(s.native_handle(), POLLIN));
  ASSERT_TRUE(run_until([&] { return s.maybe_readable(); }));
  EXPECT_FALSE(s.idle_intact());
  char buf[32];
  error_code ec;
  EXPECT_EQ(s.recv(buf, sizeof buf, ec), 14u) << "the peek left the bytes in place";
}

TEST_F(SocketTest, AckPromptlyLeavesDelayedAckMode) {
  tcp::socket server(ioc_);
  Socket s = connect(server);
  // The kernel reports TCP_QUICKACK as 0 while the socket is in delayed-ACK
  // ("interactive") mode, as a request/response connection is.
  const auto quickack = [&] {
    int v = -1;
    socklen_t len = sizeof v;
    EXPECT_EQ(::getsockopt(s.native_handle(), IPPROTO_TCP, TCP_QUICKACK, &v, &len), 0);
    return v;
  };
  const int zero = 0;
  ASSERT_EQ(::setsockopt(s.native_handle(), IPPROTO_TCP, TCP_QUICKACK, &zero, sizeof zero), 0);
  ASSERT_EQ(quickack(), 0);
  s.ack_promptly();
  EXPECT_EQ(quickack(), 1);

  s.close();
  s.ack_promptly();  // a closed socket: nothing to do, no error
}

// ---------------------------------------------------------------- poller

TEST_F(PollerTest, MovedSocketReceivesItsEventsAtTheNewAddress) {
  tcp::socket server(ioc_);
  Socket a = connect(server);
  settle();
  auto moved = std::make_unique<Socket>(std::move(a));
  EXPECT_FALSE(a.is_open());
  ASSERT_TRUE(moved->is_open());
  Socket target;
  target = std::move(*moved);
  moved.reset();  // the old address is gone: an event routed there would be a use after free
  ASSERT_TRUE(target.is_open());

  char buf[8] = {};
  Outcome r;
  start(read_into(target, buf, sizeof buf, r), r);
  settle();
  ASSERT_FALSE(r.done);
  asio::write(server, asio::buffer("moved", 5));
  ASSERT_TRUE(run_until([&] { return r.done; }));
  EXPECT_FALSE(r.result.ec) << r.result.ec.message();
  EXPECT_EQ(std::string(buf, r.result.bytes), "moved");
}

TEST_F(PollerTest, MoveAssignOverAnOpenSocketClosesTheOldConnection) {
  tcp::socket server1(ioc_);
  tcp::socket server2(ioc_);
  Socket s1 = connect(server1);
  Socket s2 = connect(server2);
  s1 = std::move(s2);
  char pbuf[4];
  error_code ec;
  server1.read_some(asio::buffer(pbuf), ec);
  EXPECT_EQ(ec, asio::error::eof) << "the overwritten connection was closed: " << ec.message();

  asio::write(server2, asio::buffer("two", 3));
  char buf[8] = {};
  Outcome r;
  start(read_into(s1, buf, sizeof buf, r), r);
  ASSERT_TRUE(run_until([&] { return r.done; }));
  EXPECT_EQ(std::string(buf, r.result.bytes), "two");
}

// More ready sockets than one epoll_wait batch (256) takes.
TEST_F(PollerTest, DispatchesMoreReadySocketsThanOneBatch) {
  constexpr int kCount = 300;
  std::vector<tcp::socket> servers;
  std::vector<Socket> sockets;
  servers.reserve(kCount);
  sockets.reserve(kCount);
  for (int i = 0; i < kCount; ++i) {
    servers.emplace_back(ioc_);
    sockets.push_back(connect(servers.back()));
  }
  settle();
  std::vector<char> bufs(kCount * 4);
  std::vector<Outcome> reads(kCount);
  for (int i = 0; i < kCount; ++i) start(read_into(sockets[i], &bufs[i * 4], 4, reads[i]), reads[i]);
  settle();
  for (int i = 0; i < kCount; ++i) ASSERT_FALSE(reads[i].done) << i;
  for (int i = 0; i < kCount; ++i) {
    const char c = static_cast<char>('A' + i % 26);
    asio::write(servers[i], asio::buffer(&c, 1));
  }
  for (int i = 0; i < kCount; ++i) ASSERT_TRUE(kernel_ready(sockets[i].native_handle(), POLLIN));
  ASSERT_TRUE(run_until([&] {
    for (const Outcome& o : reads)
      if (!o.done) return false;
    return true;
  }));
  for (int i = 0; i < kCount; ++i) {
    EXPECT_FALSE(reads[i].result.ec) << i;
    EXPECT_EQ(reads[i].result.bytes, 1u) << i;
    EXPECT_EQ(bufs[i * 4], static_cast<char>('A' + i % 26)) << i;
  }
}

// Within one batch of events, a completion closes socket X and a new socket takes X's
// slot; X's event later in the same batch is stale and must not reach the newcomer.
Task<void> read_then_replace(Socket& a, char* buf, Socket& x, Poller& poller, tcp::endpoint ep, Socket& y,
                             Outcome& read, Outcome& conn) {
  read.result = co_await a.read_some(buf, 8);
  x.close();
  conn.result.ec = co_await Socket::connect(poller, ep, y);
  conn.done = true;
}

TEST_F(PollerTest, StaleEventOfASocketClosedInTheSameBatchDoesNotReachItsSlotsNextOwner) {
  tcp::socket server_a(ioc_);
  tcp::socket server_x(ioc_);
  Socket a = connect(server_a);
  Socket x = connect(server_x);
  Socket y;
  settle();
  char buf[8];
  Outcome read;
  Outcome conn;
  Outcome spawned;
  start(read_then_replace(a, buf, x, poller_, acceptor_.local_endpoint(), y, read, conn), spawned);
  settle();
  ASSERT_FALSE(read.done);
  // Epoll reports ready descriptors in the order they became ready: a's bytes first,
  // then x's FIN, both in one batch.
  asio::write(server_a, asio::buffer("a", 1));
  ASSERT_TRUE(kernel_ready(a.native_handle(), POLLIN));
  server_x.close();
  ASSERT_TRUE(kernel_ready(x.native_handle(), POLLRDHUP));
  ASSERT_TRUE(run_until([&] { return spawned.done; }));
  ASSERT_FALSE(conn.result.ec) << conn.result.ec.message();
  ASSERT_TRUE(y.is_open());
  settle();
  EXPECT_FALSE(y.maybe_readable()) << "x's stale event (bytes, FIN) was delivered to the socket that reused its slot";
  EXPECT_TRUE(y.idle_intact());
}

// Runs `poller.run()` on this thread, bounded: a run that does not return by itself
// within `limit` is aborted from a watchdog thread. True when it returned by itself.
bool run_returns_by_itself(Poller& poller, Clock::duration limit = 5s) {
  std::promise<void> returned;
  auto done = returned.get_future();
  std::atomic<bool> aborted{false};
  std::thread watchdog([&] {
    if (done.wait_for(limit) != std::future_status::ready) {
      aborted = true;
      poller.abort();
    }
  });
  poller.run();
  returned.set_value();
  watchdog.join();
  return !aborted;
}

TEST_F(PollerTest, RunReturnsAfterStopAndTheLoopCanRunAgain) {
  tcp::socket server(ioc_);
  Socket s = connect(server);
  poller_.stop();
  EXPECT_TRUE(run_returns_by_itself(poller_)) << "a stopped poller must not keep waiting for events";
  expect_next_read_gets_again(s, server, "no events after the loop ran again");
}

TEST_F(PollerTest, StopFromAnotherThreadWakesABlockedRun) {
  // Stops once the loop is running; whether it is blocked in its wait by then or
  // about to be, only the wake-up can end the run.
  std::promise<void> running;
  poller_.post([&] { running.set_value(); });
  std::thread stopper([&] {
    running.get_future().wait();
    poller_.stop();
  });
  EXPECT_TRUE(run_returns_by_itself(poller_)) << "stop() from another thread did not wake the loop";
  stopper.join();
}

TEST_F(PollerTest, PostFromAnotherThreadRunsOnTheLoopThread) {
  std::thread::id ran_on;
  std::thread poster([&] {
    poller_.post([&] {
      ran_on = std::this_thread::get_id();
      poller_.stop();
    });
  });
  EXPECT_TRUE(run_returns_by_itself(poller_)) << "the posted function never ran";
  poster.join();
  EXPECT_EQ(ran_on, std::this_thread::get_id());
}

Task<void> read_then_stop(Socket& s, char* buf, std::size_t size, Poller& poller, Outcome& out) {
  out.result = co_await s.read_some(buf, size);
  poller.stop();
}

// A session that stops the poller runs inside the loop's turn: the stop must end
// the run, and what it closed must still complete.
TEST_F(PollerTest, StopFromInsideACompletionEndsTheRunAfterTheQueueRuns) {
  tcp::socket server(ioc_);
  tcp::socket other_server(ioc_);
  Socket s = connect(server);
  Socket other = connect(other_server);
  settle();
  char buf[8] = {};
  char other_buf[8] = {};
  Outcome r;
  Outcome parked;
  start(read_then_stop(s, buf, sizeof buf, poller_, r), r);
  start(read_into(other, other_buf, sizeof other_buf, parked), parked);
  ASSERT_FALSE(r.done) << "nothing to read yet: the read parks";
  asio::write(server, asio::buffer("x", 1));
  ASSERT_TRUE(run_until([&] { return r.done; }));
  // As a worker's shutdown does: the stop comes with closes whose completions are queued.
  other.cancel();
  EXPECT_TRUE(run_returns_by_itself(poller_));
  EXPECT_EQ(std::string(buf, r.result.bytes), "x");
  ASSERT_TRUE(parked.done) << "a completion queued before the stop took effect was dropped";
  EXPECT_EQ(parked.result.ec, asio::error::operation_aborted);
}

// ---------------------------------------------------------------- timers

TEST_F(PollerTest, TimersFireInExpiryOrderWhileRunBlocks) {
  Timer late(poller_);
  Timer early(poller_);
  Timer middle(poller_);
  std::vector<std::string> fired;
  const auto now = Clock::now();
  late.expires_at(now + 60ms);
  early.expires_at(now + 20ms);
  middle.expires_at(now + 40ms);
  late.async_wait([&](const error_code& ec) {
    fired.push_back(ec ? "late:" + ec.message() : "late");
    poller_.stop();
  });
  early.async_wait([&](const error_code& ec) { fired.push_back(ec ? "early:" + ec.message() : "early"); });
  middle.async_wait([&](const error_code& ec) { fired.push_back(ec ? "middle:" + ec.message() : "middle"); });
  // Nothing but the timers can end this run: the blocking wait must wake for them.
  ASSERT_TRUE(run_returns_by_itself(poller_));
  EXPECT_EQ(fired, (std::vector<std::string>{"early", "middle", "late"}));
  EXPECT_GE(Clock::now() - now, 60ms) << "a timer fired before its expiry";
}

TEST_F(PollerTest, CancelCompletesAWaitWithOperationAbortedFromTheQueue) {
  Timer t(poller_);
  t.expires_after(1h);
  int calls = 0;
  error_code got;
  t.async_wait([&](const error_code& ec) {
    ++calls;
    got = ec;
  });
  EXPECT_TRUE(t.pending());
  EXPECT_EQ(t.cancel(), 1u);
  EXPECT_FALSE(t.pending());
  EXPECT_EQ(calls, 0) << "the handler ran on the canceller's stack";
  settle();
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(got, asio::error::operation_aborted);
  EXPECT_EQ(t.cancel(), 0u) << "nothing left to cancel";
}

TEST_F(PollerTest, NewExpiryAbortsThePendingWaitAndTheNewWaitFires) {
  Timer t(poller_);
  t.expires_after(1h);
  std::vector<error_code> results;
  t.async_wait([&](const error_code& ec) { results.push_back(ec); });
  t.expires_after(10ms);
  t.async_wait([&](const error_code& ec) { results.push_back(ec); });
  ASSERT_TRUE(run_until([&] { return results.size() == 2; }));
  EXPECT_EQ(results[0], asio::error::operation_aborted);
  EXPECT_FALSE(results[1]) << results[1].message();
}

TEST_F(PollerTest, DestroyedTimerNeverCallsItsHandlerAndLeavesTheOthersFiring) {
  bool destroyed_fired = false;
  bool other_fired = false;
  Timer other(poller_);
  {
    std::vector<std::unique_ptr<Timer>> many;
    for (int i = 0; i < 16; ++i) {
      many.push_back(std::make_unique<Timer>(poller_));
      many.back()->expires_after(std::chrono::milliseconds(1 + i));
      many.back()->async_wait([&](const error_code&) { destroyed_fired = true; });
    }
    other.expires_after(20ms);
    other.async_wait([&](const error_code& ec) { other_fired = !ec; });
  }
  ASSERT_TRUE(run_until([&] { return other_fired; }));
  EXPECT_FALSE(destroyed_fired);
}

TEST_F(PollerTest, HandlerThatRearmsItsOwnTimerFiresAgain) {
  Timer t(poller_);
  int fired = 0;
  std::function<void(const error_code&)> again = [&](const error_code& ec) {
    if (ec) return;
    if (++fired < 3) {
      t.expires_after(1ms);
      t.async_wait(again);
    }
  };
  t.expires_after(1ms);
  t.async_wait(again);
  ASSERT_TRUE(run_until([&] { return fired == 3; }));
  EXPECT_FALSE(t.pending());
}

struct FlagOp final : IoOp {
  bool performed = false;
  int completions = 0;
  bool perform(Socket&) override {
    performed = true;
    return true;
  }
  void complete() override { ++completions; }
};

TEST_F(PollerTest, DeferCompletesFromTheQueueNotTheCaller) {
  FlagOp op;
  poller_.defer(&op);
  EXPECT_EQ(op.completions, 0);
  ASSERT_TRUE(run_until([&] { return op.completions > 0; }));
  EXPECT_EQ(op.completions, 1);
  EXPECT_FALSE(op.performed);
}

TEST_F(PollerTest, ListeningSocketAcceptsAfterItsReadEdge) {
  tcp::acceptor a(ioc_, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  const auto ep = a.local_endpoint();
  a.non_blocking(true);
  error_code ec;
  Socket listen(poller_, a.release(), ec);
  ASSERT_FALSE(ec) << ec.message();

  sockaddr_storage peer{};
  EXPECT_EQ(listen.accept(peer, ec), -1);
  EXPECT_EQ(ec, asio::error::would_block);
  Outcome w;
  start(wait_for_bytes(listen, w), w);
  settle();
  ASSERT_FALSE(w.done);

  tcp::socket c(ioc_);
  c.connect(ep);
  ASSERT_TRUE(run_until([&] { return w.done; }));
  const int fd = listen.accept(peer, ec);
  ASSERT_GE(fd, 0) << ec.message();
  EXPECT_EQ(peer_address(peer), "127.0.0.1");
  ::close(fd);
  EXPECT_EQ(listen.accept(peer, ec), -1);
  EXPECT_EQ(ec, asio::error::would_block);
  EXPECT_FALSE(listen.maybe_readable());
}

TEST(PollerPeerAddressTest, FormatsIpv4AndIpv6AndNothingElse) {
  sockaddr_storage sa{};
  auto& in = reinterpret_cast<sockaddr_in&>(sa);
  in.sin_family = AF_INET;
  in.sin_addr.s_addr = htonl(0x0a000102);
  EXPECT_EQ(peer_address(sa), "10.0.1.2");
  sockaddr_storage sa6{};
  auto& in6 = reinterpret_cast<sockaddr_in6&>(sa6);
  in6.sin6_family = AF_INET6;
  in6.sin6_addr = in6addr_loopback;
  EXPECT_EQ(peer_address(sa6), "::1");
  sockaddr_storage none{};
  EXPECT_EQ(peer_address(none), "");
}

// ---------------------------------------------------------------- Task

Task<int> answer() { co_return 42; }

Task<void> await_answer(int& out) { out = co_await answer(); }

TEST(TaskTest, ReturnsItsValueThroughCoAwait) {
  int got = 0;
  Outcome o;
  start(await_answer(got), o);
  ASSERT_TRUE(o.done) << "nothing suspends: the task completes inside spawn()";
  EXPECT_FALSE(o.error);
  EXPECT_EQ(got, 42);
}

Task<std::unique_ptr<std::string>> make_owned(std::string s) { co_return std::make_unique<std::string>(std::move(s)); }

Task<void> await_owned(std::string& out) {
  std::unique_ptr<std::string> p = co_await make_owned("move-only");
  out = *p;
}

TEST(TaskTest, ReturnsAMoveOnlyValue) {
  std::string got;
  Outcome o;
  start(await_owned(got), o);
  ASSERT_TRUE(o.done);
  EXPECT_FALSE(o.error);
  EXPECT_EQ(got, "move-only");
}

Task<void> set_flag(bool& flag) {
  flag = true;
  co_return;
}

TEST(TaskTest, IsLazyUntilAwaited) {
  bool flag = false;
  {
    Task<void> t = set_flag(flag);
    EXPECT_FALSE(flag) << "a task starts only when awaited";
  }  // destroyed without ever running
  EXPECT_FALSE(flag);
  Outcome o;
  start(set_flag(flag), o);
  EXPECT_TRUE(o.done);
  EXPECT_TRUE(flag);
}

Task<int> throws_now() {
  throw std::runtime_error("boom");
  co_return 0;
}

Task<void> catch_it(std::string& caught, int& value) {
  try {
    value = co_await throws_now();
  } catch (const std::runtime_error& e) {
    caught = e.what();
  }
}

TEST(TaskTest, ExceptionPropagatesToTheAwaitingCoroutine) {
  std::string caught;
  int value = -1;
  Outcome o;
  start(catch_it(caught, value), o);
  ASSERT_TRUE(o.done);
  EXPECT_FALSE(o.error) << "the awaiting coroutine handled it";
  EXPECT_EQ(caught, "boom");
  EXPECT_EQ(value, -1);
}

Task<int> nested_thrower() { co_return co_await throws_now() + 1; }

Task<void> rethrows() { (void)co_await nested_thrower(); }

TEST(TaskTest, SpawnDoneReceivesTheExceptionThroughNestedTasks) {
  Outcome o;
  start(rethrows(), o);
  ASSERT_TRUE(o.done);
  ASSERT_TRUE(o.error);
  try {
    std::rethrow_exception(o.error);
    FAIL() << "no exception";
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(), "boom");
  }
}

TEST(TaskTest, SpawnDoneGetsNullWhenTheTaskSucceeds) {
  bool flag = false;
  int calls = 0;
  std::exception_ptr err = std::make_exception_ptr(std::logic_error("not replaced"));
  spawn(set_flag(flag), [&](std::exception_ptr e) {
    ++calls;
    err = e;
  });
  EXPECT_EQ(calls, 1);
  EXPECT_FALSE(err);
  EXPECT_TRUE(flag);
}

// A task that suspends on a socket, returns a value and then throws: the value and
// the exception both travel from a readiness event, not from spawn()'s call.
Task<std::size_t> read_count(Socket& s, char* buf, std::size_t size) {
  const IoResult r = co_await s.read_some(buf, size);
  if (r.ec) throw boost::system::system_error(r.ec);
  co_return r.bytes;
}

Task<void> read_twice_then_fail(Socket& s, std::size_t& first) {
  char buf[16];
  first = co_await read_count(s, buf, sizeof buf);
  (void)co_await read_count(s, buf, sizeof buf);
}

using TaskSocketTest = PollerFixture;

TEST_F(TaskSocketTest, ValueAndExceptionArriveAfterSuspending) {
  tcp::socket server(ioc_);
  Socket s = connect(server);
  std::size_t first = 0;
  Outcome o;
  start(read_twice_then_fail(s, first), o);
  settle();
  ASSERT_FALSE(o.done);
  asio::write(server, asio::buffer("1234567", 7));
  ASSERT_TRUE(run_until([&] { return first == 7; }));
  EXPECT_FALSE(o.done);
  server.shutdown(tcp::socket::shutdown_send);
  ASSERT_TRUE(run_until([&] { return o.done; }));
  ASSERT_TRUE(o.error);
  try {
    std::rethrow_exception(o.error);
  } catch (const boost::system::system_error& e) {
    EXPECT_EQ(e.code(), asio::error::eof);
  } catch (...) {
    ADD_FAILURE() << "unexpected exception type";
  }
}

// ---------------------------------------------------------------- lazily watched sockets

// Whether `fd` is in the epoll set `ep`, as the kernel lists it in /proc/self/fdinfo.
bool in_epoll_set(int ep, int fd) {
  std::ifstream info("/proc/self/fdinfo/" + std::to_string(ep));
  std::string line;
  const std::string tag = "tfd:";
  while (std::getline(info, line)) {
    if (line.rfind(tag, 0) != 0) continue;
    std::istringstream fields(line.substr(tag.size()));
    int listed = -1;
    fields >> listed;
    if (listed == fd) return true;
  }
  return false;
}

using LazySocketTest = PollerFixture;

TEST_F(LazySocketTest, ServedWithoutWaitingNeverJoinsTheEpollSet) {
  tcp::socket server(ioc_);
  Socket s = connect_lazy(server);
  asio::write(server, asio::buffer("request", 7));
  ASSERT_TRUE(kernel_ready(s.native_handle(), POLLIN));
  char buf[64] = {};
  Outcome read;
  start(read_into(s, buf, sizeof buf, read), read);
  EXPECT_TRUE(read.done) << "queued bytes are read at once, without an event";
  EXPECT_EQ(read.result.bytes, 7u);
  Outcome write;
  start(write_from(s, "response", 8, nullptr, 0, write), write);
  EXPECT_TRUE(write.done);
  EXPECT_FALSE(write.result.ec) << write.result.ec.message();
  EXPECT_FALSE(in_epoll_set(poller_.native_handle(), s.native_handle()));
  char got[8] = {};
  asio::read(server, asio::buffer(got, 8));
  EXPECT_EQ(std::string(got, 8), "response");
}

TEST_F(LazySocketTest, JoinsTheEpollSetWhenAReadHasToWait) {
  tcp::socket server(ioc_);
  Socket s = connect_lazy(server);
  char buf[64] = {};
  Outcome read;
  start(read_into(s, buf, sizeof buf, read), read);
  settle();
  EXPECT_FALSE(read.done) << "nothing was sent yet";
  EXPECT_TRUE(in_epoll_set(poller_.native_handle(), s.native_handle()));
  asio::write(server, asio::buffer("late", 4));
  ASSERT_TRUE(run_until([&] { return read.done; }, 3s)) << "the bytes sent after the read parked never arrived";
  EXPECT_FALSE(read.result.ec) << read.result.ec.message();
  EXPECT_EQ(std::string(buf, read.result.bytes), "late");
}

TEST_F(LazySocketTest, DataAndFinBeforeTheFirstWaitEndWithEof) {
  tcp::socket server(ioc_);
  Socket s = connect_lazy(server);
  asio::write(server, asio::buffer("bye", 3));
  server.shutdown(tcp::socket::shutdown_send);
  ASSERT_TRUE(kernel_ready(s.native_handle(), POLLRDHUP));
  char buf[64] = {};
  Outcome first;
  start(read_into(s, buf, sizeof buf, first), first);
  ASSERT_TRUE(first.done);
  EXPECT_EQ(first.result.bytes, 3u);
  expect_next_read_ends_with_eof(s, "the FIN queued before the socket was watched was lost");
}

TEST_F(LazySocketTest, IdleIntactChecksTheKernelWhileNoEventCanHaveArrived) {
  tcp::socket server(ioc_);
  Socket s = connect_lazy(server);
  asio::write(server, asio::buffer("x", 1));
  ASSERT_TRUE(kernel_ready(s.native_handle(), POLLIN));
  char buf[64] = {};
  Outcome read;
  start(read_into(s, buf, sizeof buf, read), read);
  ASSERT_TRUE(read.done);
  EXPECT_FALSE(s.maybe_readable()) << "a short read drains the queue";
  EXPECT_TRUE(s.idle_intact());
  server.close();
  ASSERT_TRUE(kernel_ready(s.native_handle(), POLLRDHUP));
  EXPECT_FALSE(s.idle_intact()) << "an unwatched socket saw no event for the FIN: only the kernel can tell";
}

TEST_F(LazySocketTest, WriteThatFillsTheBufferWaitsAndFinishes) {
  tcp::socket server(ioc_);
  Socket s = connect_lazy(server);
  const std::vector<char> data = pattern(16 * 1024 * 1024, 7);
  Outcome write;
  start(write_from(s, data.data(), data.size(), nullptr, 0, write), write);
  EXPECT_FALSE(write.done) << "16 MiB should not fit the socket buffers";
  EXPECT_TRUE(in_epoll_set(poller_.native_handle(), s.native_handle()));
  std::vector<char> got(data.size());
  std::size_t have = 0;
  server.non_blocking(true);
  ASSERT_TRUE(run_until([&] {
    error_code ec;
    have += server.read_some(asio::buffer(got.data() + have, got.size() - have), ec);
    return write.done && have == got.size();
  }, 10s));
  EXPECT_FALSE(write.result.ec) << write.result.ec.message();
  EXPECT_EQ(got, data);
}

// A reader that borrows its buffer per read (the TCP pump) must get it back when the
// socket turns out empty, not have it held by a parked read.
TEST_F(SocketTest, TryReadOnAnEmptySocketCompletesWithWouldBlockInsteadOfParking) {
  tcp::socket server(ioc_);
  Socket s = connect(server);
  char buf[16];
  Outcome r;
  start(try_read_into(s, buf, sizeof buf, r), r);
  ASSERT_TRUE(r.done);
  EXPECT_EQ(r.result.ec, asio::error::would_block) << r.result.ec.message();
  asio::write(server, asio::buffer("x", 1));
  ASSERT_TRUE(run_until([&] { return s.maybe_readable(); }));
  Outcome again;
  start(try_read_into(s, buf, sizeof buf, again), again);
  ASSERT_TRUE(again.done);
  EXPECT_FALSE(again.result.ec) << again.result.ec.message();
  EXPECT_EQ(again.result.bytes, 1u);
}

// ---------------------------------------------------------------- batched I/O (io_uring)

// The same socket operations with the poller's batched I/O on: a step goes to the
// kernel when the turn ends, so nothing completes inside start(); settle() turns
// the loop once.
class BatchedSocketTest : public PollerFixture {
 protected:
  void SetUp() override {
    std::string why;
    if (!Poller::batching_available(why)) GTEST_SKIP() << "io_uring unavailable here: " << why;
    // Every turn batches, however few sockets it wakes for.
    ASSERT_TRUE(poller_.enable_batching(why, 0)) << why;
    ASSERT_TRUE(poller_.batching());
  }
};

TEST_F(BatchedSocketTest, ReadAndWriteCompleteWhenTheTurnEndsWithTheSameResults) {
  tcp::socket server(ioc_);
  Socket s = connect(server);
  asio::write(server, asio::buffer("request", 7));
  ASSERT_TRUE(run_until([&] { return s.maybe_readable(); }));
  char buf[64] = {};
  Outcome read;
  start(read_into(s, buf, sizeof buf, read), read);
  EXPECT_FALSE(read.done) << "a batched read waits for the end of the turn";
  settle();
  ASSERT_TRUE(read.done);
  EXPECT_FALSE(read.result.ec) << read.result.ec.message();
  EXPECT_EQ(std::string(buf, read.result.bytes), "request");
  EXPECT_FALSE(s.maybe_readable()) << "a short batched read drains the queue, as a plain one does";

  Outcome write;
  start(write_from(s, "head|", 5, "body", 4, write), write);
  EXPECT_FALSE(write.done);
  settle();
  ASSERT_TRUE(write.done);
  EXPECT_FALSE(write.result.ec) << write.result.ec.message();
  EXPECT_EQ(write.result.bytes, 9u);
  char got[9];
  asio::read(server, asio::buffer(got));
  EXPECT_EQ(std::string(got, 9), "head|body");
}

// A just-accepted socket is outside the epoll set and its readiness is a guess: the
// read is tried at once (a miss hands the buffer straight back), not batched.
TEST_F(BatchedSocketTest, ReadOnASocketOutsideTheEpollSetIsTriedAtOnce) {
  tcp::socket server(ioc_);
  Socket s = connect_lazy(server);
  char buf[16];
  Outcome empty;
  start(try_read_into(s, buf, sizeof buf, empty), empty);
  ASSERT_TRUE(empty.done);
  EXPECT_EQ(empty.result.ec, asio::error::would_block) << empty.result.ec.message();

  tcp::socket server2(ioc_);
  Socket s2 = connect_lazy(server2);
  asio::write(server2, asio::buffer("request", 7));
  ASSERT_TRUE(kernel_ready(s2.native_handle(), POLLIN));
  Outcome full;
  start(read_into(s2, buf, sizeof buf, full), full);
  ASSERT_TRUE(full.done);
  EXPECT_EQ(std::string(buf, full.result.bytes), "request");
  EXPECT_FALSE(in_epoll_set(poller_.native_handle(), s2.native_handle()));
}

// A read that fills its buffer keeps the socket readable; when the next (batched)
// step then finds it empty, a parking read waits for the edge and a trying one ends.
TEST_F(BatchedSocketTest, EmptyStepParksAReadOrEndsATry) {
  tcp::socket server(ioc_);
  Socket s = connect(server);
  asio::write(server, asio::buffer("0123456789abcdef", 16));
  ASSERT_TRUE(kernel_ready(s.native_handle(), POLLIN));
  ASSERT_TRUE(run_until([&] { return s.maybe_readable(); }));
  char buf[16];
  Outcome full;
  start(read_into(s, buf, sizeof buf, full), full);
  ASSERT_TRUE(run_until([&] { return full.done; }, 3s));
  ASSERT_EQ(full.result.bytes, 16u);
  ASSERT_TRUE(s.maybe_readable()) << "a full read proves nothing about what is left";

  Outcome tried;
  start(try_read_into(s, buf, sizeof buf, tried), tried);
  settle();
  ASSERT_TRUE(tried.done) << "the EAGAIN step must end the operation, not park it with the buffer";
  EXPECT_EQ(tried.result.ec, asio::error::would_block) << tried.result.ec.message();
  EXPECT_FALSE(s.maybe_readable());

  Outcome parked;
  start(read_into(s, buf, sizeof buf, parked), parked);
  settle();
  EXPECT_FALSE(parked.done) << "nothing was sent yet";
  asio::write(server, asio::buffer("late", 4));
  ASSERT_TRUE(run_until([&] { return parked.done; }, 3s));
  EXPECT_FALSE(parked.result.ec) << parked.result.ec.message();
  EXPECT_EQ(std::string(buf, parked.result.bytes), "late");
}

TEST_F(BatchedSocketTest, EndOfStreamAndResetArriveThroughTheRing) {
  tcp::socket server(ioc_);
  Socket s = connect(server);
  asio::write(server, asio::buffer("bye", 3));
  server.shutdown(tcp::socket::shutdown_send);
  ASSERT_TRUE(kernel_ready(s.native_handle(), POLLRDHUP));
  char buf[64] = {};
  Outcome first;
  start(read_into(s, buf, sizeof buf, first), first);
  ASSERT_TRUE(run_until([&] { return first.done; }, 3s));
  EXPECT_EQ(first.result.bytes, 3u);
  expect_next_read_ends_with_eof(s, "the FIN was lost on the batched path");

  tcp::socket server2(ioc_);
  Socket s2 = connect(server2);
  Outcome parked;
  start(read_into(s2, buf, sizeof buf, parked), parked);
  settle();
  ASSERT_FALSE(parked.done);
  server2.set_option(asio::socket_base::linger(true, 0));
  server2.close();
  ASSERT_TRUE(run_until([&] { return parked.done; }, 3s));
  EXPECT_EQ(parked.result.ec, asio::error::connection_reset) << parked.result.ec.message();
}

TEST_F(BatchedSocketTest, LargeWriteOfTwoBuffersGoesOnAfterPartialStepsAndArrivesInOrder) {
  tcp::socket server(ioc_);
  Socket s = connect(server);
  const std::vector<char> a = pattern((3 << 20) + 7, 1);
  const std::vector<char> b = pattern((5 << 20) + 3, 2);
  Outcome w;
  start(write_from(s, a.data(), a.size(), b.data(), b.size(), w), w);
  settle();
  EXPECT_FALSE(w.done) << "8 MiB to a peer that does not read should hit EAGAIN";
  std::vector<char> got;
  ASSERT_TRUE(drain_peer(poller_, server, got, a.size() + b.size())) << "received " << got.size();
  ASSERT_TRUE(run_until([&] { return w.done; }, 3s));
  EXPECT_FALSE(w.result.ec) << w.result.ec.message();
  EXPECT_EQ(w.result.bytes, a.size() + b.size());
  std::vector<char> expected = a;
  expected.insert(expected.end(), b.begin(), b.end());
  ASSERT_EQ(got.size(), expected.size());
  EXPECT_TRUE(got == expected) << "bytes arrived out of order or corrupted";
}

// Below the threshold a turn saves no syscall by batching (one socket's read and
// write would take two io_uring_enter calls), so its I/O goes through plain syscalls.
TEST_F(PollerTest, TurnsThatWakeForFewSocketsUsePlainSyscalls) {
  std::string why;
  if (!Poller::batching_available(why)) GTEST_SKIP() << "io_uring unavailable here: " << why;
  ASSERT_TRUE(poller_.enable_batching(why, 2)) << why;
  tcp::socket server_a(ioc_), server_b(ioc_);
  Socket a = connect(server_a);
  Socket b = connect(server_b);
  settle();

  asio::write(server_a, asio::buffer("one", 3));
  ASSERT_TRUE(kernel_ready(a.native_handle(), POLLIN));
  settle();  // a turn that woke for one socket
  ASSERT_TRUE(a.maybe_readable());
  char buf[16];
  Outcome single;
  start(read_into(a, buf, sizeof buf, single), single);
  EXPECT_TRUE(single.done) << "after a one-socket turn the read is a plain recv, done at once";
  EXPECT_EQ(single.result.bytes, 3u);

  asio::write(server_a, asio::buffer("two", 3));
  asio::write(server_b, asio::buffer("two", 3));
  ASSERT_TRUE(kernel_ready(a.native_handle(), POLLIN));
  ASSERT_TRUE(kernel_ready(b.native_handle(), POLLIN));
  settle();  // a turn that woke for both
  ASSERT_TRUE(a.maybe_readable() && b.maybe_readable());
  Outcome batched;
  start(read_into(b, buf, sizeof buf, batched), batched);
  EXPECT_FALSE(batched.done) << "after a two-socket turn the read joins the batch";
  settle();
  ASSERT_TRUE(batched.done);
  EXPECT_EQ(std::string(buf, batched.result.bytes), "two");
}

// A socket closed while its write waits in the unsubmitted batch frees its descriptor
// number, and the next socket opened in the same turn gets it. The batched write must
// not land on that new connection.
TEST_F(BatchedSocketTest, WriteQueuedForASocketClosedInTheSameTurnNeverReachesTheDescriptorsNextOwner) {
  tcp::socket server_a(ioc_);
  Socket a = connect(server_a);
  const int fd = a.native_handle();
  Outcome w;
  start(write_from(a, "secret", 6, nullptr, 0, w), w);
  ASSERT_FALSE(w.done);
  a.close();

  tcp::socket server_b(ioc_);
  Socket b = connect(server_b);
  ASSERT_EQ(b.native_handle(), fd) << "the kernel hands out the lowest free descriptor";
  ASSERT_TRUE(run_until([&] { return w.done; }, 3s));
  EXPECT_EQ(w.result.ec, asio::error::operation_aborted) << w.result.ec.message();

  Outcome hello;
  start(write_from(b, "hello", 5, nullptr, 0, hello), hello);
  ASSERT_TRUE(run_until([&] { return hello.done; }, 3s));
  char got[5] = {};
  asio::read(server_b, asio::buffer(got));
  EXPECT_EQ(std::string(got, 5), "hello") << "the closed socket's write went to the new connection";
  server_a.non_blocking(true);
  error_code ec;
  char stray[16];
  const std::size_t n = server_a.read_some(asio::buffer(stray), ec);
  EXPECT_EQ(n, 0u) << "the closed socket's write was sent after all";
}

TEST_F(BatchedSocketTest, CloseAbortsAQueuedReadAndAParkedOne) {
  tcp::socket server(ioc_);
  Socket s = connect(server);
  asio::write(server, asio::buffer("x", 1));
  ASSERT_TRUE(run_until([&] { return s.maybe_readable(); }));
  char buf[8];
  Outcome queued;
  start(read_into(s, buf, sizeof buf, queued), queued);
  ASSERT_FALSE(queued.done);
  s.close();
  ASSERT_TRUE(run_until([&] { return queued.done; }, 3s));
  EXPECT_EQ(queued.result.ec, asio::error::operation_aborted) << queued.result.ec.message();

  tcp::socket server2(ioc_);
  Socket s2 = connect(server2);
  Outcome parked;
  start(read_into(s2, buf, sizeof buf, parked), parked);
  settle();
  ASSERT_FALSE(parked.done);
  s2.close();
  ASSERT_TRUE(run_until([&] { return parked.done; }, 3s));
  EXPECT_EQ(parked.result.ec, asio::error::operation_aborted) << parked.result.ec.message();
}

// More steps in one turn than the ring has entries: the full queue is submitted
// early and every operation still completes with its own bytes.
TEST_F(BatchedSocketTest, MoreStepsThanRingEntriesInOneTurnAllComplete) {
  constexpr int kPairs = 300;
  std::vector<tcp::socket> servers;
  std::vector<Socket> sockets;
  servers.reserve(kPairs);
  sockets.reserve(kPairs);
  for (int i = 0; i < kPairs; ++i) {
    servers.emplace_back(ioc_);
    sockets.push_back(connect(servers.back()));
  }
  std::vector<std::string> messages(kPairs);
  std::vector<Outcome> writes(kPairs);
  for (int i = 0; i < kPairs; ++i) {
    messages[i] = "message " + std::to_string(i);
    start(write_from(sockets[i], messages[i].data(), messages[i].size(), nullptr, 0, writes[i]), writes[i]);
  }
  settle();
  for (int i = 0; i < kPairs; ++i) {
    ASSERT_TRUE(writes[i].done) << i;
    ASSERT_FALSE(writes[i].result.ec) << i << ": " << writes[i].result.ec.message();
    std::string got(messages[i].size(), '\0');
    asio::read(servers[i], asio::buffer(got));
    EXPECT_EQ(got, messages[i]);
  }
}

TEST(LoopClockTest, OneReadingPerBatchAndLiveOutside) {
  const auto before = LoopClock::now();
  {
    const LoopClock::Batch batch;
    const auto first = LoopClock::now();
    EXPECT_GE(first, before);
    // Wait until the real clock has moved on: the batch time must not follow it.
    while (std::chrono::steady_clock::now() == first) {
    }
    EXPECT_EQ(LoopClock::now(), first);
    {
      const LoopClock::Batch nested;  // a nested batch takes a fresh reading, then restores
      EXPECT_GT(LoopClock::now(), first);
    }
    EXPECT_TRUE(LoopClock::now() == first || LoopClock::now() > first);
  }
  const auto outside = LoopClock::now();
  while (std::chrono::steady_clock::now() == outside) {
  }
  EXPECT_GT(LoopClock::now(), outside);  // no batch: the clock is read each time
}

}  // namespace
}  // namespace drainproxy::proxy
