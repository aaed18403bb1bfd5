#pragma once
// Serialises the heads the proxy forwards. Appends to a caller-owned string (clear it and keep it around
// between messages so its capacity is reused); no other allocation.
//
// Hop-by-hop fields (RFC 9110 §7.6.1) are removed: Connection, Keep-Alive, Proxy-Connection, TE, Upgrade
// (kept for a WebSocket upgrade / a 101), and every field named by a Connection token. Host,
// Content-Length and Transfer-Encoding are never removed: the body is forwarded unchanged, so its framing
// headers must travel with it.
#include <string>
#include <string_view>
#include <vector>

#include "http/message.hpp"

namespace drainproxy::http {

struct ForwardInfo {
  std::string_view client_ip;        // appended to X-Forwarded-For
  std::string_view proto = "http";   // X-Forwarded-Proto (replaces what the client sent)
  bool keep_alive_upstream = true;   // "Connection: keep-alive" or "Connection: close"
  std::string_view default_host;     // Host to send when the request has none (HTTP/1.0); may be empty
  bool strip_expect = false;         // the proxy answered "100 Continue" itself
};

struct ResponseForwardInfo {
  bool close_connection = false;      // the proxy closes the client connection after this response
  unsigned client_version_minor = 1;  // the client's request version: 1.0 clients need explicit keep-alive
};

// "METHOD target HTTP/1.1", end-to-end fields, X-Forwarded-For/-Proto/-Host, then "Connection: upgrade"
// for a WebSocket upgrade or keep-alive/close per fi.keep_alive_upstream.
// Host carries h.host: for an absolute-form target that is the target's authority (RFC 9112 §3.2.2: the
// received Host is replaced). A request without Host (HTTP/1.0) gets one, as HTTP/1.1 requires it.
void write_request_head(const RequestHead& h, const ForwardInfo& fi, std::string& out);

// "HTTP/1.1 NNN reason", end-to-end fields, then "Connection: upgrade" for a 101, "Connection: close"
// when closing, or "Connection: keep-alive" for a persistent HTTP/1.0 client.
void write_response_head(const ResponseHead& h, const ResponseForwardInfo& fi, std::string& out);

// True if `name` must not be forwarded (see above); `keep_upgrade` keeps the Upgrade field.
bool is_hop_by_hop(std::string_view name, const std::vector<Field>& fields, bool keep_upgrade);

}  // namespace drainproxy::http
