#include "config/duration.hpp"

#include <gtest/gtest.h>

#include <stdexcept>

namespace drainproxy::config {
namespace {

TEST(DurationTest, ParsesEachUnit) {
  EXPECT_EQ(parse_duration("250ms"), Duration(250));
  EXPECT_EQ(parse_duration("5s"), Duration(5000));
  EXPECT_EQ(parse_duration("1.5s"), Duration(1500));
  EXPECT_EQ(parse_duration("1m"), Duration(60000));
  EXPECT_EQ(parse_duration("2h"), Duration(7'200'000));
  EXPECT_EQ(parse_duration("0"), Duration(0));
  EXPECT_EQ(parse_duration("0s"), Duration(0));
}

TEST(DurationTest, RejectsAmbiguousOrMalformedInput) {
  for (const char* bad : {"", "5", "s", "-1s", "5x", "5 s", "1.5", "ms", "1e3s", "99999999999999s", ".s"}) {
    EXPECT_THROW(parse_duration(bad), std::invalid_argument) << bad;
  }
}

TEST(DurationTest, ErrorExplainsMissingUnit) {
  try {
    parse_duration("5");
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("unit"), std::string::npos);
  }
}

TEST(DurationTest, FormatRoundTrips) {
  for (const char* text : {"250ms", "5s", "1.5s", "1m", "2h", "1.25s"}) {
    EXPECT_EQ(format_duration(parse_duration(text)), text);
  }
  EXPECT_EQ(format_duration(Duration(0)), "0s");
}

}  // namespace
}  // namespace drainproxy::config
