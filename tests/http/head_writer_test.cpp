#include "http/head_writer.hpp"

#include <gtest/gtest.h>

#include <string>
#include <string_view>

#include "http/parser.hpp"

namespace drainproxy::http {
namespace {

using namespace std::string_view_literals;

RequestHead parse_request(std::string_view buf) {
  RequestHead h;
  Error err;
  EXPECT_EQ(parse_request_head(buf, {}, h, err), ParseStatus::Complete) << err.reason;
  return h;
}

ResponseHead parse_response(std::string_view buf, RequestKind answered = RequestKind::Regular) {
  ResponseHead h;
  Error err;
  EXPECT_EQ(parse_response_head(buf, answered, {}, h, err), ParseStatus::Complete) << err.reason;
  return h;
}

std::string write_request(std::string_view buf, const ForwardInfo& fi = {"10.0.0.7", "http", true, {}}) {
  std::string out;
  write_request_head(parse_request(buf), fi, out);
  return out;
}

std::string write_response(std::string_view buf, const ResponseForwardInfo& fi = {},
                           RequestKind answered = RequestKind::Regular) {
  std::string out;
  write_response_head(parse_response(buf, answered), fi, out);
  return out;
}

// ---------------------------------------------------------------------------------------------------
// Requests: table of input head -> exact forwarded head.

struct RequestCase {
  const char* name;
  std::string_view in;
  std::string_view out;
  ForwardInfo fi = {"10.0.0.7", "http", true, {}};
};

const RequestCase kRequestCases[] = {
    {"Simple", "GET /a?b HTTP/1.1\r\nHost: svc\r\nAccept: */*\r\n\r\n"sv,
     "GET /a?b HTTP/1.1\r\nHost: svc\r\nAccept: */*\r\nX-Forwarded-For: 10.0.0.7\r\nX-Forwarded-Proto: http\r\n"
     "X-Forwarded-Host: svc\r\nConnection: keep-alive\r\n\r\n"sv},
    {"Http10BecomesHttp11WithEmptyHost", "GET / HTTP/1.0\r\n\r\n"sv,
     "GET / HTTP/1.1\r\nHost: \r\nX-Forwarded-For: 10.0.0.7\r\nX-Forwarded-Proto: http\r\n"
     "Connection: keep-alive\r\n\r\n"sv},
    {"Http10GetsDefaultHost", "GET / HTTP/1.0\r\nAccept: x\r\n\r\n"sv,
     "GET / HTTP/1.1\r\nAccept: x\r\nHost: backend:8080\r\nX-Forwarded-For: 10.0.0.7\r\nX-Forwarded-Proto: http\r\n"
     "Connection: keep-alive\r\n\r\n"sv,
     {"10.0.0.7", "http", true, "backend:8080"}},
    {"Http10WithHostKeepsIt", "GET / HTTP/1.0\r\nHost: h\r\n\r\n"sv,
     "GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 10.0.0.7\r\nX-Forwarded-Proto: http\r\n"
     "X-Forwarded-Host: h\r\nConnection: keep-alive\r\n\r\n"sv,
     {"10.0.0.7", "http", true, "backend:8080"}},
    {"CloseUpstream", "GET / HTTP/1.1\r\nHost: h\r\n\r\n"sv,
     "GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 1.2.3.4\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: h\r\n"
     "Connection: close\r\n\r\n"sv,
     {"1.2.3.4", "https", false, {}}},
    {"HopByHopRemoved",
     "GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\nProxy-Connection: "
     "keep-alive\r\nTE: trailers\r\nUpgrade: foo/1\r\nAccept: x\r\n\r\n"sv,
     "GET / HTTP/1.1\r\nHost: h\r\nAccept: x\r\nX-Forwarded-For: 10.0.0.7\r\nX-Forwarded-Proto: http\r\n"
     "X-Forwarded-Host: h\r\nConnection: keep-alive\r\n\r\n"sv},
    {"ProxyAuthAndTrailerKept",
     "GET / HTTP/1.1\r\nHost: h\r\nProxy-Authorization: Basic x\r\nProxy-Authenticate: y\r\nTrailer: X-Sum\r\n\r\n"sv,
     "GET / HTTP/1.1\r\nHost: h\r\nProxy-Authorization: Basic x\r\nProxy-Authenticate: y\r\nTrailer: X-Sum\r\n"
     "X-Forwarded-For: 10.0.0.7\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: h\r\nConnection: keep-alive\r\n\r\n"sv},
    {"FieldsNamedInConnectionRemoved",
     "GET / HTTP/1.1\r\nHost: h\r\nConnection: X-Secret, x-other\r\nX-SECRET: 1\r\nX-Other: 2\r\nX-Kept: 3\r\n"
     "Connection: Dnt\r\nDNT: 1\r\n\r\n"sv,
     "GET / HTTP/1.1\r\nHost: h\r\nX-Kept: 3\r\nX-Forwarded-For: 10.0.0.7\r\nX-Forwarded-Proto: http\r\n"
     "X-Forwarded-Host: h\r\nConnection: keep-alive\r\n\r\n"sv},
    {"ChunkedRequestKeepsTransferEncoding", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"sv,
     "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nX-Forwarded-For: 10.0.0.7\r\n"
     "X-Forwarded-Proto: http\r\nX-Forwarded-Host: h\r\nConnection: keep-alive\r\n\r\n"sv},
    {"ContentLengthKept", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nConnection: close\r\n\r\n"sv,
     "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nX-Forwarded-For: 10.0.0.7\r\nX-Forwarded-Proto: http\r\n"
     "X-Forwarded-Host: h\r\nConnection: keep-alive\r\n\r\n"sv},
    {"XffAppended", "GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 1.1.1.1\r\n\r\n"sv,
     "GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 1.1.1.1, 10.0.0.7\r\nX-Forwarded-Proto: http\r\n"
     "X-Forwarded-Host: h\r\nConnection: keep-alive\r\n\r\n"sv},
    {"XffLinesCombined",
     "GET / HTTP/1.1\r\nx-forwarded-for: 1.1.1.1, 2.2.2.2\r\nHost: h\r\nX-Forwarded-For: 3.3.3.3\r\n"
     "X-Forwarded-For:\r\n\r\n"sv,
     "GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 1.1.1.1, 2.2.2.2, 3.3.3.3, 10.0.0.7\r\n"
     "X-Forwarded-Proto: http\r\nX-Forwarded-Host: h\r\nConnection: keep-alive\r\n\r\n"sv},
    {"XfpReplaced", "GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-Proto: https\r\nx-forwarded-proto: ftp\r\n\r\n"sv,
     "GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 10.0.0.7\r\nX-Forwarded-Proto: http\r\n"
     "X-Forwarded-Host: h\r\nConnection: keep-alive\r\n\r\n"sv},
    {"XfhKept", "GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-Host: public.example\r\n\r\n"sv,
     "GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-Host: public.example\r\nX-Forwarded-For: 10.0.0.7\r\n"
     "X-Forwarded-Proto: http\r\nConnection: keep-alive\r\n\r\n"sv},
    {"AbsoluteFormAuthorityReplacesHost", "GET http://origin:81/x HTTP/1.1\r\nHost: h\r\n\r\n"sv,
     "GET http://origin:81/x HTTP/1.1\r\nHost: origin:81\r\nX-Forwarded-For: 10.0.0.7\r\nX-Forwarded-Proto: http\r\n"
     "X-Forwarded-Host: origin:81\r\nConnection: keep-alive\r\n\r\n"sv},
    {"WebSocketUpgradeKept",
     "GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: k\r\n"
     "Sec-WebSocket-Version: 13\r\n\r\n"sv,
     "GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nSec-WebSocket-Key: k\r\nSec-WebSocket-Version: 13\r\n"
     "X-Forwarded-For: 10.0.0.7\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: h\r\nConnection: upgrade\r\n\r\n"sv},
    {"H2cUpgradeDropped",
     "GET / HTTP/1.1\r\nHost: h\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMA\r\n\r\n"sv,
     "GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 10.0.0.7\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: h\r\n"
     "Connection: keep-alive\r\n\r\n"sv},
    {"NoClientIp", "GET / HTTP/1.1\r\nHost: h\r\n\r\n"sv,
     "GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: h\r\nConnection: keep-alive\r\n\r\n"sv,
     {"", "http", true, {}}},
};

class HeadWriterRequestTest : public ::testing::TestWithParam<RequestCase> {};

TEST_P(HeadWriterRequestTest, Writes) {
  const RequestCase& c = GetParam();
  EXPECT_EQ(write_request(c.in, c.fi), c.out);
}

TEST_P(HeadWriterRequestTest, OutputParsesAgain) {
  const RequestCase& c = GetParam();
  const std::string out = write_request(c.in, c.fi);
  const RequestHead in = parse_request(c.in);
  const RequestHead again = parse_request(out);
  EXPECT_EQ(again.head_size, out.size());
  EXPECT_EQ(again.method, in.method);
  EXPECT_EQ(again.target, in.target);
  EXPECT_EQ(again.framing, in.framing);
  EXPECT_EQ(again.content_length, in.content_length);
  EXPECT_EQ(again.upgrade_websocket, in.upgrade_websocket);
}

INSTANTIATE_TEST_SUITE_P(HeadWriter, HeadWriterRequestTest, ::testing::ValuesIn(kRequestCases),
                         [](const ::testing::TestParamInfo<RequestCase>& info) { return info.param.name; });

TEST(HeadWriterTest, AppendsToTheCallersBuffer) {
  std::string out = "prefix|";
  write_request_head(parse_request("GET / HTTP/1.1\r\nHost: h\r\n\r\n"), {"1.2.3.4", "http", true, {}}, out);
  EXPECT_EQ(out.rfind("prefix|GET / HTTP/1.1\r\n", 0), 0u);
}

TEST(HeadWriterTest, ReusedBufferKeepsItsCapacity) {
  const RequestHead h = parse_request("GET / HTTP/1.1\r\nHost: h\r\nAccept: */*\r\n\r\n");
  std::string out;
  write_request_head(h, {"1.2.3.4", "http", true, {}}, out);
  const std::string first = out;
  const std::size_t capacity = out.capacity();
  out.clear();
  write_request_head(h, {"1.2.3.4", "http", true, {}}, out);
  EXPECT_EQ(out, first);
  EXPECT_EQ(out.capacity(), capacity);
}

TEST(HeadWriterTest, FramingFieldsAreNeverHopByHop) {
  // The parser refuses Connection tokens naming these; the writer does not rely on it.
  const std::vector<Field> fields = {{"Connection", "Content-Length, Transfer-Encoding, Host, X-A"}};
  EXPECT_FALSE(is_hop_by_hop("Content-Length", fields, false));
  EXPECT_FALSE(is_hop_by_hop("transfer-encoding", fields, false));
  EXPECT_FALSE(is_hop_by_hop("HOST", fields, false));
  EXPECT_TRUE(is_hop_by_hop("x-a", fields, false));
  EXPECT_FALSE(is_hop_by_hop("X-B", fields, false));
  EXPECT_TRUE(is_hop_by_hop("Upgrade", fields, false));
  EXPECT_FALSE(is_hop_by_hop("Upgrade", fields, true));
  EXPECT_TRUE(is_hop_by_hop("te", fields, false));
  EXPECT_FALSE(is_hop_by_hop("Trailer", fields, false));
}

TEST(HeadWriterTest, ManyConnectionTokensAllCount) {
  // More tokens than the writer gathers up front: the late ones still name hop-by-hop fields.
  const RequestHead h = parse_request(
      "GET / HTTP/1.1\r\nHost: h\r\nConnection: a1, a2, a3, a4\r\nConnection: a5, a6, a7, a8, a9, X-Late\r\n"
      "X-Late: 1\r\nA9: 2\r\nA1: 3\r\nX-Kept: 4\r\n\r\n");
  std::string out;
  write_request_head(h, {"1.2.3.4", "http", true, {}}, out);
  EXPECT_EQ(out.find("X-Late"), std::string::npos) << out;
  EXPECT_EQ(out.find("A9:"), std::string::npos) << out;
  EXPECT_EQ(out.find("A1:"), std::string::npos) << out;
  EXPECT_NE(out.find("X-Kept: 4\r\n"), std::string::npos) << out;
  EXPECT_TRUE(is_hop_by_hop("x-late", h.fields, false));
  EXPECT_FALSE(is_hop_by_hop("x-kept", h.fields, false));
}

// ---------------------------------------------------------------------------------------------------
// Responses.

TEST(HeadWriterResponseTest, Simple) {
  EXPECT_EQ(write_response("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\n"),
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\n");
}

TEST(HeadWriterResponseTest, Http10UpstreamIsForwardedAsHttp11) {
  EXPECT_EQ(write_response("HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n"),
            "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
}

TEST(HeadWriterResponseTest, EmptyReasonKeepsTheSpace) {
  EXPECT_EQ(write_response("HTTP/1.1 204\r\n\r\n"), "HTTP/1.1 204 \r\n\r\n");
}

TEST(HeadWriterResponseTest, HopByHopRemoved) {
  EXPECT_EQ(write_response("HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Internal\r\nKeep-Alive: timeout=5\r\n"
                           "X-Internal: 1\r\nUpgrade: h2c\r\nTransfer-Encoding: chunked\r\nServer: s\r\n\r\n"),
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nServer: s\r\n\r\n");
}

TEST(HeadWriterResponseTest, CloseConnection) {
  EXPECT_EQ(write_response("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", {true, 1}),
            "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
}

TEST(HeadWriterResponseTest, Http10ClientGetsExplicitKeepAlive) {
  EXPECT_EQ(write_response("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", {false, 0}),
            "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n");
  EXPECT_EQ(write_response("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", {true, 0}),
            "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
}

TEST(HeadWriterResponseTest, SwitchingProtocolsKeepsUpgrade) {
  EXPECT_EQ(write_response("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
                           "Sec-WebSocket-Accept: abc\r\n\r\n"),
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: abc\r\n"
            "Connection: upgrade\r\n\r\n");
}

TEST(HeadWriterResponseTest, OutputParsesAgain) {
  const std::string out = write_response("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 7\r\n\r\n", {true, 1});
  const ResponseHead again = parse_response(out);
  EXPECT_EQ(again.status, 200u);
  EXPECT_EQ(again.framing, Framing::ContentLength);
  EXPECT_EQ(again.content_length, 7u);
  EXPECT_FALSE(again.keep_alive);
  EXPECT_EQ(again.head_size, out.size());
}

}  // namespace
}  // namespace drainproxy::http

namespace drainproxy::http {
namespace {

TEST(HeadWriterTest, RepeatedContentLengthReachesTheAppAsOneValue) {
  const std::string out = write_request("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3, 3\r\nContent-Length: 3\r\n\r\n");
  EXPECT_NE(out.find("Content-Length: 3\r\n"), std::string::npos) << out;
  EXPECT_EQ(out.find("3, 3"), std::string::npos) << out;
  EXPECT_EQ(out.find("Content-Length", out.find("Content-Length") + 1), std::string::npos) << out;
}

TEST(HeadWriterTest, ExpectIsDroppedWhenTheProxyAnsweredIt) {
  const std::string buf = "PUT / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n";
  EXPECT_NE(write_request(buf).find("Expect: 100-continue"), std::string::npos);
  ForwardInfo fi{"10.0.0.7", "http", true, {}};
  fi.strip_expect = true;
  EXPECT_EQ(write_request(buf, fi).find("Expect"), std::string::npos);
}

TEST(HeadWriterTest, ResponseContentLengthIsNormalisedToo) {
  const std::string out = write_response("HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\n\r\n");
  EXPECT_NE(out.find("Content-Length: 2\r\n"), std::string::npos) << out;
  EXPECT_EQ(out.find("2, 2"), std::string::npos) << out;
}

}  // namespace
}  // namespace drainproxy::http
