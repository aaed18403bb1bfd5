#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "config/duration.hpp"
#include "config/endpoint.hpp"

namespace drainproxy::config {

enum class Mode { Http, Tcp };
enum class HealthCheckKind { Tcp, Http, None };
enum class LogFormat { Text, Json };
// Batched socket I/O through io_uring: when the kernel allows it, required, or never.
enum class IoUring { Auto, On, Off };

struct HealthCheck {
  HealthCheckKind kind = HealthCheckKind::Tcp;
  std::string http_path;  // only for Http
  Duration interval{1000};
  Duration timeout{500};
  unsigned healthy_threshold = 1;
  unsigned unhealthy_threshold = 3;
};

struct Config {
  Endpoint listen{"0.0.0.0", 8000};
  Endpoint upstream{"127.0.0.1", 8080};
  Mode mode = Mode::Http;
  Endpoint admin{"0.0.0.0", 9901};

  Duration propagation_delay{5000};
  Duration drain_timeout{20000};
  Duration termination_grace_period{30000};

  HealthCheck health;

  unsigned workers = 1;
  IoUring io_uring = IoUring::Auto;
  std::size_t max_connections = 10000;
  Duration connect_timeout{2000};
  Duration idle_timeout{60000};
  Duration header_timeout{10000};

  // HTTP mode
  std::size_t max_header_bytes = 64 * 1024;
  std::uint64_t max_body_bytes = 0;  // 0: unlimited
  Duration upstream_timeout{60000};  // request sent -> first response byte
  std::size_t upstream_keepalive = 256;  // idle app connections kept per worker
  Duration upstream_idle_timeout{4000};
  Duration drain_idle_grace{1000};  // an idle keep-alive connection younger than this is left alone

  std::string drain_token;  // empty: remote /drain is refused

  LogFormat log_format = LogFormat::Text;
  std::string log_level = "info";

  // The safety margin kept between the end of the drain and kubelet's SIGKILL.
  Duration grace_margin() const;
};

// A configuration error. what() names the flag and the offending value; main exits 2.
class ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// What the command line asked for: run the proxy, or print something and exit 0.
struct ParseResult {
  enum class Action { Run, Help, Version };
  Action action = Action::Run;
  Config config;
  std::string text;  // help text for Action::Help
};

using EnvLookup = std::function<std::optional<std::string>(const std::string& name)>;

// Flags win over DRAINPROXY_* environment variables. Throws ConfigError.
ParseResult parse(const std::vector<std::string>& args, const EnvLookup& env);

// Reads the process environment.
EnvLookup process_env();

const char* to_string(Mode m);
const char* to_string(IoUring u);
const char* to_string(HealthCheckKind k);

}  // namespace drainproxy::config
