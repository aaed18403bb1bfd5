#include "proxy/byte_buffer.hpp"

#include <gtest/gtest.h>

#include <cstring>

namespace drainproxy::proxy {
namespace {

void put(ByteBuffer& b, std::string_view s) {
  auto space = b.prepare();
  ASSERT_GE(space.size(), s.size());
  std::memcpy(space.data(), s.data(), s.size());
  b.commit(s.size());
}

TEST(ByteBufferTest, ConsumeAndRefill) {
  ByteBuffer b(8);
  put(b, "abcdef");
  EXPECT_EQ(b.view(), "abcdef");
  b.consume(4);
  EXPECT_EQ(b.view(), "ef");
  EXPECT_EQ(b.prepare().size(), 2u) << "no compaction while there is room at the end";
  put(b, "gh");
  EXPECT_TRUE(b.size() == 4 && !b.full());
  // The end is reached: prepare() moves the unread bytes to the front.
  EXPECT_EQ(b.prepare().size(), 4u);
  EXPECT_EQ(b.view(), "efgh");
  b.consume(4);
  EXPECT_TRUE(b.empty());
  EXPECT_EQ(b.prepare().size(), 8u) << "an emptied buffer starts over at the front";
}

TEST(ByteBufferTest, GrowKeepsUnreadBytes) {
  ByteBuffer b(4);
  put(b, "wxyz");
  b.consume(1);
  EXPECT_FALSE(b.full());
  b.prepare();
  put(b, "!");
  EXPECT_TRUE(b.full());
  b.grow(16);
  EXPECT_EQ(b.capacity(), 16u);
  EXPECT_EQ(b.view(), "xyz!");
  EXPECT_EQ(b.prepare().size(), 12u);
}

}  // namespace
}  // namespace drainproxy::proxy
