#pragma once
#include <cstdint>
#include <string>
#include <string_view>

namespace drainproxy::config {

// host:port as written by the user. The host is an IP literal or a name resolved
// at start-up; "[::1]:80" is accepted for IPv6.
struct Endpoint {
  std::string host;
  std::uint16_t port = 0;

  std::string to_string() const;
  bool operator==(const Endpoint&) const = default;
};

// Throws std::invalid_argument naming what is wrong.
Endpoint parse_endpoint(std::string_view text, bool allow_port_zero);

}  // namespace drainproxy::config
