#include "http/chunked.hpp"

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <string_view>
#include <vector>

namespace drainproxy::http {
namespace {

using namespace std::string_view_literals;

// The outcome of feeding a whole input, however it was split.
struct Outcome {
  std::size_t consumed = 0;  // total bytes accepted as body (offset of the error on failure)
  bool done = false;
  bool error = false;
  std::string_view reason;
  std::uint64_t payload = 0;
  bool operator==(const Outcome&) const = default;
};

std::ostream& operator<<(std::ostream& os, const Outcome& o) {
  return os << "{consumed=" << o.consumed << " done=" << o.done << " error=" << o.error << " reason='" << o.reason
            << "' payload=" << o.payload << "}";
}

Outcome feed_pieces(std::string_view data, const std::vector<std::size_t>& cuts, ChunkedFramer framer) {
  Outcome o;
  std::size_t pos = 0;
  auto feed = [&](std::string_view piece) {
    const ChunkedFramer::Result r = framer.feed(piece);
    o.consumed += r.consumed;
    if (r.done || r.error) {
      EXPECT_LE(r.consumed, piece.size());
      o.done = r.done;
      o.error = r.error;
      o.reason = r.reason;
      return true;
    }
    EXPECT_EQ(r.consumed, piece.size());  // all bytes belong to the body until done
    return false;
  };
  for (std::size_t cut : cuts) {
    if (feed(data.substr(pos, cut - pos))) {
      o.payload = framer.payload_bytes();
      return o;
    }
    pos = cut;
  }
  feed(data.substr(pos));
  o.payload = framer.payload_bytes();
  return o;
}

Outcome feed_whole(std::string_view data, std::size_t max_line = 4096, std::size_t max_trailer = 16384) {
  return feed_pieces(data, {}, ChunkedFramer(max_line, max_trailer));
}

// Whole, byte by byte, and 50 random splits must all agree.
void expect_split_invariant(std::string_view data, std::size_t max_line = 4096, std::size_t max_trailer = 16384) {
  const Outcome whole = feed_whole(data, max_line, max_trailer);
  std::vector<std::size_t> every;
  for (std::size_t i = 1; i < data.size(); ++i) every.push_back(i);
  EXPECT_EQ(feed_pieces(data, every, ChunkedFramer(max_line, max_trailer)), whole) << "byte by byte: " << data;
  std::mt19937 rng(12345);
  for (int round = 0; round < 50; ++round) {
    std::vector<std::size_t> cuts;
    for (std::size_t i = 1; i < data.size(); ++i)
      if (rng() % 4 == 0) cuts.push_back(i);
    EXPECT_EQ(feed_pieces(data, cuts, ChunkedFramer(max_line, max_trailer)), whole) << "random split: " << data;
  }
}

// ---------------------------------------------------------------------------------------------------

struct ValidBody {
  const char* name;
  std::string_view body;
  std::uint64_t payload;
};

const ValidBody kValidBodies[] = {
    {"Empty", "0\r\n\r\n"sv, 0},
    {"OneChunk", "5\r\nhello\r\n0\r\n\r\n"sv, 5},
    {"TwoChunks", "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"sv, 11},
    {"HexUpper", "A\r\n0123456789\r\n0\r\n\r\n"sv, 10},
    {"HexLower", "a\r\n0123456789\r\n0\r\n\r\n"sv, 10},
    {"LeadingZeros", "0005\r\nhello\r\n000\r\n\r\n"sv, 5},
    {"SixteenDigits", "0000000000000005\r\nhello\r\n0\r\n\r\n"sv, 5},
    {"DataWithCrLfInside", "4\r\n\r\n\r\n\r\n0\r\n\r\n"sv, 4},
    {"BinaryData", "3\r\n\0\xff\n\r\n0\r\n\r\n"sv, 3},
    {"ExtensionToken", "5;foo=bar\r\nhello\r\n0;last\r\n\r\n"sv, 5},
    {"ExtensionNoValue", "5;a;b\r\nhello\r\n0\r\n\r\n"sv, 5},
    {"ExtensionQuoted", "5;name=\"v;a\\\"l ue\"\r\nhello\r\n0\r\n\r\n"sv, 5},
    {"ExtensionBws", "5 ;\ta = b ; c\r\nhello\r\n0\r\n\r\n"sv, 5},
    {"ExtensionQuotedThenMore", "5;a=\"x\";b=y\r\nhello\r\n0\r\n\r\n"sv, 5},
    {"Trailers", "5\r\nhello\r\n0\r\nX-Checksum: abc\r\nX-Empty:\r\n\r\n"sv, 5},
    {"TrailerObsText", "0\r\nX: caf\xc3\xa9\r\n\r\n"sv, 0},
    {"TrailerNameLongerThanFramingName", "0\r\nTransfer-Encoding-X: a\r\nContent-Lengthy: 1\r\n\r\n"sv, 0},
    {"TrailerNameShortPrefix", "0\r\nHos: a\r\n\r\n"sv, 0},
};

class ChunkedValidTest : public ::testing::TestWithParam<ValidBody> {};

TEST_P(ChunkedValidTest, AcceptsAtAnySplit) {
  const ValidBody& c = GetParam();
  const Outcome whole = feed_whole(c.body);
  EXPECT_TRUE(whole.done);
  EXPECT_FALSE(whole.error) << whole.reason;
  EXPECT_EQ(whole.consumed, c.body.size());
  EXPECT_EQ(whole.payload, c.payload);
  expect_split_invariant(c.body);
}

TEST_P(ChunkedValidTest, StopsAtTheEndOfTheBody) {
  const ValidBody& c = GetParam();
  const std::string with_next = std::string(c.body) + "GET / HTTP/1.1\r\n\r\n";
  const Outcome o = feed_whole(with_next);
  EXPECT_TRUE(o.done);
  EXPECT_EQ(o.consumed, c.body.size());
  expect_split_invariant(with_next);
}

INSTANTIATE_TEST_SUITE_P(Chunked, ChunkedValidTest, ::testing::ValuesIn(kValidBodies),
                         [](const ::testing::TestParamInfo<ValidBody>& info) { return info.param.name; });

// ---------------------------------------------------------------------------------------------------

struct InvalidBody {
  const char* name;
  std::string_view body;
  std::size_t error_offset;  // index of the offending byte
  std::string_view reason;
  std::size_t max_line = 4096;
  std::size_t max_trailer = 16384;
};

const InvalidBody kInvalidBodies[] = {
    {"NotHex", "x\r\n"sv, 0, "missing chunk size"},
    {"EmptySize", "\r\n"sv, 0, "missing chunk size"},
    {"NegativeSize", "-5\r\n"sv, 0, "missing chunk size"},
    {"PlusSize", "+5\r\n"sv, 0, "missing chunk size"},
    {"HexPrefix", "0x5\r\n"sv, 1, "invalid chunk size"},
    {"SeventeenDigits", "00000000000000005\r\n"sv, 16, "chunk size too long"},
    {"SizeOverflow", "10000000000000000\r\n"sv, 16, "chunk size too long"},
    {"BareLfAfterSize", "5\nhello\r\n0\r\n\r\n"sv, 1, "bare LF in chunked body"},
    {"BareCrAfterSize", "5\rhello\r\n0\r\n\r\n"sv, 2, "bare CR in chunked body"},
    {"DataTooLong", "5\r\nhelloX\r\n0\r\n\r\n"sv, 8, "chunk data not followed by CRLF"},
    {"DataTooShort", "5\r\nhel\r\n0\r\n\r\n"sv, 8, "chunk data not followed by CRLF"},
    {"BareLfAfterData", "5\r\nhello\n0\r\n\r\n"sv, 8, "bare LF in chunked body"},
    {"BareCrAfterData", "5\r\nhello\rX"sv, 9, "bare CR in chunked body"},
    {"SpaceAfterSize", "5 \r\nhello\r\n0\r\n\r\n"sv, 2, "invalid chunk extension"},
    {"SpaceInsideSize", "1 0\r\n"sv, 2, "invalid chunk extension"},
    {"EmptyExtension", "5;\r\nhello\r\n0\r\n\r\n"sv, 2, "invalid chunk extension"},
    {"ExtensionEmptyValue", "5;a=\r\nhello\r\n0\r\n\r\n"sv, 4, "invalid chunk extension"},
    {"ExtensionTrailingSpace", "5;a \r\nhello\r\n0\r\n\r\n"sv, 4, "invalid chunk extension"},
    {"ExtensionSpaceInName", "5;a b\r\n"sv, 4, "invalid chunk extension"},
    {"ExtensionCtl", "5;a=b\x01\r\n"sv, 5, "invalid chunk extension"},
    {"ExtensionUnterminatedQuote", "5;a=\"x\r\n"sv, 6, "invalid chunk extension"},
    {"ExtensionBareLf", "5;a=b\n"sv, 5, "bare LF in chunked body"},
    {"ExtensionCtlInQuote", "5;a=\"\x7f\"\r\n"sv, 5, "invalid chunk extension"},
    {"ExtensionJunkAfterQuote", "5;a=\"x\"y\r\n"sv, 7, "invalid chunk extension"},
    {"LineTooLong", "5;aaaaaaaaaaaaaaaaaaaaaaa\r\n"sv, 16, "chunk line too long", 16},
    {"TrailerObsFold", "0\r\nX: a\r\n b\r\n\r\n"sv, 9, "obsolete line folding in trailer"},
    {"TrailerSpaceBeforeColon", "0\r\nX : a\r\n\r\n"sv, 4, "whitespace between trailer field name and colon"},
    {"TrailerNoColon", "0\r\nX\r\n\r\n"sv, 4, "trailer field without colon"},
    {"TrailerEmptyName", "0\r\n: a\r\n\r\n"sv, 3, "invalid character in trailer field name"},
    {"TrailerBadNameChar", "0\r\nX(: a\r\n\r\n"sv, 4, "invalid character in trailer field name"},
    {"TrailerNul", "0\r\nX: a\0b\r\n\r\n"sv, 7, "invalid character in trailer field value"},
    {"TrailerBareLf", "0\r\nX: a\n\r\n"sv, 7, "bare LF in chunked body"},
    {"TrailerBareCr", "0\r\nX: a\rb\r\n"sv, 8, "bare CR in chunked body"},
    {"TrailerContentLength", "0\r\nContent-Length: 5\r\n\r\n"sv, 17, "framing field in trailer"},
    {"TrailerTransferEncoding", "0\r\ntransfer-ENCODING: chunked\r\n\r\n"sv, 20, "framing field in trailer"},
    {"TrailerHost", "0\r\nHOST: evil\r\n\r\n"sv, 7, "framing field in trailer"},
    {"TrailerLineTooLong", "0\r\nX: 0123456789abcdef\r\n\r\n"sv, 19, "chunk line too long", 16},
    {"TrailerSectionTooLarge", "0\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n"sv, 19, "trailer section too large", 4096, 16},
    {"FinalBareLf", "0\r\n\n"sv, 3, "bare LF in chunked body"},
    {"FinalBareCr", "0\r\n\rX"sv, 4, "bare CR in chunked body"},
};

class ChunkedInvalidTest : public ::testing::TestWithParam<InvalidBody> {};

TEST_P(ChunkedInvalidTest, RejectsAtTheSameByteForAnySplit) {
  const InvalidBody& c = GetParam();
  const Outcome whole = feed_whole(c.body, c.max_line, c.max_trailer);
  EXPECT_TRUE(whole.error);
  EXPECT_FALSE(whole.done);
  EXPECT_EQ(whole.reason, c.reason);
  EXPECT_EQ(whole.consumed, c.error_offset);
  expect_split_invariant(c.body, c.max_line, c.max_trailer);
}

INSTANTIATE_TEST_SUITE_P(Chunked, ChunkedInvalidTest, ::testing::ValuesIn(kInvalidBodies),
                         [](const ::testing::TestParamInfo<InvalidBody>& info) { return info.param.name; });

// ---------------------------------------------------------------------------------------------------

TEST(ChunkedFramerTest, IncompleteInputConsumesEverything) {
  ChunkedFramer f;
  const ChunkedFramer::Result r = f.feed("5\r\nhel");
  EXPECT_EQ(r.consumed, 6u);
  EXPECT_FALSE(r.done);
  EXPECT_FALSE(r.error);
  EXPECT_EQ(f.payload_bytes(), 3u);  // partial chunk data counts (for max-body-bytes)
  EXPECT_FALSE(f.feed("").error);
}

TEST(ChunkedFramerTest, LargeChunkIsSkippedInBulk) {
  const std::string data(1 << 20, 'x');
  ChunkedFramer f;
  EXPECT_EQ(f.feed("100000\r\n").consumed, 8u);
  EXPECT_EQ(f.feed(data).consumed, data.size());
  EXPECT_EQ(f.payload_bytes(), data.size());
  const ChunkedFramer::Result r = f.feed("\r\n0\r\n\r\n");
  EXPECT_TRUE(r.done);
  EXPECT_EQ(r.consumed, 7u);
}

TEST(ChunkedFramerTest, ErrorIsSticky) {
  ChunkedFramer f;
  EXPECT_TRUE(f.feed("zz").error);
  EXPECT_TRUE(f.failed());
  const ChunkedFramer::Result r = f.feed("0\r\n\r\n");
  EXPECT_TRUE(r.error);
  EXPECT_EQ(r.consumed, 0u);
  EXPECT_EQ(r.reason, "missing chunk size");
}

TEST(ChunkedFramerTest, DoneConsumesNothingMore) {
  ChunkedFramer f;
  EXPECT_TRUE(f.feed("0\r\n\r\n").done);
  EXPECT_TRUE(f.done());
  const ChunkedFramer::Result r = f.feed("0\r\n\r\n");
  EXPECT_TRUE(r.done);
  EXPECT_EQ(r.consumed, 0u);
}

TEST(ChunkedFramerTest, ResetStartsANewBody) {
  ChunkedFramer f;
  EXPECT_TRUE(f.feed("3\r\nabc\r\n0\r\n\r\n").done);
  EXPECT_EQ(f.payload_bytes(), 3u);
  f.reset();
  EXPECT_EQ(f.payload_bytes(), 0u);
  EXPECT_FALSE(f.done());
  EXPECT_TRUE(f.feed("zz").error);
  f.reset();
  EXPECT_TRUE(f.feed("0\r\n\r\n").done);
}

TEST(ChunkedFramerTest, MaxSizeChunkHeaderIsAccepted) {
  ChunkedFramer f;
  const ChunkedFramer::Result r = f.feed("ffffffffffffffff\r\nabc");
  EXPECT_FALSE(r.error);
  EXPECT_EQ(r.consumed, 21u);
}

TEST(ChunkedFramerTest, LineLimitAppliesPerLine) {
  // Each size line is below 16 bytes; their sum is not.
  const std::string_view body = "1;aaaaaaa\r\nx\r\n1;bbbbbbb\r\ny\r\n0\r\n\r\n";
  EXPECT_TRUE(feed_whole(body, 16).done);
}

}  // namespace
}  // namespace drainproxy::http
