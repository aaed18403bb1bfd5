#include "proxy/upstream_pool.hpp"

#include <gtest/gtest.h>
#include <poll.h>

namespace drainproxy::proxy {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// Real loopback connections: the pool's stale check is a socket-level peek.
class UpstreamPoolTest : public ::testing::Test {
 protected:
  UpstreamPoolTest() : acceptor_(ioc_, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)) {}

  // Returns the client side; the server side is kept in `servers_`.
  tcp::socket connect() {
    tcp::socket c(ioc_);
    c.connect(acceptor_.local_endpoint());
    servers_.push_back(acceptor_.accept());
    return c;
  }

  asio::io_context ioc_;
  tcp::acceptor acceptor_;
  std::vector<tcp::socket> servers_;
};

TEST_F(UpstreamPoolTest, ReusesTheMostRecentConnectionFirst) {
  UpstreamPool pool(4, 10s);
  const auto now = Clock::now();
  tcp::socket a = connect();
  tcp::socket b = connect();
  const auto b_port = b.local_endpoint().port();
  pool.put(std::move(a), now);
  pool.put(std::move(b), now);
  auto got = pool.take(now);
  ASSERT_TRUE(got);
  EXPECT_EQ(got->local_endpoint().port(), b_port);
  EXPECT_EQ(pool.size(), 1u);
}

// Waits (bounded) until the peer's FIN or bytes have reached `s`.
bool wait_readable(tcp::socket& s) {
  pollfd p{s.native_handle(), POLLIN, 0};
  return ::poll(&p, 1, 2000) == 1;
}

TEST_F(UpstreamPoolTest, SkipsConnectionsTheAppClosedOrWroteTo) {
  UpstreamPool pool(4, 10s);
  const auto now = Clock::now();
  tcp::socket healthy = connect();
  tcp::socket closed = connect();
  tcp::socket chatty = connect();
  const auto healthy_port = healthy.local_endpoint().port();
  servers_[1].close();
  asio::write(servers_[2], asio::buffer("HTTP/1.1 408\r\n", 14));
  ASSERT_TRUE(wait_readable(closed));
  ASSERT_TRUE(wait_readable(chatty));
  pool.put(std::move(healthy), now);
  pool.put(std::move(closed), now);
  pool.put(std::move(chatty), now);
  auto got = pool.take(now + 1ms);
  ASSERT_TRUE(got);
  EXPECT_EQ(got->local_endpoint().port(), healthy_port) << "only the healthy connection is handed out";
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
