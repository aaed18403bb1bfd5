#include "proxy/stats.hpp"

#include <gtest/gtest.h>

namespace drainproxy::proxy {
namespace {

TEST(StatsTest, SnapshotSumsWorkersAndDerivesActive) {
  ListenerStats a, b;
  a.accepted.add(5);
  b.accepted.add(3);
  a.closed_for(CloseReason::Client).add(2);
  b.closed_for(CloseReason::DrainForced).add(1);
  b.closed_for(CloseReason::Overload).add(1);
  a.bytes_rx.add(100);
  b.bytes_tx.add(7);
  StatsSnapshot s;
  s.add(a);
  s.add(b);
  EXPECT_EQ(s.accepted, 8u);
  EXPECT_EQ(s.closed_total(), 4u);
  EXPECT_EQ(s.active(), 4u);
  EXPECT_EQ(s.closed_for(CloseReason::DrainForced), 1u);
  EXPECT_EQ(s.bytes_rx, 100u);
  EXPECT_EQ(s.bytes_tx, 7u);
}

TEST(StatsTest, ReasonNamesMatchTheMetricContract) {
  const char* expected[] = {"client", "upstream", "idle_timeout", "drain_idle", "drain_forced", "error", "overload"};
  for (std::size_t i = 0; i < kCloseReasonCount; ++i)
    EXPECT_STREQ(to_string(static_cast<CloseReason>(i)), expected[i]);
}

}  // namespace
}  // namespace drainproxy::proxy
