#include "http/head_writer.hpp"

#include <array>
#include <charconv>

#include "http/syntax.hpp"

namespace drainproxy::http {
namespace {

constexpr std::string_view kCrlf = "\r\n";
constexpr std::size_t kExtraFieldsEstimate = 160;  // X-Forwarded-* and Connection lines

void append_field(std::string& out, std::string_view name, std::string_view value) {
  out += name;
  out += ": ";
  out += value;
  out += kCrlf;
}

std::size_t fields_size(const std::vector<Field>& fields) {
  std::size_t n = 0;
  for (const Field& f : fields) n += f.name.size() + f.value.size() + 4;
  return n;
}

// Is `name` listed as a token of any Connection field?
bool named_in_connection(const std::vector<Field>& fields, std::string_view name) {
  for (const Field& f : fields) {
    if (!iequals(f.name, kConnection)) continue;
    ListCursor tokens(f.value);
    std::string_view token;
    while (tokens.next(token))
      if (equals_ignore_case(token, name)) return true;
  }
  return false;
}

// The tokens of the head's Connection fields, gathered once per head so that each
// field is not checked by re-parsing every Connection field again.
class ConnectionTokens {
 public:
  explicit ConnectionTokens(const std::vector<Field>& fields) : fields_(fields) {
    for (const Field& f : fields) {
      if (!iequals(f.name, kConnection)) continue;
      ListCursor list(f.value);
      std::string_view token;
      while (list.next(token)) {
        if (token.empty()) continue;
        if (count_ == tokens_.size()) {
          overflow_ = true;  // unusual: fall back to scanning the fields
          return;
        }
        tokens_[count_++] = token;
      }
    }
  }

  bool names(std::string_view name) const {
    if (overflow_) return named_in_connection(fields_, name);
    for (std::size_t i = 0; i < count_; ++i)
      if (equals_ignore_case(tokens_[i], name)) return true;
    return false;
  }
  bool empty() const { return count_ == 0 && !overflow_; }

 private:
  const std::vector<Field>& fields_;
  std::array<std::string_view, 8> tokens_{};
  std::size_t count_ = 0;
  bool overflow_ = false;
};

bool hop_by_hop(std::string_view name, const ConnectionTokens& connection, bool keep_upgrade) {
  // The fixed hop-by-hop names, told apart by length first (RFC 9110 §7.6.1).
  switch (name.size()) {
    case kTe.size():
      if (iequals(name, kTe)) return true;
      break;
    case kUpgrade.size():
      if (iequals(name, kUpgrade)) return !keep_upgrade;
      break;
    case kConnection.size():  // == kKeepAlive.size()
      if (iequals(name, kConnection) || iequals(name, kKeepAlive)) return true;
      break;
    case kProxyConnection.size():
      if (iequals(name, kProxyConnection)) return true;
      break;
    default:
      break;
  }
  if (connection.empty() || is_framing_field(name)) return false;  // framing is never removable
  return connection.names(name);
}

void append_content_length(std::string& out, std::string_view name, std::uint64_t length) {
  char digits[20];
  const auto [end, ec] = std::to_chars(digits, digits + sizeof digits, length);
  (void)ec;
  append_field(out, name, std::string_view(digits, static_cast<std::size_t>(end - digits)));
}

void append_status_code(std::string& out, unsigned status) {
  const char digits[3] = {static_cast<char>('0' + status / 100 % 10), static_cast<char>('0' + status / 10 % 10),
                          static_cast<char>('0' + status % 10)};
  out.append(digits, 3);
}

}  // namespace

bool is_hop_by_hop(std::string_view name, const std::vector<Field>& fields, bool keep_upgrade) {
  return hop_by_hop(name, ConnectionTokens(fields), keep_upgrade);
}

void write_request_head(const RequestHead& h, const ForwardInfo& fi, std::string& out) {
  out.reserve(out.size() + h.method.size() + h.target.size() + fields_size(h.fields) + fi.client_ip.size() +
              2 * h.host.size() + fi.default_host.size() + kExtraFieldsEstimate);
  out += h.method;
  out += ' ';
  out += h.target;
  out += " HTTP/1.1\r\n";

  bool has_forwarded_host = false;
  bool has_host = false;
  bool length_written = false;
  const ConnectionTokens connection(h.fields);
  for (const Field& f : h.fields) {
    if (hop_by_hop(f.name, connection, h.upgrade_websocket)) continue;
    if (iequals(f.name, kContentLength)) {
      // "3, 3" or repeated identical fields reach the app as one value (RFC 9110 §8.6).
      if (!length_written) append_content_length(out, f.name, h.content_length);
      length_written = true;
      continue;
    }
    if (iequals(f.name, kXForwardedFor) || iequals(f.name, kXForwardedProto)) continue;  // rewritten below
    if (fi.strip_expect && iequals(f.name, kExpect)) continue;
    if (iequals(f.name, kHost)) {  // the parser guarantees at most one
      has_host = true;
      append_field(out, f.name, h.host);
      continue;
    }
    if (iequals(f.name, kXForwardedHost)) has_forwarded_host = true;
    append_field(out, f.name, f.value);
  }
  if (!has_host) append_field(out, "Host", h.host.empty() ? fi.default_host : h.host);

  // All X-Forwarded-For lines combined into one, in order, then the client.
  const std::size_t xff_start = out.size();
  out += "X-Forwarded-For: ";
  const std::size_t xff_values = out.size();
  for (const Field& f : h.fields) {
    if (f.value.empty() || !iequals(f.name, kXForwardedFor)) continue;
    if (out.size() != xff_values) out += ", ";
    out += f.value;
  }
  if (!fi.client_ip.empty()) {
    if (out.size() != xff_values) out += ", ";
    out += fi.client_ip;
  }
  if (out.size() == xff_values) {
    out.resize(xff_start);
  } else {
    out += kCrlf;
  }

  if (!fi.proto.empty()) append_field(out, "X-Forwarded-Proto", fi.proto);
  if (!has_forwarded_host && !h.host.empty()) append_field(out, "X-Forwarded-Host", h.host);

  if (h.upgrade_websocket) {
    out += "Connection: upgrade\r\n";
  } else if (fi.keep_alive_upstream) {
    out += "Connection: keep-alive\r\n";
  } else {
    out += "Connection: close\r\n";
  }
  out += kCrlf;
}

void write_response_head(const ResponseHead& h, const ResponseForwardInfo& fi, std::string& out) {
  out.reserve(out.size() + h.reason.size() + fields_size(h.fields) + kExtraFieldsEstimate);
  out += "HTTP/1.1 ";
  append_status_code(out, h.status);
  out += ' ';
  out += h.reason;
  out += kCrlf;
  bool length_written = false;
  const ConnectionTokens connection(h.fields);
  for (const Field& f : h.fields) {
    if (hop_by_hop(f.name, connection, h.upgrade)) continue;
    if (h.framing == Framing::ContentLength && iequals(f.name, kContentLength)) {
      if (!length_written) append_content_length(out, f.name, h.content_length);
      length_written = true;
      continue;
    }
    append_field(out, f.name, f.value);
  }
  if (h.upgrade) {
    out += "Connection: upgrade\r\n";
  } else if (fi.close_connection) {
    out += "Connection: close\r\n";
  } else if (fi.client_version_minor == 0) {
    out += "Connection: keep-alive\r\n";
  }
  out += kCrlf;
}

}  // namespace drainproxy::http
