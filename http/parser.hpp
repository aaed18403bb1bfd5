#pragma once
// Strict HTTP/1.1 message-head parser (RFC 9112, RFC 9110). Zero-copy: the heads hold views into `buf`.
// No allocation once `out.fields` has grown to the usual number of fields (clear() keeps its capacity).
//
// Restartable: on Incomplete, read more bytes into the same buffer and call again with the whole
// (grown) buffer; the parse starts from scratch. Bytes after head_size (pipelined requests, body) are
// never looked at.
#include <string_view>

#include "http/message.hpp"

namespace drainproxy::http {

// Complete: `out` is filled, out.head_size bytes of `buf` form the head.
// Incomplete: more bytes are needed (buf is still shorter than limits.max_head_bytes).
// Error: `err` says which status to answer with and why; the connection must not be reused.
ParseStatus parse_request_head(std::string_view buf, const Limits& limits, RequestHead& out, Error& err);

// Parses a response head received from the upstream. Framing depends on the request it answers: HEAD and
// 1xx/204/304 never have a body, a 2xx to CONNECT turns the connection into a tunnel. Every violation is
// reported as status 502 (the proxy's answer to the client).
ParseStatus parse_response_head(std::string_view buf, RequestKind answered, const Limits& limits, ResponseHead& out,
                                Error& err);

// True if `s` is uri-host [ ":" port ] (RFC 3986 §3.2.2, RFC 9110 §7.2): reg-name, IPv4 or an IP-literal in
// brackets; no userinfo, no '/', no ',', no whitespace; port is 1-5 digits <= 65535.
bool is_valid_host(std::string_view s, bool allow_empty, bool require_port);

}  // namespace drainproxy::http
