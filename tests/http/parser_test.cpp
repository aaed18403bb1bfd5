#include "http/parser.hpp"

#include <gtest/gtest.h>

#include <string>
#include <string_view>
#include <vector>

namespace drainproxy::http {
namespace {

using namespace std::string_view_literals;

Limits small_limits(std::size_t head, std::size_t target, std::size_t fields) {
  Limits l;
  l.max_head_bytes = head;
  l.max_target_bytes = target;
  l.max_fields = fields;
  return l;
}

// ---------------------------------------------------------------------------------------------------
// Request rejections: one row per rule.

struct RequestReject {
  const char* name;
  std::string_view head;
  unsigned status;
  std::string_view reason;
  Limits limits = {};
};

const RequestReject kRequestRejects[] = {
    // line endings
    {"BareLfAfterRequestLine", "GET / HTTP/1.1\nHost: a\r\n\r\n"sv, 400, "bare LF in head"},
    {"BareLfAfterField", "GET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n"sv, 400, "bare LF in head"},
    {"BareLfAsTerminator", "GET / HTTP/1.1\r\nHost: a\r\n\n"sv, 400, "bare LF in head"},
    {"BareLfFirstByte", "\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"sv, 400, "bare LF in head"},
    {"BareCrInField", "GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n"sv, 400, "bare CR in head"},
    {"BareCrInRequestLine", "GET /\r HTTP/1.1\r\nHost: a\r\n\r\n"sv, 400, "bare CR in head"},
    {"BareCrBeforeHeadComplete", "GET / HTTP/1.1\r\nHost: a\rX"sv, 400, "bare CR in head"},
    {"CrCrLf", "GET / HTTP/1.1\r\r\nHost: a\r\n\r\n"sv, 400, "bare CR in head"},
    // request line
    {"InvalidMethodChar", "G@T / HTTP/1.1\r\nHost: a\r\n\r\n"sv, 400, "invalid method"},
    {"LeadingSpace", " GET / HTTP/1.1\r\nHost: a\r\n\r\n"sv, 400, "invalid method"},
    {"TabSeparator", "GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n"sv, 400, "invalid method"},
    {"DoubleSpaceBeforeTarget", "GET  / HTTP/1.1\r\nHost: a\r\n\r\n"sv, 400, "empty request target"},
    {"DoubleSpaceBeforeVersion", "GET /  HTTP/1.1\r\nHost: a\r\n\r\n"sv, 400, "malformed HTTP version"},
    {"TrailingSpace", "GET / HTTP/1.1 \r\nHost: a\r\n\r\n"sv, 400, "malformed HTTP version"},
    {"SpaceInTarget", "GET /a b HTTP/1.1\r\nHost: a\r\n\r\n"sv, 400, "malformed HTTP version"},
    {"Http09", "GET /\r\n\r\n"sv, 400, "missing HTTP version"},
    {"MethodOnly", "GET\r\n\r\n"sv, 400, "malformed request line"},
    {"CtlInTarget", "GET /a\x01" "b HTTP/1.1\r\nHost: a\r\n\r\n"sv, 400, "invalid character in request target"},
    {"DelInTarget", "GET /a\x7f HTTP/1.1\r\nHost: a\r\n\r\n"sv, 400, "invalid character in request target"},
    {"NulInTarget", "GET /a\0 HTTP/1.1\r\nHost: a\r\n\r\n"sv, 400, "invalid character in request target"},
    {"LowercaseVersion", "GET / http/1.1\r\nHost: a\r\n\r\n"sv, 400, "malformed HTTP version"},
    {"VersionTwoDigitMinor", "GET / HTTP/1.10\r\nHost: a\r\n\r\n"sv, 400, "malformed HTTP version"},
    {"VersionNoMinor", "GET / HTTP/1\r\nHost: a\r\n\r\n"sv, 400, "malformed HTTP version"},
    {"VersionGarbage", "GET / FOO\r\nHost: a\r\n\r\n"sv, 400, "malformed HTTP version"},
    {"Http20", "GET / HTTP/2.0\r\nHost: a\r\n\r\n"sv, 505, "unsupported HTTP version"},
    {"Http12", "GET / HTTP/1.2\r\nHost: a\r\n\r\n"sv, 505, "unsupported HTTP version"},
    {"Http09Versioned", "GET / HTTP/0.9\r\nHost: a\r\n\r\n"sv, 505, "unsupported HTTP version"},
    {"TooManyLeadingEmptyLines", "\r\n\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"sv, 400, "malformed request line"},
    {"TlsClientHello", "\x16\x03\x01\x02\x00\x01"sv, 400, "invalid method"},
    // target forms
    {"AsteriskWithGet", "GET * HTTP/1.1\r\nHost: a\r\n\r\n"sv, 400, "asterisk-form target only with OPTIONS"},
    {"AuthorityWithGet", "GET example.com:443 HTTP/1.1\r\nHost: a\r\n\r\n"sv, 400, "invalid request target form"},
    {"RelativeTarget", "GET index.html HTTP/1.1\r\nHost: a\r\n\r\n"sv, 400, "invalid request target form"},
    {"ConnectOriginForm", "CONNECT / HTTP/1.1\r\nHost: a\r\n\r\n"sv, 400, "CONNECT requires an authority-form target"},
    {"ConnectWithoutPort", "CONNECT example.com HTTP/1.1\r\nHost: a\r\n\r\n"sv, 400,
     "CONNECT requires an authority-form target"},
    {"ConnectAbsolute", "CONNECT http://a:80/ HTTP/1.1\r\nHost: a\r\n\r\n"sv, 400,
     "CONNECT requires an authority-form target"},
    {"AbsoluteEmptyAuthority", "GET http:///x HTTP/1.1\r\nHost: a\r\n\r\n"sv, 400, "invalid absolute-form target"},
    {"AbsoluteUserinfo", "GET http://u@a/x HTTP/1.1\r\nHost: a\r\n\r\n"sv, 400, "invalid absolute-form target"},
    {"AbsoluteBadScheme", "GET 1http://a/ HTTP/1.1\r\nHost: a\r\n\r\n"sv, 400, "invalid absolute-form target"},
    // field lines
    {"ObsFoldSpace", "GET / HTTP/1.1\r\nHost: a\r\nX: b\r\n c\r\n\r\n"sv, 400, "obsolete line folding"},
    {"ObsFoldTab", "GET / HTTP/1.1\r\nHost: a\r\nX: b\r\n\tc\r\n\r\n"sv, 400, "obsolete line folding"},
    {"ObsFoldFirstField", "GET / HTTP/1.1\r\n Host: a\r\n\r\n"sv, 400, "obsolete line folding"},
    {"SpaceBeforeColon", "GET / HTTP/1.1\r\nHost : a\r\n\r\n"sv, 400, "whitespace between field name and colon"},
    {"TabBeforeColon", "GET / HTTP/1.1\r\nHost\t: a\r\n\r\n"sv, 400, "whitespace between field name and colon"},
    {"SpaceBeforeColonContentLength", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length : 5\r\n\r\n"sv, 400,
     "whitespace between field name and colon"},
    {"NoColon", "GET / HTTP/1.1\r\nHost: a\r\nJunk\r\n\r\n"sv, 400, "field line without colon"},
    {"EmptyName", "GET / HTTP/1.1\r\nHost: a\r\n: b\r\n\r\n"sv, 400, "empty field name"},
    {"InvalidNameChar", "GET / HTTP/1.1\r\nHost: a\r\nX(Y): b\r\n\r\n"sv, 400, "invalid character in field name"},
    {"ObsTextInName", "GET / HTTP/1.1\r\nHost: a\r\nX\xc3\xa9: b\r\n\r\n"sv, 400, "invalid character in field name"},
    {"NulInValue", "GET / HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n"sv, 400, "NUL in field value"},
    {"CtlInValue", "GET / HTTP/1.1\r\nHost: a\r\nX: a\x01" "b\r\n\r\n"sv, 400, "invalid character in field value"},
    {"EscInValue", "GET / HTTP/1.1\r\nHost: a\r\nX: \x1b[0m\r\n\r\n"sv, 400, "invalid character in field value"},
    {"DelInValue", "GET / HTTP/1.1\r\nHost: a\r\nX: a\x7f\r\n\r\n"sv, 400, "invalid character in field value"},
    // Host
    {"MissingHost", "GET / HTTP/1.1\r\nX: a\r\n\r\n"sv, 400, "missing Host"},
    {"DuplicateHost", "GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n"sv, 400, "duplicate Host"},
    {"DuplicateHostHttp10", "GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n"sv, 400, "duplicate Host"},
    {"HostWithSpace", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n"sv, 400, "invalid Host"},
    {"HostWithSlash", "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n"sv, 400, "invalid Host"},
    {"HostWithUserinfo", "GET / HTTP/1.1\r\nHost: u@a\r\n\r\n"sv, 400, "invalid Host"},
    {"HostWithComma", "GET / HTTP/1.1\r\nHost: a, b\r\n\r\n"sv, 400, "invalid Host"},
    {"HostPortNotDigits", "GET / HTTP/1.1\r\nHost: a:8x\r\n\r\n"sv, 400, "invalid Host"},
    {"HostEmptyPort", "GET / HTTP/1.1\r\nHost: a:\r\n\r\n"sv, 400, "invalid Host"},
    {"HostPortTooBig", "GET / HTTP/1.1\r\nHost: a:65536\r\n\r\n"sv, 400, "invalid Host"},
    {"HostOnlyPort", "GET / HTTP/1.1\r\nHost: :80\r\n\r\n"sv, 400, "invalid Host"},
    {"HostUnclosedIpv6", "GET / HTTP/1.1\r\nHost: [::1\r\n\r\n"sv, 400, "invalid Host"},
    {"HostBadPercent", "GET / HTTP/1.1\r\nHost: a%zz\r\n\r\n"sv, 400, "invalid Host"},
    // Content-Length
    {"ClNotDigits", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: abc\r\n\r\n"sv, 400, "invalid Content-Length"},
    {"ClNegative", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n"sv, 400, "invalid Content-Length"},
    {"ClPlus", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +1\r\n\r\n"sv, 400, "invalid Content-Length"},
    {"ClHex", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x10\r\n\r\n"sv, 400, "invalid Content-Length"},
    {"ClInnerSpace", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1 2\r\n\r\n"sv, 400, "invalid Content-Length"},
    {"ClEmpty", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n\r\n"sv, 400, "empty Content-Length"},
    {"ClEmptyListElement", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5,,5\r\n\r\n"sv, 400, "empty Content-Length"},
    {"ClTrailingComma", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5,\r\n\r\n"sv, 400, "empty Content-Length"},
    {"ClOverflow63", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 9223372036854775808\r\n\r\n"sv, 400,
     "Content-Length too large"},
    {"ClOverflow64", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999999\r\n\r\n"sv, 400,
     "Content-Length too large"},
    {"ClDifferentFields", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"sv, 400,
     "conflicting Content-Length values"},
    {"ClDifferentList", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 6\r\n\r\n"sv, 400,
     "conflicting Content-Length values"},
    // Transfer-Encoding
    {"TeAndCl", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"sv, 400,
     "both Content-Length and Transfer-Encoding"},
    {"ClAfterTe", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n"sv, 400,
     "both Content-Length and Transfer-Encoding"},
    {"TeInHttp10", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"sv, 400,
     "Transfer-Encoding in HTTP/1.0 message"},
    {"TeGzip", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n"sv, 501, "unsupported transfer coding"},
    {"TeIdentity", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n"sv, 501,
     "unsupported transfer coding"},
    {"TeCustom", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: x-custom\r\n\r\n"sv, 501,
     "unsupported transfer coding"},
    {"TeGzipThenChunked", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"sv, 501,
     "unsupported transfer coding"},
    {"TeChunkedNotFinal", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"sv, 400,
     "chunked is not the final transfer coding"},
    {"TeChunkedNotFinalAcrossLines",
     "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n"sv, 400,
     "chunked is not the final transfer coding"},
    {"TeChunkedTwice", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n"sv, 400,
     "chunked applied more than once"},
    {"TeChunkedTwiceAcrossLines",
     "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"sv, 400,
     "chunked applied more than once"},
    {"TeTrailingComma", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, \r\n\r\n"sv, 400,
     "malformed Transfer-Encoding"},
    {"TeLeadingComma", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: ,chunked\r\n\r\n"sv, 400,
     "malformed Transfer-Encoding"},
    {"TeEmpty", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \r\n\r\n"sv, 400, "malformed Transfer-Encoding"},
    {"TeNotToken", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chun ked\r\n\r\n"sv, 400,
     "malformed Transfer-Encoding"},
    {"TeChunkedWithParameter", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked;q=1\r\n\r\n"sv, 400,
     "malformed Transfer-Encoding"},
    {"TeQuoted", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \"chunked\"\r\n\r\n"sv, 400,
     "malformed Transfer-Encoding"},
    // Connection
    {"ConnectionNamesContentLength", "GET / HTTP/1.1\r\nHost: a\r\nConnection: close, Content-Length\r\n\r\n"sv,
     400, "Connection names a framing field"},
    {"ConnectionNamesTransferEncoding", "GET / HTTP/1.1\r\nHost: a\r\nConnection: transfer-encoding\r\n\r\n"sv, 400,
     "Connection names a framing field"},
    {"ConnectionNamesHost", "GET / HTTP/1.1\r\nHost: a\r\nConnection: HOST\r\n\r\n"sv, 400,
     "Connection names a framing field"},
    {"ConnectionInvalidToken", "GET / HTTP/1.1\r\nHost: a\r\nConnection: a b\r\n\r\n"sv, 400,
     "invalid Connection token"},
    // Expect
    {"ExpectOther", "POST / HTTP/1.1\r\nHost: a\r\nExpect: 200-ok\r\n\r\n"sv, 417, "unsupported expectation"},
    {"ExpectContinuePlusOther", "POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue, foo\r\n\r\n"sv, 417,
     "unsupported expectation"},
    // limits
    {"TooManyFields", "GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\n\r\n"sv, 431, "too many header fields",
     small_limits(1024, 64, 2)},
    {"HeadTooLarge", "GET / HTTP/1.1\r\nHost: a\r\nX: 0123456789012345678901234567890123456789\r\n\r\n"sv, 431,
     "head too large", small_limits(40, 16, 10)},
    {"IncompleteHeadAtLimit", "GET / HTTP/1.1\r\nHost: a\r\nX: 0123456789"sv, 431, "head too large",
     small_limits(37, 16, 10)},
    {"TargetTooLong", "GET /0123456789abcdef HTTP/1.1\r\nHost: a\r\n\r\n"sv, 414, "request target too long",
     small_limits(1024, 16, 10)},
    {"TargetTooLongNoVersion", "GET /0123456789abcdef\r\n\r\n"sv, 414, "request target too long",
     small_limits(1024, 16, 10)},
    {"TargetTooLongBeforeLineEnds", "GET /0123456789abcdef"sv, 414, "request target too long",
     small_limits(1024, 16, 10)},
};

class HttpRequestRejectTest : public ::testing::TestWithParam<RequestReject> {};

TEST_P(HttpRequestRejectTest, Rejects) {
  const RequestReject& c = GetParam();
  RequestHead head;
  Error err;
  ASSERT_EQ(parse_request_head(c.head, c.limits, head, err), ParseStatus::Error);
  EXPECT_EQ(err.status, c.status);
  EXPECT_EQ(err.reason, c.reason);
}

INSTANTIATE_TEST_SUITE_P(Http, HttpRequestRejectTest, ::testing::ValuesIn(kRequestRejects),
                         [](const ::testing::TestParamInfo<RequestReject>& info) { return info.param.name; });

// ---------------------------------------------------------------------------------------------------
// Requests that must be accepted.

RequestHead parse_ok(std::string_view buf, const Limits& limits = {}) {
  RequestHead head;
  Error err;
  const ParseStatus st = parse_request_head(buf, limits, head, err);
  EXPECT_EQ(st, ParseStatus::Complete) << err.status << " " << err.reason;
  return head;
}

TEST(HttpRequestParserTest, SimpleGet) {
  const std::string_view buf = "GET /index.html?q=1 HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n";
  const RequestHead h = parse_ok(buf);
  EXPECT_EQ(h.method, "GET");
  EXPECT_EQ(h.target, "/index.html?q=1");
  EXPECT_EQ(h.version_minor, 1u);
  ASSERT_EQ(h.fields.size(), 2u);
  EXPECT_EQ(h.fields[0].name, "Host");
  EXPECT_EQ(h.fields[0].value, "example.com");
  EXPECT_EQ(h.fields[1].name, "Accept");
  EXPECT_EQ(h.fields[1].value, "*/*");
  EXPECT_EQ(h.host, "example.com");
  EXPECT_EQ(h.framing, Framing::None);
  EXPECT_TRUE(h.keep_alive);
  EXPECT_FALSE(h.expect_continue);
  EXPECT_FALSE(h.upgrade_websocket);
  EXPECT_EQ(h.head_size, buf.size());
  EXPECT_FALSE(h.is_head_method());
  EXPECT_EQ(h.kind(), RequestKind::Regular);
}

TEST(HttpRequestParserTest, ViewsPointIntoTheBuffer) {
  const std::string buf = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
  const RequestHead h = parse_ok(buf);
  EXPECT_EQ(h.method.data(), buf.data());
  EXPECT_EQ(h.fields[0].value.data(), buf.data() + buf.find("a\r\n"));
}

TEST(HttpRequestParserTest, BodyAndPipelinedRequestsAreLeftAlone) {
  const std::string_view first = "POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n";
  const std::string buf = std::string(first) + "hello" + "GET /b HTTP/1.1\r\nHost: a\r\n\r\n";
  RequestHead h = parse_ok(buf);
  EXPECT_EQ(h.head_size, first.size());
  EXPECT_EQ(h.framing, Framing::ContentLength);
  EXPECT_EQ(h.content_length, 5u);
  EXPECT_EQ(buf.substr(h.head_size, 5), "hello");
  const std::string_view second = std::string_view(buf).substr(h.head_size + 5);
  h = parse_ok(second);
  EXPECT_EQ(h.target, "/b");
  EXPECT_EQ(h.head_size, second.size());
}

TEST(HttpRequestParserTest, GarbageAfterHeadIsNotParsed) {
  const std::string_view head = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
  const std::string buf = std::string(head) + "\n\r\0\x01 junk";
  EXPECT_EQ(parse_ok(buf).head_size, head.size());
}

TEST(HttpRequestParserTest, LeadingEmptyLinesAreSkipped) {
  const std::string_view buf = "\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n";
  const RequestHead h = parse_ok(buf);
  EXPECT_EQ(h.method, "GET");
  EXPECT_EQ(h.head_size, buf.size());
}

TEST(HttpRequestParserTest, FieldValuesAreTrimmedAndKeepInnerWhitespaceAndObsText) {
  const std::string_view buf =
      "GET / HTTP/1.1\r\nHost:a\r\nX-A: \t one  two \t\r\nX-B:\r\nX-C: caf\xc3\xa9\r\nX-D: \"q\"\r\n\r\n";
  const RequestHead h = parse_ok(buf);
  ASSERT_EQ(h.fields.size(), 5u);
  EXPECT_EQ(h.fields[0].value, "a");
  EXPECT_EQ(h.fields[1].value, "one  two");
  EXPECT_EQ(h.fields[2].value, "");
  EXPECT_EQ(h.fields[3].value, "caf\xc3\xa9");
  EXPECT_EQ(h.fields[4].value, "\"q\"");
}

TEST(HttpRequestParserTest, DuplicateFieldsAreKeptInOrder) {
  const RequestHead h = parse_ok("GET / HTTP/1.1\r\nHost: a\r\nCookie: a=1\r\nX: y\r\nCookie: b=2\r\n\r\n");
  ASSERT_EQ(h.fields.size(), 4u);
  EXPECT_EQ(h.fields[1].value, "a=1");
  EXPECT_EQ(h.fields[3].value, "b=2");
}

TEST(HttpRequestParserTest, IdenticalContentLengthsAreAccepted) {
  for (std::string_view buf : {"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n"sv,
                               "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\ncontent-length: 5\r\n\r\n"sv,
                               "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 005\r\nContent-Length: 5\r\n\r\n"sv}) {
    const RequestHead h = parse_ok(buf);
    EXPECT_EQ(h.framing, Framing::ContentLength) << buf;
    EXPECT_EQ(h.content_length, 5u) << buf;
  }
}

TEST(HttpRequestParserTest, LargestContentLength) {
  const RequestHead h = parse_ok("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 9223372036854775807\r\n\r\n");
  EXPECT_EQ(h.content_length, 9223372036854775807ull);
}

TEST(HttpRequestParserTest, ZeroContentLength) {
  const RequestHead h = parse_ok("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n");
  EXPECT_EQ(h.framing, Framing::ContentLength);
  EXPECT_EQ(h.content_length, 0u);
}

TEST(HttpRequestParserTest, ChunkedIsCaseInsensitive) {
  for (std::string_view te : {"chunked"sv, "Chunked"sv, "CHUNKED"sv}) {
    const std::string buf = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: " + std::string(te) + "\r\n\r\n";
    EXPECT_EQ(parse_ok(buf).framing, Framing::Chunked) << te;
  }
}

TEST(HttpRequestParserTest, KeepAliveFollowsVersionAndConnection) {
  struct Case {
    std::string_view buf;
    bool keep_alive;
  };
  const Case cases[] = {
      {"GET / HTTP/1.1\r\nHost: a\r\n\r\n", true},
      {"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", false},
      {"GET / HTTP/1.1\r\nHost: a\r\nConnection: Keep-Alive, CLOSE\r\n\r\n", false},
      {"GET / HTTP/1.1\r\nHost: a\r\nConnection: x-foo\r\nConnection: Close\r\n\r\n", false},
      {"GET / HTTP/1.0\r\n\r\n", false},
      {"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", true},
      {"GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n", false},
      {"GET / HTTP/1.1\r\nHost: a\r\nConnection: ,, keep-alive ,\r\n\r\n", true},
  };
  for (const Case& c : cases) EXPECT_EQ(parse_ok(c.buf).keep_alive, c.keep_alive) << c.buf;
}

TEST(HttpRequestParserTest, Http10MayOmitHost) {
  const RequestHead h = parse_ok("GET / HTTP/1.0\r\n\r\n");
  EXPECT_EQ(h.version_minor, 0u);
  EXPECT_TRUE(h.host.empty());
}

TEST(HttpRequestParserTest, ValidHostForms) {
  for (std::string_view host : {"example.com"sv, "example.com:8080"sv, "10.0.0.1:80"sv, "[::1]"sv, "[::1]:443"sv,
                                "my_host-1.svc.cluster.local"sv, "a%2Db"sv, ""sv}) {
    const std::string buf = "GET / HTTP/1.1\r\nHost: " + std::string(host) + "\r\n\r\n";
    EXPECT_EQ(parse_ok(buf).host, host);
  }
}

TEST(HttpRequestParserTest, ExpectContinue) {
  EXPECT_TRUE(parse_ok("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nExpect: 100-Continue\r\n\r\n")
                  .expect_continue);
  // RFC 9110 §10.1.1: ignored on HTTP/1.0.
  EXPECT_FALSE(parse_ok("POST / HTTP/1.0\r\nContent-Length: 1\r\nExpect: 100-continue\r\n\r\n").expect_continue);
}

TEST(HttpRequestParserTest, WebSocketUpgrade) {
  const RequestHead h =
      parse_ok("GET /ws HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Upgrade\r\nUpgrade: WebSocket\r\n\r\n");
  EXPECT_TRUE(h.upgrade_websocket);
  EXPECT_FALSE(h.upgrade_h2c);
}

TEST(HttpRequestParserTest, UpgradeNeedsConnectionUpgradeAndHttp11) {
  EXPECT_FALSE(parse_ok("GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n").upgrade_websocket);
  EXPECT_FALSE(parse_ok("GET / HTTP/1.0\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n").upgrade_websocket);
}

TEST(HttpRequestParserTest, H2cUpgrade) {
  const RequestHead h = parse_ok(
      "GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAA\r\n\r\n");
  EXPECT_TRUE(h.upgrade_h2c);
  EXPECT_FALSE(h.upgrade_websocket);
}

TEST(HttpRequestParserTest, TargetForms) {
  RequestHead h = parse_ok("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n");
  EXPECT_EQ(h.target, "*");

  h = parse_ok("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n");
  EXPECT_TRUE(h.is_connect());
  EXPECT_EQ(h.kind(), RequestKind::Connect);
  EXPECT_EQ(h.target, "example.com:443");

  h = parse_ok("GET http://Example.com:8080/x?y HTTP/1.1\r\nHost: ignored\r\n\r\n");
  EXPECT_EQ(h.target, "http://Example.com:8080/x?y");
  EXPECT_EQ(h.host, "Example.com:8080");  // RFC 9112 §3.2.2: the target's authority wins

  h = parse_ok("HEAD https://a HTTP/1.1\r\nHost: a\r\n\r\n");
  EXPECT_EQ(h.host, "a");
  EXPECT_TRUE(h.is_head_method());
  EXPECT_EQ(h.kind(), RequestKind::Head);
}

TEST(HttpRequestParserTest, UnknownMethodTokensAreAccepted) {
  EXPECT_EQ(parse_ok("PURGE /x HTTP/1.1\r\nHost: a\r\n\r\n").method, "PURGE");
  EXPECT_EQ(parse_ok("M-SEARCH /x HTTP/1.1\r\nHost: a\r\n\r\n").method, "M-SEARCH");
  EXPECT_EQ(parse_ok("get / HTTP/1.1\r\nHost: a\r\n\r\n").method, "get");  // methods are case-sensitive tokens
}

TEST(HttpRequestParserTest, AsteriskOnlyForOptions) {
  RequestHead h;
  Error err;
  EXPECT_EQ(parse_request_head("M-SEARCH * HTTP/1.1\r\nHost: a\r\n\r\n", {}, h, err), ParseStatus::Error);
  EXPECT_EQ(err.status, 400u);
}

TEST(HttpRequestParserTest, EveryPrefixIsIncomplete) {
  const std::string_view cases[] = {
      "GET / HTTP/1.1\r\nHost: a\r\n\r\n",
      "\r\nPOST /upload HTTP/1.1\r\nHost: example.com\r\nContent-Length: 10\r\nX-Empty:\r\n\r\n",
      "GET / HTTP/1.0\r\n\r\n",
  };
  for (std::string_view full : cases) {
    for (std::size_t n = 0; n < full.size(); ++n) {
      RequestHead h;
      Error err;
      EXPECT_EQ(parse_request_head(full.substr(0, n), {}, h, err), ParseStatus::Incomplete)
          << "prefix " << n << " of " << full << ": " << err.reason;
    }
    EXPECT_EQ(parse_ok(full).head_size, full.size());
  }
}

TEST(HttpRequestParserTest, IncompleteThenCompleteOnGrownBuffer) {
  std::string buf = "GET / HTTP/1.1\r\nHo";
  RequestHead h;
  Error err;
  EXPECT_EQ(parse_request_head(buf, {}, h, err), ParseStatus::Incomplete);
  buf += "st: a\r\n\r";
  EXPECT_EQ(parse_request_head(buf, {}, h, err), ParseStatus::Incomplete);
  buf += "\n";
  ASSERT_EQ(parse_request_head(buf, {}, h, err), ParseStatus::Complete);
  EXPECT_EQ(h.host, "a");
  EXPECT_EQ(h.fields.size(), 1u);  // the earlier partial parses left nothing behind
}

TEST(HttpRequestParserTest, ErrorsAreReportedBeforeTheHeadIsComplete) {
  RequestHead h;
  Error err;
  EXPECT_EQ(parse_request_head("GET / HTTP/1.1\r\nHost: a\r\n folded", {}, h, err), ParseStatus::Error);
  EXPECT_EQ(err.reason, "obsolete line folding");
}

TEST(HttpRequestParserTest, HeadExactlyAtLimitIsAccepted) {
  const std::string_view buf = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
  const Limits exact = small_limits(buf.size(), 16, 10);
  EXPECT_EQ(parse_ok(buf, exact).head_size, buf.size());
  RequestHead h;
  Error err;
  const Limits one_less = small_limits(buf.size() - 1, 16, 10);
  ASSERT_EQ(parse_request_head(buf, one_less, h, err), ParseStatus::Error);
  EXPECT_EQ(err.status, 431u);
}

TEST(HttpRequestParserTest, IncompleteBelowHeadLimit) {
  RequestHead h;
  Error err;
  const std::string_view partial = "GET / HTTP/1.1\r\nHost: a\r\nX: 0123456789";
  EXPECT_EQ(parse_request_head(partial, small_limits(partial.size() + 1, 16, 10), h, err), ParseStatus::Incomplete);
  EXPECT_EQ(parse_request_head(partial, small_limits(partial.size(), 16, 10), h, err), ParseStatus::Error);
  EXPECT_EQ(err.status, 431u);
}

TEST(HttpRequestParserTest, FieldCountAtLimitIsAccepted) {
  const std::string_view buf = "GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\n\r\n";
  EXPECT_EQ(parse_ok(buf, small_limits(1024, 16, 2)).fields.size(), 2u);
}

TEST(HttpRequestParserTest, TargetAtLimitIsAccepted) {
  const std::string_view buf = "GET /0123456789abcde HTTP/1.1\r\nHost: a\r\n\r\n";  // 16-byte target
  EXPECT_EQ(parse_ok(buf, small_limits(1024, 16, 10)).target.size(), 16u);
}

TEST(HttpRequestParserTest, ReuseKeepsFieldCapacity) {
  RequestHead h;
  Error err;
  const std::string_view big = "GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n";
  ASSERT_EQ(parse_request_head(big, {}, h, err), ParseStatus::Complete);
  const std::size_t capacity = h.fields.capacity();
  const Field* storage = h.fields.data();
  ASSERT_EQ(parse_request_head("GET / HTTP/1.1\r\nHost: b\r\n\r\n", {}, h, err), ParseStatus::Complete);
  EXPECT_EQ(h.fields.capacity(), capacity);
  EXPECT_EQ(h.fields.data(), storage);
  EXPECT_EQ(h.host, "b");
  h.clear();
  EXPECT_EQ(h.fields.capacity(), capacity);
  EXPECT_TRUE(h.method.empty());
}

TEST(HttpRequestParserTest, ErrorResetsPreviousState) {
  RequestHead h;
  Error err;
  ASSERT_EQ(parse_request_head("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\n", {}, h, err),
            ParseStatus::Complete);
  ASSERT_EQ(parse_request_head("GET / HTTP/1.1\r\nHost: a\r\n\r\n", {}, h, err), ParseStatus::Complete);
  EXPECT_EQ(h.framing, Framing::None);
  EXPECT_EQ(h.content_length, 0u);
}

// ---------------------------------------------------------------------------------------------------
// Responses.

struct ResponseReject {
  const char* name;
  std::string_view head;
  std::string_view reason;
  RequestKind answered = RequestKind::Regular;
  Limits limits = {};
};

const ResponseReject kResponseRejects[] = {
    {"NoSpaceBeforeCode", "HTTP/1.1200 OK\r\n\r\n"sv, "malformed status line"},
    {"ShortCode", "HTTP/1.1 20 OK\r\n\r\n"sv, "invalid status code"},
    {"LongCode", "HTTP/1.1 2000 OK\r\n\r\n"sv, "invalid status code"},
    {"CodeBelow100", "HTTP/1.1 099 Odd\r\n\r\n"sv, "invalid status code"},
    {"CodeAbove599", "HTTP/1.1 600 Odd\r\n\r\n"sv, "invalid status code"},
    {"CodeNotDigits", "HTTP/1.1 2x0 OK\r\n\r\n"sv, "invalid status code"},
    {"DoubleSpace", "HTTP/1.1  200 OK\r\n\r\n"sv, "invalid status code"},
    {"Http2", "HTTP/2.0 200 OK\r\n\r\n"sv, "unsupported HTTP version"},
    {"LowercaseVersion", "http/1.1 200 OK\r\n\r\n"sv, "malformed HTTP version"},
    {"LeadingEmptyLine", "\r\nHTTP/1.1 200 OK\r\n\r\n"sv, "malformed status line"},
    {"CtlInReason", "HTTP/1.1 200 O\x01K\r\n\r\n"sv, "invalid character in reason phrase"},
    {"BareLf", "HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n"sv, "bare LF in head"},
    {"BareCr", "HTTP/1.1 200 OK\r\nX: a\rb\r\n\r\n"sv, "bare CR in head"},
    {"ObsFold", "HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n"sv, "obsolete line folding"},
    {"SpaceBeforeColon", "HTTP/1.1 200 OK\r\nContent-Length : 1\r\n\r\n"sv, "whitespace between field name and colon"},
    {"InvalidContentLength", "HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\n"sv, "invalid Content-Length"},
    {"ConflictingContentLength", "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"sv,
     "conflicting Content-Length values"},
    {"ContentLengthOverflow", "HTTP/1.1 200 OK\r\nContent-Length: 18446744073709551616\r\n\r\n"sv,
     "Content-Length too large"},
    {"InvalidContentLengthOnHead", "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n"sv, "invalid Content-Length",
     RequestKind::Head},
    {"TeInHttp10", "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"sv, "Transfer-Encoding in HTTP/1.0 message"},
    {"MalformedTe", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked,\r\n\r\n"sv, "malformed Transfer-Encoding"},
    {"ChunkedTwice", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n"sv,
     "chunked applied more than once"},
    {"ConnectionNamesFraming", "HTTP/1.1 200 OK\r\nConnection: content-length\r\nContent-Length: 1\r\n\r\n"sv,
     "Connection names a framing field"},
    {"TooManyFields", "HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\n\r\n"sv, "too many header fields", RequestKind::Regular,
     small_limits(1024, 16, 1)},
    {"HeadTooLarge", "HTTP/1.1 200 OK\r\nA: 0123456789\r\n\r\n"sv, "head too large", RequestKind::Regular,
     small_limits(20, 16, 10)},
};

class HttpResponseRejectTest : public ::testing::TestWithParam<ResponseReject> {};

TEST_P(HttpResponseRejectTest, RejectsWith502) {
  const ResponseReject& c = GetParam();
  ResponseHead head;
  Error err;
  ASSERT_EQ(parse_response_head(c.head, c.answered, c.limits, head, err), ParseStatus::Error);
  EXPECT_EQ(err.status, 502u);
  EXPECT_EQ(err.reason, c.reason);
}

INSTANTIATE_TEST_SUITE_P(Http, HttpResponseRejectTest, ::testing::ValuesIn(kResponseRejects),
                         [](const ::testing::TestParamInfo<ResponseReject>& info) { return info.param.name; });

struct ResponseFraming {
  const char* name;
  std::string_view head;
  RequestKind answered;
  Framing framing;
  bool keep_alive;
  std::uint64_t content_length = 0;
};

const ResponseFraming kResponseFramings[] = {
    {"ContentLength", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"sv, RequestKind::Regular, Framing::ContentLength,
     true, 5},
    {"IdenticalContentLengths", "HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\n"sv, RequestKind::Regular,
     Framing::ContentLength, true, 5},
    {"Chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"sv, RequestKind::Regular, Framing::Chunked,
     true},
    {"GzipThenChunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"sv, RequestKind::Regular,
     Framing::Chunked, true},
    {"TeWithoutChunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n"sv, RequestKind::Regular,
     Framing::UntilClose, false},
    {"ChunkedNotFinal", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"sv, RequestKind::Regular,
     Framing::UntilClose, false},
    {"TeWinsOverCl", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"sv,
     RequestKind::Regular, Framing::Chunked, false},
    {"NoFraming", "HTTP/1.1 200 OK\r\n\r\n"sv, RequestKind::Regular, Framing::UntilClose, false},
    {"HeadResponse", "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"sv, RequestKind::Head, Framing::None, true},
    {"HeadResponseChunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"sv, RequestKind::Head,
     Framing::None, true},
    {"NoContent", "HTTP/1.1 204 No Content\r\n\r\n"sv, RequestKind::Regular, Framing::None, true},
    {"NotModifiedWithCl", "HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n"sv, RequestKind::Regular,
     Framing::None, true},
    {"Continue", "HTTP/1.1 100 Continue\r\n\r\n"sv, RequestKind::Regular, Framing::None, true},
    {"ConnectEstablished", "HTTP/1.1 200 Connection Established\r\n\r\n"sv, RequestKind::Connect, Framing::Tunnel,
     true},
    {"ConnectRefused", "HTTP/1.1 407 Auth\r\nContent-Length: 3\r\n\r\n"sv, RequestKind::Connect,
     Framing::ContentLength, true, 3},
    {"Http10Default", "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n"sv, RequestKind::Regular, Framing::ContentLength,
     false, 2},
    {"Http10KeepAlive", "HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 2\r\n\r\n"sv,
     RequestKind::Regular, Framing::ContentLength, true, 2},
    {"Http11Close", "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\n"sv, RequestKind::Regular,
     Framing::ContentLength, false, 2},
};

class HttpResponseFramingTest : public ::testing::TestWithParam<ResponseFraming> {};

TEST_P(HttpResponseFramingTest, Frames) {
  const ResponseFraming& c = GetParam();
  ResponseHead h;
  Error err;
  ASSERT_EQ(parse_response_head(c.head, c.answered, {}, h, err), ParseStatus::Complete) << err.reason;
  EXPECT_EQ(h.framing, c.framing);
  EXPECT_EQ(h.keep_alive, c.keep_alive);
  EXPECT_EQ(h.content_length, c.content_length);
  EXPECT_EQ(h.head_size, c.head.size());
}

INSTANTIATE_TEST_SUITE_P(Http, HttpResponseFramingTest, ::testing::ValuesIn(kResponseFramings),
                         [](const ::testing::TestParamInfo<ResponseFraming>& info) { return info.param.name; });

TEST(HttpResponseParserTest, StatusLine) {
  ResponseHead h;
  Error err;
  ASSERT_EQ(parse_response_head("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", RequestKind::Regular, {}, h,
                                err),
            ParseStatus::Complete);
  EXPECT_EQ(h.status, 404u);
  EXPECT_EQ(h.reason, "Not Found");
  EXPECT_EQ(h.version_minor, 1u);
  ASSERT_EQ(h.fields.size(), 1u);
  EXPECT_FALSE(h.upgrade);
}

TEST(HttpResponseParserTest, EmptyReasonWithAndWithoutSpace) {
  for (std::string_view buf : {"HTTP/1.1 200 \r\nContent-Length: 0\r\n\r\n"sv,
                               "HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n"sv}) {
    ResponseHead h;
    Error err;
    ASSERT_EQ(parse_response_head(buf, RequestKind::Regular, {}, h, err), ParseStatus::Complete) << buf;
    EXPECT_EQ(h.status, 200u);
    EXPECT_TRUE(h.reason.empty());
  }
}

TEST(HttpResponseParserTest, SwitchingProtocolsIsAnUpgrade) {
  ResponseHead h;
  Error err;
  ASSERT_EQ(parse_response_head("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
                                RequestKind::Regular, {}, h, err),
            ParseStatus::Complete);
  EXPECT_TRUE(h.upgrade);
  EXPECT_EQ(h.framing, Framing::None);
}

TEST(HttpResponseParserTest, BodyAfterHeadIsLeftAlone) {
  const std::string_view head = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n";
  const std::string buf = std::string(head) + "hello";
  ResponseHead h;
  Error err;
  ASSERT_EQ(parse_response_head(buf, RequestKind::Regular, {}, h, err), ParseStatus::Complete);
  EXPECT_EQ(h.head_size, head.size());
}

TEST(HttpResponseParserTest, EveryPrefixIsIncomplete) {
  const std::string_view full = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\n";
  for (std::size_t n = 0; n < full.size(); ++n) {
    ResponseHead h;
    Error err;
    EXPECT_EQ(parse_response_head(full.substr(0, n), RequestKind::Regular, {}, h, err), ParseStatus::Incomplete)
        << n;
  }
}

}  // namespace
}  // namespace drainproxy::http
