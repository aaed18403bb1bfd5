#pragma once
// Plain data types of an HTTP/1.x message head (RFC 9112). All string_views point into the caller's
// receive buffer, which must outlive the head and must not move while the head is in use.
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

namespace drainproxy::http {

struct Limits {
  std::size_t max_head_bytes = 64 * 1024;  // request/status line + fields + final CRLF (431 / 502 beyond)
  std::size_t max_target_bytes = 8 * 1024;  // 414 beyond
  std::size_t max_fields = 100;             // 431 beyond
};

struct Field {
  std::string_view name;   // as received (case preserved)
  std::string_view value;  // surrounding OWS trimmed
};

enum class Framing : std::uint8_t {
  None,           // no body
  ContentLength,  // content_length bytes follow
  Chunked,        // chunked body: feed it to ChunkedFramer
  UntilClose,     // responses only: body ends when the upstream closes
  Tunnel,         // responses only: 2xx to CONNECT, the connection becomes an opaque tunnel
};

// Why a head was rejected: the status to answer with (for responses always 502) and a short static text.
struct Error {
  unsigned status = 0;
  std::string_view reason;
};

enum class ParseStatus : std::uint8_t { Complete, Incomplete, Error };

// What the response answers: decides whether it can carry a body (RFC 9112 §6.3).
enum class RequestKind : std::uint8_t { Regular, Head, Connect };

struct RequestHead {
  std::string_view method;
  std::string_view target;
  unsigned version_minor = 1;  // HTTP/1.0 or HTTP/1.1 only
  std::vector<Field> fields;   // in order, duplicates kept
  Framing framing = Framing::None;
  std::uint64_t content_length = 0;  // meaningful when framing == ContentLength
  bool keep_alive = false;           // RFC 9112 §9.3
  bool expect_continue = false;      // Expect: 100-continue on an HTTP/1.1 request
  bool upgrade_websocket = false;    // Connection: upgrade + Upgrade: websocket
  bool upgrade_h2c = false;          // Connection: upgrade + Upgrade: h2c
  std::string_view host;             // Host value, or the authority of an absolute-form target
  std::size_t head_size = 0;         // bytes of the head incl. skipped leading CRLFs and the final CRLFCRLF

  bool is_head_method() const { return method == "HEAD"; }
  bool is_connect() const { return method == "CONNECT"; }
  RequestKind kind() const;
  void clear();  // keeps the capacity of fields
};

struct ResponseHead {
  unsigned status = 0;
  unsigned version_minor = 1;
  std::string_view reason;
  std::vector<Field> fields;
  Framing framing = Framing::None;
  std::uint64_t content_length = 0;  // meaningful when framing == ContentLength
  bool keep_alive = false;           // false whenever the body is delimited by close or framing was dubious
  bool upgrade = false;              // 101 Switching Protocols
  std::size_t head_size = 0;

  void clear();  // keeps the capacity of fields
};

}  // namespace drainproxy::http
