#include "admin/drain_access.hpp"

namespace drainproxy::admin {

namespace {

// Compares without an early exit, so response timing does not reveal a token prefix.
bool constant_time_equal(std::string_view a, std::string_view b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  const std::size_t n = std::min(a.size(), b.size());
  for (std::size_t i = 0; i < n; ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

}  // namespace

bool is_loopback(const asio::ip::address& a) {
  if (a.is_v4()) return a.to_v4().is_loopback();
  const auto v6 = a.to_v6();
  if (v6.is_v4_mapped()) return asio::ip::make_address_v4(asio::ip::v4_mapped, v6).is_loopback();
  return v6.is_loopback();
}

AccessDecision check_drain_access(const asio::ip::address& peer, std::string_view authorization,
                                  std::string_view token) {
  if (is_loopback(peer)) return {true, ""};
  if (token.empty())
    return {false, "/drain is only accepted from loopback unless drainproxy runs with --drain-token"};
  constexpr std::string_view kScheme = "Bearer ";
  if (authorization.size() <= kScheme.size() || authorization.substr(0, kScheme.size()) != kScheme)
    return {false, "/drain from a remote address needs 'Authorization: Bearer <token>'"};
  if (!constant_time_equal(authorization.substr(kScheme.size()), token)) return {false, "invalid drain token"};
  return {true, ""};
}

}  // namespace drainproxy::admin
