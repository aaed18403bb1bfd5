#pragma once
#include <chrono>
#include <string>

#include "proxy/asio.hpp"

namespace drainproxy::proxy {

// One listen address and where its connections go.
struct Route {
  std::string name;  // the `listener` label: the listen address as configured
  tcp::endpoint upstream;
  std::chrono::milliseconds connect_timeout{2000};
  std::chrono::milliseconds idle_timeout{60000};
};

}  // namespace drainproxy::proxy
