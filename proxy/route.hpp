#pragma once
#include <chrono>
#include <cstdint>
#include <string>

#include "http/message.hpp"
#include "proxy/asio.hpp"

namespace drainproxy::proxy {

enum class RouteMode : std::uint8_t { Http, Tcp };

// One listen address, how its connections are proxied and where they go.
struct Route {
  std::string name;  // the `listener` label: the listen address as configured
  RouteMode mode = RouteMode::Http;
  tcp::endpoint upstream;
  std::chrono::milliseconds connect_timeout{2000};
  std::chrono::milliseconds idle_timeout{60000};

  // HTTP mode
  std::chrono::milliseconds header_timeout{10000};
  std::chrono::milliseconds upstream_timeout{60000};
  http::Limits limits;
  std::uint64_t max_body_bytes = 0;  // 0: unlimited
  std::size_t upstream_keepalive = 256;
  std::chrono::milliseconds upstream_idle_timeout{4000};
  std::chrono::milliseconds drain_idle_grace{1000};
  // Idle keep-alive connections are closed over this window rather than all at once.
  std::chrono::milliseconds drain_idle_window{1000};
};

}  // namespace drainproxy::proxy
