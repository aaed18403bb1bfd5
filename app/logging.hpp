#pragma once
#include <string>

#include "config/config.hpp"

namespace drainproxy::app {

// One stderr sink shared by the module loggers: main, proxy, drain, health, admin.
void setup_logging(config::LogFormat format, const std::string& level);

}  // namespace drainproxy::app
