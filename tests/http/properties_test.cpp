// Seeded random inputs through the properties of tests/http/properties.hpp: well-formed
// messages, mutated with the bytes that matter to HTTP framing. Deterministic, so a failure
// reproduces; fuzz/ runs the same properties coverage-guided for as long as one wants.
#include "properties.hpp"

#include <gtest/gtest.h>

#include <array>
#include <cstdint>
#include <random>
#include <string>
#include <string_view>
#include <vector>

namespace drainproxy::http::properties {
namespace {

using namespace std::string_view_literals;

constexpr std::array kRequestSeeds = {
    "GET / HTTP/1.1\r\nHost: a\r\n\r\n"sv,
    "POST /x HTTP/1.1\r\nHost: a:80\r\nContent-Length: 5\r\nConnection: keep-alive, X-A\r\nX-A: 1\r\n\r\n"sv,
    "POST http://h:1/p HTTP/1.0\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n"sv,
    "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"sv,
    "CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n"sv,
    "\r\nOPTIONS * HTTP/1.1\r\nHost: [::1]:8\r\nTE: trailers\r\nKeep-Alive: 5\r\n\r\n"sv,
    "HEAD /h HTTP/1.0\r\nConnection: keep-alive\r\nProxy-Connection: x\r\n\r\n"sv,
    "POST /c HTTP/1.1\r\nHost: a\r\nConnection: Content-Length, TE\r\nContent-Length: 4\r\n\r\n"sv,
};

constexpr std::array kResponseSeeds = {
    "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n"sv,
    "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n"sv,
    "HTTP/1.1 200 Connection established\r\n\r\n"sv,
    "HTTP/1.1 101 Switching\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n"sv,
    "HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n"sv,
    "HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked\r\n\r\n"sv,
    "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"sv,
    "HTTP/1.1 500 x\r\nConnection: close, X\r\nX: 1\r\nContent-Length: 0\r\n\r\n"sv,
};

constexpr std::array kChunkedSeeds = {
    "a;x=1;y=\"q\\\"z\"\r\n0123456789\r\n0\r\nT: v\r\n\r\n"sv,
    "5\r\nhello\r\n0\r\n\r\n"sv,
    "0\r\nContent-Length: 4\r\nX: y\r\n\r\n"sv,
    "ff ; ext\r\n"sv,
};

// The bytes that decide framing, and the ones parsers get wrong.
constexpr std::array kTokens = {
    "\r\n"sv, "\r\n\r\n"sv, "\n"sv, "\r"sv, " "sv, "\t"sv, ":"sv, ";"sv, ","sv, "="sv, "\""sv, "\\"sv, "0"sv,
    "\x00"sv, "\xff"sv, "\x7f"sv, "Content-Length: "sv, "Transfer-Encoding: "sv, "chunked"sv, "gzip, chunked"sv,
    "Connection: "sv, "close"sv, "keep-alive"sv, "upgrade"sv, "Upgrade: "sv, "websocket"sv, "h2c"sv, "Host: "sv,
    "Expect: "sv, "100-continue"sv, " HTTP/1.1"sv, " HTTP/1.0"sv, "HTTP/1.1 "sv, "http://"sv, "["sv, "]"sv, ":80"sv,
    "Connection: content-length\r\n"sv, "Connection: x, transfer-encoding\r\n"sv, "Content-Length: 4\r\n"sv,
    "Transfer-Encoding: chunked\r\n"sv, "18446744073709551616"sv, "ffffffffffffffffff"sv, "-1"sv, "+5"sv, "0x10"sv,
};

class Mutator {
 public:
  explicit Mutator(std::uint32_t seed) : rng_(seed) {}

  template <std::size_t N>
  std::string next(const std::array<std::string_view, N>& seeds) {
    std::string s(seeds[pick(N)]);
    if (pick(8) == 0) s += seeds[pick(N)];  // two messages back to back
    const std::size_t edits = 1 + pick(6);
    for (std::size_t i = 0; i < edits; ++i) edit(s);
    return s;
  }

  std::size_t pick(std::size_t n) { return std::uniform_int_distribution<std::size_t>(0, n - 1)(rng_); }

 private:
  void edit(std::string& s) {
    const std::size_t pos = pick(s.size() + 1);
    switch (pick(6)) {
      case 0:
        s.erase(pos, 1 + pick(8));
        break;
      case 1:
        s.insert(pos, kTokens[pick(kTokens.size())]);
        break;
      case 2:
        if (!s.empty()) s[std::min(pos, s.size() - 1)] = static_cast<char>(pick(256));
        break;
      case 3:
        s.insert(pos, 1 + pick(300), "a1 "[pick(3)]);
        break;
      case 4:
        if (!s.empty()) {
          const std::size_t from = pick(s.size());
          s.insert(pos, s.substr(from, 1 + pick(40)));
        }
        break;
      default:
        if (pos < s.size()) s[pos] = static_cast<char>(s[pos] ^ (1 << pick(8)));
        break;
    }
  }

  std::mt19937 rng_;
};

std::string printable(std::string_view s) {
  std::string out;
  for (const char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (u >= 0x20 && u < 0x7f && c != '\\') {
      out += c;
    } else {
      static constexpr char kHex[] = "0123456789abcdef";
      out += "\\x";
      out += kHex[u >> 4];
      out += kHex[u & 15];
    }
  }
  return out;
}

constexpr int kInputs = 200000;
constexpr int kMaxReported = 5;

TEST(HttpProperties, SeedsPass) {
  for (const auto s : kRequestSeeds) EXPECT_EQ(check_request(s), "") << printable(s);
  for (const auto s : kResponseSeeds)
    for (unsigned char kind = 0; kind < 3; ++kind) EXPECT_EQ(check_response(kind, s), "") << printable(s);
  for (const auto s : kChunkedSeeds) EXPECT_EQ(check_chunked(5, s), "") << printable(s);
}

TEST(HttpProperties, MutatedRequests) {
  Mutator m(20261127);
  int failures = 0;
  for (int i = 0; i < kInputs && failures < kMaxReported; ++i) {
    const std::string in = m.next(kRequestSeeds);
    const std::string problem = check_request(in);
    if (!problem.empty()) {
      ++failures;
      ADD_FAILURE() << problem << "\n--- input ---\n" << printable(in);
    }
  }
}

TEST(HttpProperties, MutatedResponses) {
  Mutator m(7);
  int failures = 0;
  for (int i = 0; i < kInputs && failures < kMaxReported; ++i) {
    const std::string in = m.next(kResponseSeeds);
    const auto kind = static_cast<unsigned char>(m.pick(3));
    const std::string problem = check_response(kind, in);
    if (!problem.empty()) {
      ++failures;
      ADD_FAILURE() << problem << "\n--- input (kind " << int(kind) << ") ---\n" << printable(in);
    }
  }
}

TEST(HttpProperties, MutatedChunkedBodies) {
  Mutator m(11);
  int failures = 0;
  for (int i = 0; i < kInputs && failures < kMaxReported; ++i) {
    const std::string in = m.next(kChunkedSeeds);
    const auto split = static_cast<unsigned>(m.pick(1000));
    const std::string problem = check_chunked(split, in);
    if (!problem.empty()) {
      ++failures;
      ADD_FAILURE() << problem << "\n--- input (split " << split << ") ---\n" << printable(in);
    }
  }
}

}  // namespace
}  // namespace drainproxy::http::properties
