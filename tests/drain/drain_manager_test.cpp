#include "drain/drain_manager.hpp"

#include <gtest/gtest.h>

namespace drainproxy::drain {
namespace {

using namespace std::chrono_literals;

class ManualClock final : public Clock {
 public:
  time_point now() const override { return now_; }
  void advance(std::chrono::milliseconds d) { now_ += d; }

 private:
  time_point now_{std::chrono::seconds(1000)};
};

class DrainManagerTest : public ::testing::Test {
 protected:
  DrainManagerTest() : dm_(DrainTimings{2s, 10s, 1s}, clock_) {}
  void serve() { ASSERT_TRUE(dm_.set_upstream_healthy(true).changed); }

  ManualClock clock_;
  DrainManager dm_;
};

TEST_F(DrainManagerTest, StartsUntilFirstHealthyVerdict) {
  EXPECT_EQ(dm_.phase(), Phase::Starting);
  EXPECT_FALSE(dm_.set_upstream_healthy(false).changed);
  EXPECT_EQ(dm_.phase(), Phase::Starting);
  const Step s = dm_.set_upstream_healthy(true);
  EXPECT_TRUE(s.changed);
  EXPECT_EQ(s.from, Phase::Starting);
  EXPECT_EQ(s.to, Phase::Serving);
  // Health flapping later never moves the phase: readiness handles it.
  EXPECT_FALSE(dm_.set_upstream_healthy(false).changed);
  EXPECT_EQ(dm_.phase(), Phase::Serving);
}

TEST_F(DrainManagerTest, TriggerIsIdempotent) {
  serve();
  EXPECT_FALSE(dm_.draining());
  const Step s = dm_.start_drain(Trigger::Sigterm);
  EXPECT_TRUE(s.changed);
  EXPECT_EQ(s.to, Phase::Propagating);
  EXPECT_TRUE(dm_.draining());
  clock_.advance(1500ms);
  // A second trigger must not restart the propagation window.
  EXPECT_FALSE(dm_.start_drain(Trigger::Admin).changed);
  EXPECT_EQ(dm_.trigger(), Trigger::Sigterm);
  clock_.advance(500ms);
  EXPECT_EQ(dm_.advance(3).to, Phase::Draining);
}

TEST_F(DrainManagerTest, PropagatingKeepsServingForTheWholeDelayEvenWithoutConnections) {
  serve();
  dm_.start_drain(Trigger::Sigterm);
  clock_.advance(1999ms);
  EXPECT_FALSE(dm_.advance(0).changed);
  EXPECT_EQ(dm_.phase(), Phase::Propagating);
  clock_.advance(1ms);
  const Step s = dm_.advance(0);
  EXPECT_TRUE(s.changed);
  EXPECT_EQ(s.from, Phase::Propagating);
  EXPECT_EQ(s.to, Phase::Draining);
  EXPECT_TRUE(dm_.draining());
}

TEST_F(DrainManagerTest, StopsAsSoonAsTheLastConnectionCloses) {
  serve();
  dm_.start_drain(Trigger::Admin);
  clock_.advance(2s);
  dm_.advance(2);
  clock_.advance(3s);
  EXPECT_FALSE(dm_.advance(1).changed);
  const Step s = dm_.advance(0);
  EXPECT_EQ(s.to, Phase::Stopped);
  EXPECT_FALSE(dm_.forced());
  EXPECT_DOUBLE_EQ(dm_.drain_seconds(), 5.0);
  clock_.advance(10s);
  EXPECT_DOUBLE_EQ(dm_.drain_seconds(), 5.0) << "the duration freezes at stopped";
  EXPECT_FALSE(dm_.start_drain(Trigger::Sigterm).changed);
}

TEST_F(DrainManagerTest, ForceClosesAtTheDeadlineOnce) {
  serve();
  dm_.start_drain(Trigger::Sigterm);
  clock_.advance(2s);
  dm_.advance(1);
  clock_.advance(9999ms);
  EXPECT_FALSE(dm_.advance(1).force_close);
  clock_.advance(1ms);
  const Step s = dm_.advance(1);
  EXPECT_TRUE(s.force_close);
  EXPECT_FALSE(s.changed);
  EXPECT_TRUE(dm_.forced());
  EXPECT_FALSE(dm_.advance(1).force_close) << "force-close is asked for once";
  EXPECT_EQ(dm_.advance(0).to, Phase::Stopped);
}

TEST_F(DrainManagerTest, StopsAfterForceGraceEvenIfAConnectionLingers) {
  serve();
  dm_.start_drain(Trigger::Sigterm);
  clock_.advance(2s);
  dm_.advance(1);
  clock_.advance(10s);
  EXPECT_TRUE(dm_.advance(1).force_close);
  clock_.advance(999ms);
  EXPECT_FALSE(dm_.advance(1).changed);
  clock_.advance(1ms);
  EXPECT_EQ(dm_.advance(1).to, Phase::Stopped);
  EXPECT_DOUBLE_EQ(dm_.drain_seconds(), 13.0);
}

TEST_F(DrainManagerTest, DrainFromStartingIsAllowed) {
  EXPECT_TRUE(dm_.start_drain(Trigger::Sigint).changed);
  EXPECT_EQ(dm_.phase(), Phase::Propagating);
  EXPECT_FALSE(dm_.set_upstream_healthy(true).changed) << "a healthy verdict can't undo a drain";
}

TEST(DrainManagerZeroDelayTest, ZeroPropagationDelayDrainsOnTheNextStep) {
  ManualClock clock;
  DrainManager dm(DrainTimings{0s, 0s, 0s}, clock);
  dm.start_drain(Trigger::Sigterm);
  EXPECT_EQ(dm.advance(1).to, Phase::Draining);
  EXPECT_TRUE(dm.advance(1).force_close);
  EXPECT_EQ(dm.advance(1).to, Phase::Stopped);
}

TEST(PhaseTest, NamesMatchTheMetricLabels) {
  EXPECT_STREQ(to_string(Phase::Starting), "starting");
  EXPECT_STREQ(to_string(Phase::Serving), "serving");
  EXPECT_STREQ(to_string(Phase::Propagating), "propagating");
  EXPECT_STREQ(to_string(Phase::Draining), "draining");
  EXPECT_STREQ(to_string(Phase::Stopped), "stopped");
}

}  // namespace
}  // namespace drainproxy::drain
