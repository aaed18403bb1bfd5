#include "proxy/upstream_pool.hpp"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

namespace drainproxy::proxy {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// Real loopback connections registered with a real poller: the pool's stale check
// reads what the poller's events said about each idle connection.
class UpstreamPoolTest : public ::testing::Test {
 protected:
  UpstreamPoolTest() : acceptor_(ioc_, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)) {}

  // Returns the client side; the server side is kept in `servers_`.
  Socket connect() {
    tcp::socket c(ioc_);
    c.connect(acceptor_.local_endpoint());
    servers_.push_back(acceptor_.accept());
    c.non_blocking(true);
    error_code ec;
    Socket s(poller_, c.release(), ec);
    EXPECT_FALSE(ec);
    return s;
  }

  static unsigned short local_port(const Socket& s) {
    sockaddr_in sa{};
    socklen_t len = sizeof sa;
    ::getsockname(s.native_handle(), reinterpret_cast<sockaddr*>(&sa), &len);
    return ntohs(sa.sin_port);
  }

  asio::io_context ioc_;
  Poller poller_;
  tcp::acceptor acceptor_;
  std::vector<tcp::socket> servers_;
};

TEST_F(UpstreamPoolTest, ReusesTheMostRecentConnectionFirst) {
  UpstreamPool pool(4, 10s);
  const auto now = Clock::now();
  Socket a = connect();
  Socket b = connect();
  const auto b_port = local_port(b);
  pool.put(std::move(a), now);
  pool.put(std::move(b), now);
  auto got = pool.take(now);
  ASSERT_TRUE(got);
  EXPECT_EQ(local_port(*got), b_port);
  EXPECT_EQ(pool.size(), 1u);
}

// Waits (bounded) until the peer's FIN or bytes have reached `s`.
bool wait_readable(const Socket& s) {
  pollfd p{s.native_handle(), POLLIN, 0};
  return ::poll(&p, 1, 2000) == 1;
}

TEST_F(UpstreamPoolTest, SkipsConnectionsTheAppClosedOrWroteTo) {
  UpstreamPool pool(4, 10s);
  const auto now = Clock::now();
  Socket healthy = connect();
  Socket closed = connect();
  Socket chatty = connect();
  const auto healthy_port = local_port(healthy);
  servers_[1].close();
  asio::write(servers_[2], asio::buffer("HTTP/1.1 408\r\n", 14));
  ASSERT_TRUE(wait_readable(closed));
  ASSERT_TRUE(wait_readable(chatty));
  // The worker's loop would have seen these events; here the test runs it.
  poller_.run_once(std::chrono::milliseconds(0));
  EXPECT_TRUE(closed.maybe_readable());
  EXPECT_TRUE(chatty.maybe_readable());
  EXPECT_FALSE(healthy.maybe_readable());
  pool.put(std::move(healthy), now);
  pool.put(std::move(closed), now);
  pool.put(std::move(chatty), now);
  auto got = pool.take(now + 1ms);
  ASSERT_TRUE(got);
  EXPECT_EQ(local_port(*got), healthy_port) << "only the healthy connection is handed out";
  EXPECT_EQ(pool.size(), 0u);
  EXPECT_FALSE(pool.take(now));
}

TEST_F(UpstreamPoolTest, ExpiresIdleConnectionsAndBoundsItsSize) {
  UpstreamPool pool(2, 100ms);
  const auto t0 = Clock::now();
  pool.put(connect(), t0);
  pool.put(connect(), t0 + 50ms);
  pool.put(connect(), t0 + 60ms);  // evicts the oldest
  EXPECT_EQ(pool.size(), 2u);
  pool.expire(t0 + 155ms);  // the one from t0+50ms is over 100ms old
  EXPECT_EQ(pool.size(), 1u);
  EXPECT_FALSE(pool.take(t0 + 200ms)) << "expired at take time too";
}

}  // namespace
}  // namespace drainproxy::proxy
