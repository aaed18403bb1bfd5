#pragma once
#include <string>
#include <string_view>

#include "proxy/asio.hpp"

namespace drainproxy::admin {

struct AccessDecision {
  bool allowed = false;
  std::string reason;  // why it was refused, for the 403 body
};

// /drain decides the pod's fate. Loopback callers (exec preStop hooks, the sidecar's
// neighbours) are trusted; anyone else must present `Authorization: Bearer <token>`,
// and without a configured token remote callers are refused.
AccessDecision check_drain_access(const asio::ip::address& peer, std::string_view authorization,
                                  std::string_view token);

bool is_loopback(const asio::ip::address& a);

}  // namespace drainproxy::admin
