#include "http/parser.hpp"

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "http/syntax.hpp"

namespace drainproxy::http {
namespace {

// RFC 9112 §2.2: a server SHOULD ignore at least one empty line received before the request-line.
constexpr std::size_t kMaxLeadingEmptyLines = 4;
constexpr std::uint64_t kMaxContentLength = 0x7FFF'FFFF'FFFF'FFFFull;  // 63 bits
constexpr unsigned kUpstreamErrorStatus = 502;

// A rejection before it is turned into an Error. status 0 = no problem.
struct Problem {
  unsigned status = 0;
  std::string_view reason;
  explicit operator bool() const { return status != 0; }
};

constexpr Problem bad(std::string_view reason) { return {400, reason}; }

// Only the parser's own reasons: tests match on them, keep them stable.
namespace reasons {
constexpr std::string_view kBareLf = "bare LF in head";
constexpr std::string_view kBareCr = "bare CR in head";
constexpr std::string_view kHeadTooLarge = "head too large";
constexpr std::string_view kTooManyFields = "too many header fields";
constexpr std::string_view kMalformedRequestLine = "malformed request line";
constexpr std::string_view kInvalidMethod = "invalid method";
constexpr std::string_view kMissingVersion = "missing HTTP version";
constexpr std::string_view kEmptyTarget = "empty request target";
constexpr std::string_view kTargetTooLong = "request target too long";
constexpr std::string_view kInvalidTargetChar = "invalid character in request target";
constexpr std::string_view kMalformedVersion = "malformed HTTP version";
constexpr std::string_view kUnsupportedVersion = "unsupported HTTP version";
constexpr std::string_view kAsteriskNotOptions = "asterisk-form target only with OPTIONS";
constexpr std::string_view kConnectNeedsAuthority = "CONNECT requires an authority-form target";
constexpr std::string_view kInvalidAbsoluteForm = "invalid absolute-form target";
constexpr std::string_view kInvalidTargetForm = "invalid request target form";
constexpr std::string_view kObsFold = "obsolete line folding";
constexpr std::string_view kNoColon = "field line without colon";
constexpr std::string_view kEmptyFieldName = "empty field name";
constexpr std::string_view kSpaceBeforeColon = "whitespace between field name and colon";
constexpr std::string_view kInvalidFieldName = "invalid character in field name";
constexpr std::string_view kNulInValue = "NUL in field value";
constexpr std::string_view kInvalidFieldValue = "invalid character in field value";
constexpr std::string_view kMissingHost = "missing Host";
constexpr std::string_view kDuplicateHost = "duplicate Host";
constexpr std::string_view kInvalidHost = "invalid Host";
constexpr std::string_view kEmptyContentLength = "empty Content-Length";
constexpr std::string_view kInvalidContentLength = "invalid Content-Length";
constexpr std::string_view kContentLengthTooLarge = "Content-Length too large";
constexpr std::string_view kConflictingContentLength = "conflicting Content-Length values";
constexpr std::string_view kBothClAndTe = "both Content-Length and Transfer-Encoding";
constexpr std::string_view kTeInHttp10 = "Transfer-Encoding in HTTP/1.0 message";
constexpr std::string_view kMalformedTe = "malformed Transfer-Encoding";
constexpr std::string_view kChunkedTwice = "chunked applied more than once";
constexpr std::string_view kChunkedNotFinal = "chunked is not the final transfer coding";
constexpr std::string_view kUnsupportedCoding = "unsupported transfer coding";
constexpr std::string_view kInvalidConnection = "invalid Connection token";
constexpr std::string_view kConnectionNamesFraming = "Connection names a framing field";
constexpr std::string_view kUnsupportedExpectation = "unsupported expectation";
constexpr std::string_view kMalformedStatusLine = "malformed status line";
constexpr std::string_view kInvalidStatusCode = "invalid status code";
constexpr std::string_view kInvalidReason = "invalid character in reason phrase";
}  // namespace reasons

// ---------------------------------------------------------------------------------------------------
// Line scanning shared by requests and responses.

// Calls on_line(line, is_first) for every CRLF-terminated line (CRLF stripped) until the empty line that
// ends the head; on_tail(tail, is_first) checks the unterminated rest when the head is incomplete.
template <class OnLine, class OnTail>
ParseStatus scan_head(std::string_view buf, std::size_t start, const Limits& limits, unsigned too_large_status,
                      OnLine&& on_line, OnTail&& on_tail, std::size_t& head_end, Error& err) {
  const std::size_t window = std::min(buf.size(), limits.max_head_bytes);
  const char* const data = buf.data();
  std::size_t pos = start;
  bool first = true;
  auto fail = [&err](Problem p) {
    err = Error{p.status, p.reason};
    return ParseStatus::Error;
  };
  while (pos < window) {
    const void* hit = std::memchr(data + pos, '\n', window - pos);
    if (hit == nullptr) break;
    const auto lf = static_cast<std::size_t>(static_cast<const char*>(hit) - data);
    if (lf == pos || data[lf - 1] != '\r') return fail(bad(reasons::kBareLf));
    const std::string_view line(data + pos, lf - 1 - pos);
    pos = lf + 1;
    if (line.empty() && !first) {
      head_end = pos;
      return ParseStatus::Complete;
    }
    if (std::memchr(line.data(), '\r', line.size()) != nullptr) return fail(bad(reasons::kBareCr));
    if (const Problem p = on_line(line, first)) return fail(p);
    first = false;
  }
  // No complete head inside the window. A CR that is not the very last byte is not followed by LF.
  pos = std::min(pos, window);
  const std::string_view tail(data + pos, window - pos);
  if (tail.size() > 1 && std::memchr(tail.data(), '\r', tail.size() - 1) != nullptr)
    return fail(bad(reasons::kBareCr));
  if (buf.size() >= limits.max_head_bytes) return fail(Problem{too_large_status, reasons::kHeadTooLarge});
  if (!first && !tail.empty() && is_ows(tail.front())) return fail(bad(reasons::kObsFold));
  if (const Problem p = on_tail(tail, first)) return fail(p);
  return ParseStatus::Incomplete;
}

Problem parse_field_line(std::string_view line, std::size_t max_fields, unsigned too_many_status,
                         std::vector<Field>& fields) {
  if (is_ows(line.front())) return bad(reasons::kObsFold);
  const std::size_t colon = line.find(':');
  if (colon == std::string_view::npos) return bad(reasons::kNoColon);
  const std::string_view name = line.substr(0, colon);
  if (name.empty()) return bad(reasons::kEmptyFieldName);
  if (is_ows(name.back())) return bad(reasons::kSpaceBeforeColon);
  if (!is_token(name)) return bad(reasons::kInvalidFieldName);
  const std::string_view raw_value = line.substr(colon + 1);
  for (char c : raw_value) {
    if (!is_field_value_char(c)) return bad(c == '\0' ? reasons::kNulInValue : reasons::kInvalidFieldValue);
  }
  if (fields.size() >= max_fields) return Problem{too_many_status, reasons::kTooManyFields};
  fields.push_back(Field{name, trim_ows(raw_value)});
  return {};
}

// ---------------------------------------------------------------------------------------------------
// Field semantics shared by requests and responses.

struct TransferCodings {
  unsigned chunked_count = 0;
  bool chunked_final = false;  // the last coding seen so far is chunked
  bool other_coding = false;
  bool malformed = false;
};

struct FieldFacts {
  unsigned host_count = 0;
  std::string_view host;
  bool has_content_length = false;
  std::uint64_t content_length = 0;
  bool has_transfer_encoding = false;
  TransferCodings te;
  bool conn_close = false;
  bool conn_keep_alive = false;
  bool conn_upgrade = false;
  bool expect_continue = false;
  bool expect_other = false;
  bool upgrade_websocket = false;
  bool upgrade_h2c = false;
};

// RFC 9110 §8.6: a list of identical decimal values is tolerated; anything else is an error.
Problem add_content_length(std::string_view value, FieldFacts& f) {
  ListCursor list(value);
  std::string_view element;
  while (list.next(element)) {
    if (element.empty()) return bad(reasons::kEmptyContentLength);
    std::uint64_t n = 0;
    for (char c : element) {
      if (!is_digit(c)) return bad(reasons::kInvalidContentLength);
      const auto digit = static_cast<std::uint64_t>(c - '0');
      if (n > (kMaxContentLength - digit) / 10) return bad(reasons::kContentLengthTooLarge);
      n = n * 10 + digit;
    }
    if (f.has_content_length && n != f.content_length) return bad(reasons::kConflictingContentLength);
    f.has_content_length = true;
    f.content_length = n;
  }
  return {};
}

// Multiple Transfer-Encoding lines form one list (RFC 9110 §5.3), so this accumulates across fields.
void add_transfer_codings(std::string_view value, TransferCodings& te) {
  ListCursor list(value);
  std::string_view element;
  while (list.next(element)) {
    if (element.empty()) {
      te.malformed = true;
      return;
    }
    std::string_view name = element;
    const std::size_t semi = element.find(';');
    if (semi != std::string_view::npos) name = trim_ows(element.substr(0, semi));
    if (!is_token(name)) {
      te.malformed = true;
      return;
    }
    if (iequals(name, "chunked")) {
      if (semi != std::string_view::npos) te.malformed = true;  // chunked takes no parameters
      ++te.chunked_count;
      te.chunked_final = true;
    } else {
      te.other_coding = true;
      te.chunked_final = false;
    }
  }
}

Problem add_connection(std::string_view value, FieldFacts& f) {
  ListCursor list(value);
  std::string_view token;
  while (list.next(token)) {
    if (token.empty()) continue;  // RFC 9110 §5.6.1: ignore empty list elements
    if (!is_token(token)) return bad(reasons::kInvalidConnection);
    if (iequals(token, "close")) {
      f.conn_close = true;
    } else if (iequals(token, kKeepAlive)) {
      f.conn_keep_alive = true;
    } else if (iequals(token, kUpgrade)) {
      f.conn_upgrade = true;
    } else if (is_framing_field(token)) {
      // Letting Connection strip Content-Length / Transfer-Encoding / Host is a smuggling vector.
      return bad(reasons::kConnectionNamesFraming);
    }
  }
  return {};
}

void add_expect(std::string_view value, FieldFacts& f) {
  ListCursor list(value);
  std::string_view element;
  while (list.next(element)) {
    if (element.empty()) continue;
    if (iequals(element, "100-continue")) {
      f.expect_continue = true;
    } else {
      f.expect_other = true;
    }
  }
}

void add_upgrade(std::string_view value, FieldFacts& f) {
  ListCursor list(value);
  std::string_view protocol;
  while (list.next(protocol)) {
    if (iequals(protocol, "websocket")) f.upgrade_websocket = true;
    if (iequals(protocol, "h2c")) f.upgrade_h2c = true;
  }
}

Problem analyze_fields(const std::vector<Field>& fields, FieldFacts& f) {
  for (const Field& field : fields) {
    const std::string_view name = field.name;
    switch (name.size()) {  // cheap pre-filter before the case-insensitive compare
      case kHost.size():
        if (iequals(name, kHost)) {
          ++f.host_count;
          f.host = field.value;
        }
        break;
      case kExpect.size():
        if (iequals(name, kExpect)) add_expect(field.value, f);
        break;
      case kUpgrade.size():
        if (iequals(name, kUpgrade)) add_upgrade(field.value, f);
        break;
      case kConnection.size():
        if (iequals(name, kConnection)) {
          if (const Problem p = add_connection(field.value, f)) return p;
        }
        break;
      case kContentLength.size():
        if (iequals(name, kContentLength)) {
          if (const Problem p = add_content_length(field.value, f)) return p;
        }
        break;
      case kTransferEncoding.size():
        if (iequals(name, kTransferEncoding)) {
          f.has_transfer_encoding = true;
          add_transfer_codings(field.value, f.te);
        }
        break;
      default:
        break;
    }
  }
  return {};
}

// ---------------------------------------------------------------------------------------------------
// Request line.

// "HTTP/1.1" -> 1, "HTTP/1.0" -> 0; other HTTP/d.d -> 505; anything else -> 400.
Problem parse_version(std::string_view v, unsigned& minor, unsigned unsupported_status) {
  if (v == "HTTP/1.1") {
    minor = 1;
    return {};
  }
  if (v == "HTTP/1.0") {
    minor = 0;
    return {};
  }
  if (v.size() == 8 && v.substr(0, 5) == "HTTP/" && is_digit(v[5]) && v[6] == '.' && is_digit(v[7]))
    return Problem{unsupported_status, reasons::kUnsupportedVersion};
  return bad(reasons::kMalformedVersion);
}

constexpr bool is_scheme_char(char c) { return is_alpha(c) || is_digit(c) || c == '+' || c == '-' || c == '.'; }

// absolute-form: scheme "://" authority [ path-abempty [ "?" query ] ]; returns the authority.
bool parse_absolute_form(std::string_view target, std::string_view& authority) {
  if (target.empty() || !is_alpha(target.front())) return false;
  std::size_t i = 1;
  while (i < target.size() && is_scheme_char(target[i])) ++i;
  if (target.substr(i, 3) != "://") return false;
  const std::string_view rest = target.substr(i + 3);
  authority = rest.substr(0, std::min(rest.find_first_of("/?#"), rest.size()));
  return is_valid_host(authority, /*allow_empty=*/false, /*require_port=*/false);
}

Problem check_target_form(RequestHead& out) {
  const std::string_view t = out.target;
  if (out.is_connect()) {  // RFC 9112 §3.2.3: authority-form, port required
    if (!is_valid_host(t, /*allow_empty=*/false, /*require_port=*/true)) return bad(reasons::kConnectNeedsAuthority);
    return {};
  }
  if (t.front() == '/') return {};  // origin-form
  if (t == "*") return out.method == "OPTIONS" ? Problem{} : bad(reasons::kAsteriskNotOptions);
  if (t.find("://") != std::string_view::npos) {
    std::string_view authority;
    if (!parse_absolute_form(t, authority)) return bad(reasons::kInvalidAbsoluteForm);
    out.host = authority;  // RFC 9112 §3.2.2: the target's authority overrides Host
    return {};
  }
  return bad(reasons::kInvalidTargetForm);
}

Problem parse_request_line(std::string_view line, const Limits& limits, RequestHead& out) {
  const std::size_t sp1 = line.find(' ');
  if (sp1 == std::string_view::npos) return bad(reasons::kMalformedRequestLine);
  out.method = line.substr(0, sp1);
  if (!is_token(out.method)) return bad(reasons::kInvalidMethod);
  const std::string_view rest = line.substr(sp1 + 1);
  const std::size_t sp2 = rest.find(' ');
  if (sp2 == std::string_view::npos) {
    if (rest.size() > limits.max_target_bytes) return Problem{414, reasons::kTargetTooLong};
    return bad(reasons::kMissingVersion);  // HTTP/0.9 style "GET /"
  }
  out.target = rest.substr(0, sp2);
  if (out.target.empty()) return bad(reasons::kEmptyTarget);
  if (out.target.size() > limits.max_target_bytes) return Problem{414, reasons::kTargetTooLong};
  for (char c : out.target)
    if (!is_target_char(c)) return bad(reasons::kInvalidTargetChar);
  if (const Problem p = parse_version(rest.substr(sp2 + 1), out.version_minor, 505)) return p;
  return check_target_form(out);
}

// Early rejection of an unfinished request line: garbage (e.g. a TLS ClientHello) or an overlong target
// is refused without waiting for max_head_bytes.
Problem check_partial_request_line(std::string_view tail, const Limits& limits) {
  const std::size_t sp1 = tail.find(' ');
  const std::string_view method = tail.substr(0, std::min(sp1, tail.size()));
  if (sp1 == 0) return bad(reasons::kInvalidMethod);
  for (char c : method)
    if (!is_tchar(c) && c != '\r') return bad(reasons::kInvalidMethod);
  if (sp1 == std::string_view::npos) return {};
  const std::string_view rest = tail.substr(sp1 + 1);
  if (std::min(rest.find(' '), rest.size()) > limits.max_target_bytes) return Problem{414, reasons::kTargetTooLong};
  return {};
}

Problem finish_request(RequestHead& out) {
  FieldFacts f;
  if (const Problem p = analyze_fields(out.fields, f)) return p;
  const bool http11 = out.version_minor == 1;

  if (http11 && f.host_count == 0) return bad(reasons::kMissingHost);
  if (f.host_count > 1) return bad(reasons::kDuplicateHost);
  if (f.host_count == 1) {
    if (!is_valid_host(f.host, /*allow_empty=*/true, /*require_port=*/false)) return bad(reasons::kInvalidHost);
    if (out.host.empty()) out.host = f.host;  // an absolute-form authority already set it
  }

  if (f.has_transfer_encoding) {
    if (f.has_content_length) return bad(reasons::kBothClAndTe);
    if (!http11) return bad(reasons::kTeInHttp10);
    if (f.te.malformed) return bad(reasons::kMalformedTe);
    if (f.te.chunked_count > 1) return bad(reasons::kChunkedTwice);
    if (f.te.chunked_count == 1 && !f.te.chunked_final) return bad(reasons::kChunkedNotFinal);
    if (f.te.other_coding || f.te.chunked_count == 0) return Problem{501, reasons::kUnsupportedCoding};
    out.framing = Framing::Chunked;
  } else if (f.has_content_length) {
    out.framing = Framing::ContentLength;
    out.content_length = f.content_length;
  } else {
    out.framing = Framing::None;
  }

  if (f.expect_other) return Problem{417, reasons::kUnsupportedExpectation};
  // RFC 9110 §10.1.1: a 100-continue expectation in an HTTP/1.0 request is ignored.
  out.expect_continue = http11 && f.expect_continue;
  out.keep_alive = !f.conn_close && (http11 || f.conn_keep_alive);
  // RFC 9110 §7.8: Upgrade is only honoured on HTTP/1.1 and only when Connection lists it.
  if (http11 && f.conn_upgrade) {
    out.upgrade_websocket = f.upgrade_websocket;
    out.upgrade_h2c = f.upgrade_h2c;
  }
  return {};
}

// ---------------------------------------------------------------------------------------------------
// Status line.

Problem parse_status_line(std::string_view line, ResponseHead& out) {
  if (line.size() < 12 || line[8] != ' ') return bad(reasons::kMalformedStatusLine);
  if (const Problem p = parse_version(line.substr(0, 8), out.version_minor, kUpstreamErrorStatus)) return p;
  const char d0 = line[9], d1 = line[10], d2 = line[11];
  if (!is_digit(d0) || !is_digit(d1) || !is_digit(d2)) return bad(reasons::kInvalidStatusCode);
  out.status = static_cast<unsigned>((d0 - '0') * 100 + (d1 - '0') * 10 + (d2 - '0'));
  if (out.status < 100 || out.status > 599) return bad(reasons::kInvalidStatusCode);
  if (line.size() == 12) return {};  // tolerated: "HTTP/1.1 200" without the SP before an empty reason
  if (line[12] != ' ') return bad(reasons::kInvalidStatusCode);
  out.reason = line.substr(13);
  for (char c : out.reason)
    if (!is_field_value_char(c)) return bad(reasons::kInvalidReason);
  return {};
}

Problem finish_response(RequestKind answered, ResponseHead& out) {
  FieldFacts f;
  if (const Problem p = analyze_fields(out.fields, f)) return p;
  const bool http11 = out.version_minor == 1;
  out.keep_alive = !f.conn_close && (http11 || f.conn_keep_alive);
  out.upgrade = out.status == 101;

  if (f.has_transfer_encoding) {
    // RFC 9112 §6.1: TE in an HTTP/1.0 message means the framing is faulty.
    if (!http11) return bad(reasons::kTeInHttp10);
    if (f.te.malformed) return bad(reasons::kMalformedTe);
    if (f.te.chunked_count > 1) return bad(reasons::kChunkedTwice);
  }

  const unsigned s = out.status;
  if (answered == RequestKind::Head || s < 200 || s == 204 || s == 304) {
    out.framing = Framing::None;
  } else if (answered == RequestKind::Connect && s < 300) {
    out.framing = Framing::Tunnel;
  } else if (f.has_transfer_encoding) {
    // RFC 9112 §6.3 (3): TE overrides CL; such a message may be an attack, do not reuse the connection.
    if (f.has_content_length) out.keep_alive = false;
    if (f.te.chunked_final) {
      out.framing = Framing::Chunked;
    } else {
      out.framing = Framing::UntilClose;
      out.keep_alive = false;
    }
  } else if (f.has_content_length) {
    out.framing = Framing::ContentLength;
    out.content_length = f.content_length;
  } else {
    out.framing = Framing::UntilClose;
    out.keep_alive = false;
  }
  return {};
}

}  // namespace

// ---------------------------------------------------------------------------------------------------

bool is_valid_host(std::string_view s, bool allow_empty, bool require_port) {
  if (s.empty()) return allow_empty && !require_port;
  std::size_t host_end = 0;
  if (s.front() == '[') {  // IP-literal: IPv6address / IPvFuture, checked loosely for its alphabet
    const std::size_t close = s.find(']');
    if (close == std::string_view::npos || close == 1) return false;
    for (char c : s.substr(1, close - 1))
      if (hex_value(c) < 0 && c != ':' && c != '.' && c != 'v' && c != 'V') return false;
    host_end = close + 1;
  } else {  // reg-name / IPv4address: unreserved / pct-encoded / sub-delims minus ','
    while (host_end < s.size() && s[host_end] != ':') {
      const char c = s[host_end];
      if (c == '%') {
        if (host_end + 2 >= s.size() || hex_value(s[host_end + 1]) < 0 || hex_value(s[host_end + 2]) < 0)
          return false;
        host_end += 3;
        continue;
      }
      const bool ok = is_alpha(c) || is_digit(c) || c == '-' || c == '.' || c == '_' || c == '~' || c == '!' ||
                      c == '$' || c == '&' || c == '\'' || c == '(' || c == ')' || c == '*' || c == '+' ||
                      c == ';' || c == '=';
      if (!ok) return false;
      ++host_end;
    }
    if (host_end == 0) return false;
  }
  if (host_end == s.size()) return !require_port;
  if (s[host_end] != ':') return false;
  const std::string_view port = s.substr(host_end + 1);
  if (port.empty() || port.size() > 5) return false;
  unsigned value = 0;
  for (char c : port) {
    if (!is_digit(c)) return false;
    value = value * 10 + static_cast<unsigned>(c - '0');
  }
  return value <= 65535;
}

ParseStatus parse_request_head(std::string_view buf, const Limits& limits, RequestHead& out, Error& err) {
  out.clear();
  err = Error{};
  std::size_t start = 0;
  for (std::size_t i = 0; i < kMaxLeadingEmptyLines && buf.substr(start, 2) == "\r\n"; ++i) start += 2;

  auto on_line = [&](std::string_view line, bool first) -> Problem {
    if (first) return parse_request_line(line, limits, out);
    return parse_field_line(line, limits.max_fields, 431, out.fields);
  };
  auto on_tail = [&](std::string_view tail, bool first) -> Problem {
    return first ? check_partial_request_line(tail, limits) : Problem{};
  };
  std::size_t head_end = 0;
  const ParseStatus st = scan_head(buf, start, limits, 431, on_line, on_tail, head_end, err);
  if (st != ParseStatus::Complete) return st;
  if (const Problem p = finish_request(out)) {
    err = Error{p.status, p.reason};
    return ParseStatus::Error;
  }
  out.head_size = head_end;
  return ParseStatus::Complete;
}

ParseStatus parse_response_head(std::string_view buf, RequestKind answered, const Limits& limits, ResponseHead& out,
                                Error& err) {
  out.clear();
  err = Error{};
  auto on_line = [&](std::string_view line, bool first) -> Problem {
    if (first) return parse_status_line(line, out);
    return parse_field_line(line, limits.max_fields, kUpstreamErrorStatus, out.fields);
  };
  auto on_tail = [](std::string_view, bool) { return Problem{}; };
  std::size_t head_end = 0;
  ParseStatus st = scan_head(buf, 0, limits, kUpstreamErrorStatus, on_line, on_tail, head_end, err);
  if (st == ParseStatus::Complete) {
    if (const Problem p = finish_response(answered, out)) {
      err = Error{p.status, p.reason};
      st = ParseStatus::Error;
    } else {
      out.head_size = head_end;
    }
  }
  if (st == ParseStatus::Error) err.status = kUpstreamErrorStatus;  // whatever the cause, the client sees 502
  return st;
}

}  // namespace drainproxy::http
