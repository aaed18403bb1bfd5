#include "proxy/worker.hpp"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <spdlog/sinks/null_sink.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

#include <future>

#include "proxy/socket_options.hpp"

namespace drainproxy::proxy {
namespace {

using namespace std::chrono_literals;

struct NotDraining final : drain::DrainDecision {
  bool draining() const override { return false; }
};

// errno of a blocking connect to 127.0.0.1:port, 0 when it connected.
int connect_errno(unsigned short port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(port);
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const int rc = ::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa);
  const int err = rc == 0 ? 0 : errno;
  ::close(fd);
  return err;
}

class WorkerTest : public ::testing::Test {
 protected:
  WorkerTest() : limiter_(100) {
    if (!spdlog::get("proxy"))
      spdlog::register_logger(std::make_shared<spdlog::logger>("proxy", std::make_shared<spdlog::sinks::null_sink_mt>()));
    route_.name = "test";
    route_.mode = RouteMode::Tcp;
    route_.upstream = tcp::endpoint(asio::ip::make_address("127.0.0.1"), 1);
    tcp::acceptor a = open_reuseport_acceptor(setup_, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    port_ = a.local_endpoint().port();
    worker_.add_listener(
        std::make_unique<Listener>(worker_.poller(), std::move(a), route_, limiter_, stats_, drain_, [] {}));
  }
  ~WorkerTest() override { worker_.shutdown(2000ms); }

  asio::io_context setup_;  // opens the listening socket only; never run
  NotDraining drain_;
  Route route_;
  ConnectionLimiter limiter_;
  ListenerStats stats_;
  Worker worker_{0, drain_};
  unsigned short port_ = 0;
};

TEST_F(WorkerTest, StopAcceptingIsReportedOnlyOnceTheListenerIsClosed) {
  worker_.start();
  // Keep the worker busy, as a loaded worker would be when the drain starts.
  std::promise<void> release;
  auto released = release.get_future().share();
  worker_.poller().post([released] { released.wait(); });

  auto closed = worker_.post_stop_accepting();
  EXPECT_EQ(closed.wait_for(100ms), std::future_status::timeout)
      << "reported closed while the worker had not run the close yet";
  EXPECT_EQ(connect_errno(port_), 0) << "the listener is still open, so the kernel still completes handshakes";

  release.set_value();
  ASSERT_EQ(closed.wait_for(5s), std::future_status::ready);
  EXPECT_EQ(connect_errno(port_), ECONNREFUSED) << "once reported closed, new connections must be refused";
}

}  // namespace
}  // namespace drainproxy::proxy
