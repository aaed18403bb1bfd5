#include "config/endpoint.hpp"

#include <cctype>
#include <charconv>
#include <stdexcept>

namespace drainproxy::config {

std::string Endpoint::to_string() const {
  const bool v6 = host.find(':') != std::string::npos;
  return (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

Endpoint parse_endpoint(std::string_view text, bool allow_port_zero) {
  const auto colon = text.rfind(':');
  if (colon == std::string_view::npos) throw std::invalid_argument("expected host:port");
  std::string_view host = text.substr(0, colon);
  const std::string_view port_text = text.substr(colon + 1);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  if (host.empty()) throw std::invalid_argument("missing host in host:port");
  for (char c : host) {
    const bool ok = std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == ':' || c == '_';
    if (!ok) throw std::invalid_argument("invalid character in host");
  }
  unsigned port = 0;
  const auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (port_text.empty() || ec != std::errc() || end != port_text.data() + port_text.size() || port > 65535)
    throw std::invalid_argument("port must be a number from " + std::string(allow_port_zero ? "0" : "1") + " to 65535");
  if (port == 0 && !allow_port_zero) throw std::invalid_argument("port must be a number from 1 to 65535");
  return Endpoint{std::string(host), static_cast<std::uint16_t>(port)};
}

}  // namespace drainproxy::config
