#include "admin/drain_access.hpp"

#include <gtest/gtest.h>

namespace drainproxy::admin {
namespace {

asio::ip::address addr(const char* s) { return asio::ip::make_address(s); }

TEST(DrainAccessTest, LoopbackIsAllowedWithoutToken) {
  for (const char* a : {"127.0.0.1", "127.1.2.3", "::1", "::ffff:127.0.0.1"}) {
    EXPECT_TRUE(check_drain_access(addr(a), "", "").allowed) << a;
    EXPECT_TRUE(check_drain_access(addr(a), "", "secret").allowed) << a;
  }
}

TEST(DrainAccessTest, RemoteIsRefusedWhenNoTokenIsConfigured) {
  const auto d = check_drain_access(addr("10.1.2.3"), "Bearer anything", "");
  EXPECT_FALSE(d.allowed);
  EXPECT_NE(d.reason.find("--drain-token"), std::string::npos);
}

TEST(DrainAccessTest, RemoteNeedsTheExactBearerToken) {
  EXPECT_TRUE(check_drain_access(addr("10.1.2.3"), "Bearer secret", "secret").allowed);
  EXPECT_TRUE(check_drain_access(addr("fd00::1"), "Bearer secret", "secret").allowed);
  EXPECT_FALSE(check_drain_access(addr("10.1.2.3"), "", "secret").allowed);
  EXPECT_FALSE(check_drain_access(addr("10.1.2.3"), "Bearer secre", "secret").allowed);
  EXPECT_FALSE(check_drain_access(addr("10.1.2.3"), "Bearer secrets", "secret").allowed);
  EXPECT_FALSE(check_drain_access(addr("10.1.2.3"), "Basic secret", "secret").allowed);
  EXPECT_FALSE(check_drain_access(addr("10.1.2.3"), "Bearer ", "secret").allowed);
  EXPECT_FALSE(check_drain_access(addr("::ffff:10.1.2.3"), "", "secret").allowed);
}

TEST(DrainAccessTest, LoopbackDetection) {
  EXPECT_TRUE(is_loopback(addr("127.255.255.254")));
  EXPECT_FALSE(is_loopback(addr("128.0.0.1")));
  EXPECT_FALSE(is_loopback(addr("::2")));
  EXPECT_FALSE(is_loopback(addr("0.0.0.0")));
}

}  // namespace
}  // namespace drainproxy::admin
