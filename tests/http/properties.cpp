#include "properties.hpp"

#include <cstdint>
#include <string>

#include "http/chunked.hpp"
#include "http/head_writer.hpp"
#include "http/parser.hpp"

namespace drainproxy::http::properties {
namespace {

// Small limits so that inputs of a few hundred bytes reach every limit check.
Limits small_limits() {
  Limits l;
  l.max_head_bytes = 4096;
  l.max_target_bytes = 1024;
  l.max_fields = 20;
  return l;
}

// What the proxy forwards is never limited by our own small limits.
Limits loose_limits() {
  Limits l;
  l.max_head_bytes = 1 << 20;
  l.max_target_bytes = 1 << 20;
  l.max_fields = 1000;
  return l;
}

bool inside(std::string_view v, std::string_view buf) {
  return v.empty() || (v.data() >= buf.data() && v.data() + v.size() <= buf.data() + buf.size());
}

std::string fail(std::string_view what, std::string_view detail = {}) {
  std::string s(what);
  if (!detail.empty()) {
    s += "\n--- forwarded ---\n";
    s += detail;
  }
  return s;
}

// Bytes that could follow a head: a body, or the next request. Holds a NUL, hence the length.
constexpr char kTrailingBytes[] = "\x00\xff garbage\r\n\r\n";
constexpr std::string_view kTrailing(kTrailingBytes, sizeof kTrailingBytes - 1);

}  // namespace

std::string check_request(std::string_view bytes) {
  const Limits limits = small_limits();
  const std::string buf(bytes);
  RequestHead h;
  Error err;
  const ParseStatus st = parse_request_head(buf, limits, h, err);
  if (st == ParseStatus::Error) {
    if (err.status < 400 || err.status > 599) return fail("error status outside 4xx/5xx");
    if (err.reason.empty()) return fail("error without a reason");
    return {};
  }
  if (st == ParseStatus::Incomplete) {
    if (buf.size() >= limits.max_head_bytes) return fail("incomplete beyond max_head_bytes");
    return {};
  }
  if (h.head_size == 0 || h.head_size > buf.size()) return fail("head_size outside the input");
  if (!inside(h.method, buf) || !inside(h.target, buf) || !inside(h.host, buf)) return fail("view outside the input");
  for (const Field& f : h.fields)
    if (!inside(f.name, buf) || !inside(f.value, buf)) return fail("field view outside the input");
  {
    RequestHead p;
    Error e;
    if (parse_request_head(std::string_view(buf).substr(0, h.head_size - 1), limits, p, e) != ParseStatus::Incomplete)
      return fail("a strict prefix of a complete head is not incomplete");
  }
  {
    const std::string more = buf.substr(0, h.head_size) + std::string(kTrailing);
    RequestHead p;
    Error e;
    if (parse_request_head(more, limits, p, e) != ParseStatus::Complete || p.head_size != h.head_size ||
        p.framing != h.framing || p.content_length != h.content_length)
      return fail("bytes after the head changed the parse");
  }
  std::string out;
  write_request_head(h, ForwardInfo{"10.0.0.7", "http", true, "backend:8080"}, out);
  RequestHead f;
  Error fe;
  if (parse_request_head(out, loose_limits(), f, fe) != ParseStatus::Complete)
    return fail("the forwarded head does not parse: " + std::string(fe.reason), out);
  if (f.head_size != out.size()) return fail("the forwarded head has bytes after its end", out);
  if (f.method != h.method || f.target != h.target) return fail("method or target changed", out);
  if (f.framing != h.framing || f.content_length != h.content_length) return fail("body framing changed", out);
  if (!h.host.empty() && f.host != h.host) return fail("host changed", out);
  if (f.version_minor != 1) return fail("not forwarded as HTTP/1.1", out);
  return {};
}

std::string check_response(unsigned char kind_byte, std::string_view bytes) {
  const auto kind = static_cast<RequestKind>(kind_byte % 3);
  const Limits limits = small_limits();
  const std::string buf(bytes);
  ResponseHead h;
  Error err;
  const ParseStatus st = parse_response_head(buf, kind, limits, h, err);
  if (st == ParseStatus::Error) {
    if (err.status != 502 || err.reason.empty()) return fail("error is not 502 with a reason");
    return {};
  }
  if (st == ParseStatus::Incomplete) return {};
  if (h.head_size == 0 || h.head_size > buf.size()) return fail("head_size outside the input");
  if (h.status < 100 || h.status > 999) return fail("status outside 100-999");
  {
    ResponseHead p;
    Error e;
    if (parse_response_head(std::string_view(buf).substr(0, h.head_size - 1), kind, limits, p, e) !=
        ParseStatus::Incomplete)
      return fail("a strict prefix of a complete head is not incomplete");
  }
  for (const bool close : {false, true}) {
    for (const unsigned minor : {0u, 1u}) {
      std::string out;
      write_response_head(h, ResponseForwardInfo{close, minor}, out);
      ResponseHead f;
      Error fe;
      if (parse_response_head(out, kind, loose_limits(), f, fe) != ParseStatus::Complete)
        return fail("the forwarded head does not parse: " + std::string(fe.reason), out);
      if (f.status != h.status) return fail("status changed", out);
      if (f.framing != h.framing || f.content_length != h.content_length) return fail("body framing changed", out);
      const bool switches = h.upgrade || h.framing == Framing::Tunnel;
      if (close && !switches && f.keep_alive) return fail("a closing response reads as keep-alive", out);
    }
  }
  return {};
}

namespace {

struct ChunkedOutcome {
  std::size_t consumed = 0;
  std::uint64_t payload = 0;
  bool done = false;
  bool error = false;
};

// split_seed 0 feeds the body whole; others feed it in pieces of 1..17 bytes.
ChunkedOutcome feed_chunked(std::string_view body, unsigned split_seed, std::string& problem) {
  ChunkedFramer framer(64, 256);
  ChunkedOutcome o;
  std::size_t pos = 0;
  unsigned step = 0;
  while (pos < body.size() && !o.done && !o.error) {
    std::size_t n = split_seed == 0 ? body.size() : 1 + (split_seed * 7u + step++ * 13u) % (split_seed % 17u + 1u);
    if (n > body.size() - pos) n = body.size() - pos;
    const auto r = framer.feed(body.substr(pos, n));
    if (r.consumed > n) problem = "consumed more than it was given";
    if (!r.done && !r.error && r.consumed != n) problem = "left bytes unconsumed without finishing";
    if (r.error && (r.reason.empty() || !framer.failed())) problem = "error without a reason or failed state";
    o.consumed += r.consumed;
    o.done = r.done;
    o.error = r.error;
    pos += n;
  }
  o.payload = framer.payload_bytes();
  if (o.payload > o.consumed) problem = "more payload than body bytes";
  return o;
}

}  // namespace

std::string check_chunked(unsigned split_seed, std::string_view bytes) {
  std::string problem;
  const ChunkedOutcome whole = feed_chunked(bytes, 0, problem);
  const ChunkedOutcome split = feed_chunked(bytes, split_seed | 1u, problem);
  if (!problem.empty()) return fail(problem);
  if (whole.done != split.done || whole.error != split.error) return fail("the verdict depends on the split");
  if (!whole.error && (whole.consumed != split.consumed || whole.payload != split.payload))
    return fail("the byte counts depend on the split");
  return {};
}

}  // namespace drainproxy::http::properties
