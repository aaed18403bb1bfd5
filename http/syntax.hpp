#pragma once
// Character classes and small lexical helpers of RFC 9110 §5.6 shared by the head parser, the chunked
// framer and the head writer. Everything is constexpr table lookups: no locale, no allocation.
#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace drainproxy::http {

namespace syntax_detail {

using CharTable = std::array<bool, 256>;

constexpr CharTable make_tchar_table() {
  CharTable t{};
  for (int c = '0'; c <= '9'; ++c) t[static_cast<std::size_t>(c)] = true;
  for (int c = 'a'; c <= 'z'; ++c) t[static_cast<std::size_t>(c)] = true;
  for (int c = 'A'; c <= 'Z'; ++c) t[static_cast<std::size_t>(c)] = true;
  for (char c : std::string_view("!#$%&'*+-.^_`|~")) t[static_cast<unsigned char>(c)] = true;
  return t;
}

// field-vchar / SP / HTAB: HTAB, 0x20-0x7E and obs-text 0x80-0xFF. Excludes NUL, CR, LF, other CTLs, DEL.
constexpr CharTable make_field_value_table() {
  CharTable t{};
  t['\t'] = true;
  for (int c = 0x20; c <= 0x7E; ++c) t[static_cast<std::size_t>(c)] = true;
  for (int c = 0x80; c <= 0xFF; ++c) t[static_cast<std::size_t>(c)] = true;
  return t;
}

// request-target bytes: anything visible (obs-text tolerated), no CTL, SP or DEL.
constexpr CharTable make_target_table() {
  CharTable t{};
  for (int c = 0x21; c <= 0x7E; ++c) t[static_cast<std::size_t>(c)] = true;
  for (int c = 0x80; c <= 0xFF; ++c) t[static_cast<std::size_t>(c)] = true;
  return t;
}

inline constexpr CharTable kTchar = make_tchar_table();
inline constexpr CharTable kFieldValue = make_field_value_table();
inline constexpr CharTable kTarget = make_target_table();

}  // namespace syntax_detail

constexpr bool is_tchar(char c) { return syntax_detail::kTchar[static_cast<unsigned char>(c)]; }
constexpr bool is_field_value_char(char c) { return syntax_detail::kFieldValue[static_cast<unsigned char>(c)]; }
constexpr bool is_target_char(char c) { return syntax_detail::kTarget[static_cast<unsigned char>(c)]; }
constexpr bool is_ows(char c) { return c == ' ' || c == '\t'; }
constexpr bool is_digit(char c) { return c >= '0' && c <= '9'; }
constexpr bool is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

constexpr int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

constexpr char to_lower_ascii(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

constexpr bool is_token(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s)
    if (!is_tchar(c)) return false;
  return true;
}

// Case-insensitive ASCII comparison; `lower` must already be lower case.
constexpr bool iequals(std::string_view s, std::string_view lower) {
  if (s.size() != lower.size()) return false;
  for (std::size_t i = 0; i < s.size(); ++i)
    if (to_lower_ascii(s[i]) != lower[i]) return false;
  return true;
}

// Case-insensitive ASCII comparison of two arbitrary strings.
constexpr bool equals_ignore_case(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (to_lower_ascii(a[i]) != to_lower_ascii(b[i])) return false;
  return true;
}

constexpr std::string_view trim_ows(std::string_view s) {
  while (!s.empty() && is_ows(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_ows(s.back())) s.remove_suffix(1);
  return s;
}

// Walks a comma-separated list (RFC 9110 §5.6.1). Elements come back OWS-trimmed and may be empty;
// the caller decides whether empty elements are tolerated. Quoted strings are not special-cased: none of
// the lists we interpret (Connection, Content-Length, Transfer-Encoding, Expect, Upgrade) need them.
class ListCursor {
 public:
  constexpr explicit ListCursor(std::string_view list) : rest_(list) {}
  constexpr bool next(std::string_view& element) {
    if (done_) return false;
    const std::size_t comma = rest_.find(',');
    if (comma == std::string_view::npos) {
      element = trim_ows(rest_);
      done_ = true;
    } else {
      element = trim_ows(rest_.substr(0, comma));
      rest_.remove_prefix(comma + 1);
    }
    return true;
  }

 private:
  std::string_view rest_;
  bool done_ = false;
};

// Field names the parser and the writer care about, lower case.
inline constexpr std::string_view kHost = "host";
inline constexpr std::string_view kContentLength = "content-length";
inline constexpr std::string_view kTransferEncoding = "transfer-encoding";
inline constexpr std::string_view kConnection = "connection";
inline constexpr std::string_view kExpect = "expect";
inline constexpr std::string_view kUpgrade = "upgrade";
inline constexpr std::string_view kKeepAlive = "keep-alive";
inline constexpr std::string_view kProxyConnection = "proxy-connection";
inline constexpr std::string_view kTe = "te";
inline constexpr std::string_view kXForwardedFor = "x-forwarded-for";
inline constexpr std::string_view kXForwardedProto = "x-forwarded-proto";
inline constexpr std::string_view kXForwardedHost = "x-forwarded-host";

// True for the fields that define message framing or routing and therefore may never be removed or
// smuggled through hop-by-hop machinery (Connection tokens, chunked trailers).
constexpr bool is_framing_field(std::string_view name) {
  return iequals(name, kContentLength) || iequals(name, kTransferEncoding) || iequals(name, kHost);
}

}  // namespace drainproxy::http
