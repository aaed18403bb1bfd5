#include "proxy/warm_list.hpp"

#include <gtest/gtest.h>

#include <memory>

namespace drainproxy::proxy {
namespace {

using Ptr = std::unique_ptr<int>;

TEST(WarmListTest, ReusesWhatWasPutBack) {
  WarmList<Ptr> list(8, 2);
  EXPECT_FALSE(list.take()) << "nothing kept yet: the caller makes one";
  auto* raw = new int(7);
  list.put(Ptr(raw));
  Ptr again = list.take();
  ASSERT_TRUE(again);
  EXPECT_EQ(again.get(), raw);
}

TEST(WarmListTest, KeepsNoMoreThanMaxFree) {
  WarmList<Ptr> list(3, 1);
  for (int i = 0; i < 5; ++i) list.take();
  for (int i = 0; i < 5; ++i) list.put(std::make_unique<int>(i));
  EXPECT_EQ(list.free_count(), 3u);
}

TEST(WarmListTest, TrimKeepsTheRecentPeakThenShrinksWhenLoadIsGone) {
  WarmList<Ptr> list(64, 4);
  std::vector<Ptr> busy;
  for (int i = 0; i < 20; ++i) {
    Ptr p = list.take();
    busy.push_back(p ? std::move(p) : std::make_unique<int>(i));
  }
  for (auto& p : busy) list.put(std::move(p));
  EXPECT_EQ(list.free_count(), 20u);
  // The burst (20 at once) is the recent peak: all are kept through the first trim.
  EXPECT_EQ(list.trim(), 0u);
  EXPECT_EQ(list.free_count(), 20u);
  // Nothing used since: the next trim keeps only the minimum.
  EXPECT_EQ(list.trim(), 16u);
  EXPECT_EQ(list.free_count(), 4u);
}

TEST(WarmListTest, TrimKeepsWhatSteadyUseNeeds) {
  WarmList<Ptr> list(64, 2);
  for (int round = 0; round < 3; ++round) {
    std::vector<Ptr> busy;
    for (int i = 0; i < 10; ++i) {
      Ptr p = list.take();
      busy.push_back(p ? std::move(p) : std::make_unique<int>(i));
    }
    for (auto& p : busy) list.put(std::move(p));
    list.trim();
    EXPECT_EQ(list.free_count(), 10u) << "round " << round;
  }
}

TEST(WarmListTest, DroppedObjectsStillEndTheirUse) {
  WarmList<Ptr> list(64, 1);
  for (int i = 0; i < 5; ++i) list.take();
  for (int i = 0; i < 5; ++i) list.drop();
  list.trim();  // peak 5, nothing free
  list.put(std::make_unique<int>(1));  // in_use would underflow without the guard
  EXPECT_EQ(list.free_count(), 1u);
  EXPECT_EQ(list.trim(), 0u) << "min_keep 1 keeps the one";
}

}  // namespace
}  // namespace drainproxy::proxy
