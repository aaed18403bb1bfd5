#pragma once
#include <string>
#include <vector>

#include "config/config.hpp"

namespace drainproxy::app {

// `drainproxy drain`: asks the local drainproxy to drain, for `exec` preStop hooks.
// Returns the process exit code: 0 when the drain was accepted (and, by default,
// finished), 1 when it failed, 2 for bad arguments.
int run_drain_command(const std::vector<std::string>& args, const config::EnvLookup& env);

}  // namespace drainproxy::app
