// drainproxy: a sidecar proxy that keeps serving while Kubernetes takes its pod out
// of rotation, then drains and exits inside the pod's grace period.
#include <spdlog/spdlog.h>

#include <csignal>
#include <iostream>
#include <string>
#include <vector>

#include "app/drain_command.hpp"
#include "app/logging.hpp"
#include "app/server.hpp"
#include "config/config.hpp"

int main(int argc, char** argv) {
  using namespace drainproxy;
  std::vector<std::string> args(argv + 1, argv + argc);
  const auto env = config::process_env();
  if (!args.empty() && args.front() == "drain") {
    args.erase(args.begin());
    return app::run_drain_command(args, env);
  }

  config::ParseResult parsed;
  try {
    parsed = config::parse(args, env);
  } catch (const config::ConfigError& e) {
    std::cerr << "drainproxy: " << e.what() << "\n";
    return 2;
  }
  if (parsed.action == config::ParseResult::Action::Help) {
    std::cout << parsed.text;
    return 0;
  }
  if (parsed.action == config::ParseResult::Action::Version) {
    std::cout << "drainproxy " << DRAINPROXY_VERSION << "\n";
    return 0;
  }

  std::signal(SIGPIPE, SIG_IGN);
  app::setup_logging(parsed.config.log_format, parsed.config.log_level);
  try {
    app::Server server(parsed.config);
    return server.run();
  } catch (const config::ConfigError& e) {
    spdlog::get("main")->error("{}", e.what());
    std::cerr << "drainproxy: " << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {
    spdlog::get("main")->critical("fatal: {}", e.what());
    return 1;
  }
}
