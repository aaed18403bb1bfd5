#include "config/config.hpp"

#include <algorithm>
#include <boost/program_options.hpp>
#include <cctype>
#include <charconv>
#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>

namespace drainproxy::config {
namespace po = boost::program_options;

namespace {

struct FlagSpec {
  const char* name;
  const char* placeholder;
  const char* help;
};

// One table drives --help, the parser and the environment mapping, so they can't disagree.
constexpr FlagSpec kFlags[] = {
    {"listen", "ADDR:PORT", "address clients connect to (default 0.0.0.0:8000)"},
    {"upstream", "HOST:PORT", "the app behind the proxy (default 127.0.0.1:8080)"},
    {"mode", "MODE", "http (HTTP/1.1 aware, default) or tcp (byte stream)"},
    {"admin", "ADDR:PORT", "admin endpoints /ready /live /metrics /drain /status (default 0.0.0.0:9901)"},
    {"propagation-delay", "DUR", "keep serving after readiness flips off (default 5s)"},
    {"drain-timeout", "DUR", "max time in draining before force-closing (default 20s)"},
    {"termination-grace-period", "DUR", "the pod's terminationGracePeriodSeconds (default 30s)"},
    {"health-check", "KIND", "tcp, http:/path or none (default tcp)"},
    {"health-interval", "DUR", "time between upstream health probes (default 1s)"},
    {"health-timeout", "DUR", "timeout of one probe (default 500ms)"},
    {"health-healthy-threshold", "N", "consecutive successes to become healthy (default 1)"},
    {"health-unhealthy-threshold", "N", "consecutive failures to become unhealthy (default 3)"},
    {"workers", "N", "event-loop threads (default: number of cores)"},
    {"io-uring", "WHEN", "move each loop turn's socket reads and writes in one io_uring call: auto (when the kernel allows it, default), on (required) or off"},
    {"max-connections", "N", "proxied connections beyond this are closed at once (default 10000)"},
    {"connect-timeout", "DUR", "upstream connect timeout (default 2s)"},
    {"idle-timeout", "DUR", "close a connection with no traffic in either direction (default 60s)"},
    {"header-timeout", "DUR", "time allowed for request headers, else 408 (default 10s)"},
    {"max-header-bytes", "SIZE", "request head size limit, else 431 (default 64KiB)"},
    {"max-body-bytes", "SIZE", "request body size limit, else 413 (default 0: unlimited)"},
    {"upstream-timeout", "DUR", "time for the app to start its response, else 504 (default 60s)"},
    {"upstream-keepalive", "N", "idle keep-alive connections to the app kept per worker (default 256)"},
    {"upstream-idle-timeout", "DUR", "close a pooled app connection idle this long (default 4s)"},
    {"drain-idle-grace", "DUR", "when draining, leave a keep-alive connection idle for less than this (default 1s)"},
    {"drain-token", "TOKEN", "bearer token that allows /drain from non-loopback addresses"},
    {"drain-token-file", "PATH", "file holding the drain token"},
    {"log-format", "FORMAT", "text or json (default text)"},
    {"log-level", "LEVEL", "trace, debug, info, warn, error (default info)"},
};

std::string env_name(std::string_view flag) {
  std::string out = "DRAINPROXY_";
  for (char c : flag) out += c == '-' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return out;
}

// A value with where it came from, so an error can point at the flag or the variable.
struct Raw {
  std::string value;
  std::string origin;  // "--flag" or "DRAINPROXY_FLAG (environment)"
};

[[noreturn]] void fail(const std::string& flag, const Raw& raw, const std::string& why) {
  std::string where = "--" + flag;
  if (raw.origin != where) where += " (from " + raw.origin + ")";
  throw ConfigError("invalid value '" + raw.value + "' for " + where + ": " + why);
}

Duration duration_of(const std::string& flag, const Raw& raw) {
  try {
    return parse_duration(raw.value);
  } catch (const std::invalid_argument& e) {
    fail(flag, raw, e.what());
  }
}

std::uint64_t count_of(const std::string& flag, const Raw& raw, std::uint64_t min, std::uint64_t max) {
  std::uint64_t v = 0;
  const char* b = raw.value.data();
  const char* e = b + raw.value.size();
  const auto [end, ec] = std::from_chars(b, e, v);
  if (raw.value.empty() || ec != std::errc() || end != e || v < min || v > max)
    fail(flag, raw, "expected a whole number from " + std::to_string(min) + " to " + std::to_string(max));
  return v;
}

Endpoint endpoint_of(const std::string& flag, const Raw& raw, bool allow_zero) {
  try {
    return parse_endpoint(raw.value, allow_zero);
  } catch (const std::invalid_argument& e) {
    fail(flag, raw, e.what());
  }
}

// "65536", "64KiB", "1MiB", "1GiB" (also k/K/KB-style suffixes as powers of 1024).
std::uint64_t size_of(const std::string& flag, const Raw& raw, std::uint64_t min, std::uint64_t max) {
  std::uint64_t v = 0;
  const char* b = raw.value.data();
  const char* e = b + raw.value.size();
  const auto [end, ec] = std::from_chars(b, e, v);
  if (raw.value.empty() || ec != std::errc() || end == b) fail(flag, raw, "expected a size such as 65536 or 64KiB");
  const std::string unit(end, e);
  std::uint64_t mult = 1;
  if (unit.empty() || unit == "B") mult = 1;
  else if (unit == "KiB" || unit == "k" || unit == "K" || unit == "KB") mult = 1024;
  else if (unit == "MiB" || unit == "M" || unit == "MB") mult = 1024 * 1024;
  else if (unit == "GiB" || unit == "G" || unit == "GB") mult = 1024ull * 1024 * 1024;
  else fail(flag, raw, "unknown size unit '" + unit + "' (use KiB, MiB or GiB)");
  if (v > max / mult || v * mult < min || v * mult > max)
    fail(flag, raw, "must be from " + std::to_string(min) + " to " + std::to_string(max) + " bytes");
  return v * mult;
}

std::string help_text() {
  std::ostringstream out;
  out << "drainproxy: a sidecar proxy that drains connections before its pod stops.\n\n"
         "usage: drainproxy [FLAGS]\n"
         "       drainproxy drain [--admin ADDR:PORT] [--no-wait | --until-draining] [--drain-token TOKEN] [--timeout DUR]\n\n"
         "Every flag can also be set as an environment variable: --drain-timeout is\n"
         "DRAINPROXY_DRAIN_TIMEOUT. Flags win. Durations take a unit: 250ms, 5s, 1m.\n\nflags:\n";
  for (const auto& f : kFlags) {
    std::string left = std::string("  --") + f.name + " " + f.placeholder;
    if (left.size() < 40) left.resize(40, ' ');
    else left += "  ";
    out << left << f.help << "\n";
  }
  out << "  --help                                  print this text\n"
         "  --version                               print the version\n";
  return out.str();
}

std::string trim(std::string s) {
  const auto not_space = [](unsigned char c) { return !std::isspace(c); };
  s.erase(s.begin(), std::find_if(s.begin(), s.end(), not_space));
  s.erase(std::find_if(s.rbegin(), s.rend(), not_space).base(), s.end());
  return s;
}

void check_timings(const Config& c, const std::map<std::string, Raw>& raw) {
  const auto budget = c.propagation_delay + c.drain_timeout + c.grace_margin();
  if (budget > c.termination_grace_period) {
    const auto it = raw.find("termination-grace-period");
    const std::string value = it != raw.end() ? it->second.value : format_duration(c.termination_grace_period);
    throw ConfigError("invalid value '" + value + "' for --termination-grace-period: --propagation-delay (" +
                      format_duration(c.propagation_delay) + ") + --drain-timeout (" + format_duration(c.drain_timeout) +
                      ") + a safety margin (" + format_duration(c.grace_margin()) + ") = " + format_duration(budget) +
                      " does not fit; kubelet would SIGKILL the proxy mid-drain. Raise the grace period or shorten the drain.");
  }
  if (c.health.kind != HealthCheckKind::None && c.health.timeout > c.health.interval) {
    throw ConfigError("invalid value '" + format_duration(c.health.timeout) +
                      "' for --health-timeout: must not exceed --health-interval (" +
                      format_duration(c.health.interval) + ")");
  }
}

}  // namespace

Duration Config::grace_margin() const {
  return std::max(Duration(1000), termination_grace_period / 10);
}

const char* to_string(Mode m) {
  switch (m) {
    case Mode::Http: return "http";
    case Mode::Tcp: return "tcp";
  }
  return "?";
}

const char* to_string(IoUring u) {
  switch (u) {
    case IoUring::Auto: return "auto";
    case IoUring::On: return "on";
    case IoUring::Off: return "off";
  }
  return "?";
}

const char* to_string(HealthCheckKind k) {
  switch (k) {
    case HealthCheckKind::Tcp: return "tcp";
    case HealthCheckKind::Http: return "http";
    case HealthCheckKind::None: return "none";
  }
  return "?";
}

EnvLookup process_env() {
  return [](const std::string& name) -> std::optional<std::string> {
    if (const char* v = std::getenv(name.c_str())) return std::string(v);
    return std::nullopt;
  };
}

ParseResult parse(const std::vector<std::string>& args, const EnvLookup& env) {
  po::options_description desc;
  for (const auto& f : kFlags) desc.add_options()(f.name, po::value<std::string>());
  desc.add_options()("help,h", po::bool_switch())("version", po::bool_switch());

  po::variables_map vm;
  try {
    // No guessing: "--drain" must not silently mean "--drain-timeout".
    const int style = po::command_line_style::unix_style & ~po::command_line_style::allow_guessing;
    po::store(po::command_line_parser(args).options(desc).style(style).positional({}).run(), vm);
  } catch (const po::too_many_positional_options_error&) {
    throw ConfigError("unexpected argument; flags look like --name value (see --help)");
  } catch (const po::error& e) {
    throw ConfigError(e.what());
  }

  ParseResult result;
  if (vm["help"].as<bool>()) {
    result.action = ParseResult::Action::Help;
    result.text = help_text();
    return result;
  }
  if (vm["version"].as<bool>()) {
    result.action = ParseResult::Action::Version;
    return result;
  }

  std::map<std::string, Raw> raw;
  for (const auto& f : kFlags) {
    if (vm.count(f.name)) {
      raw[f.name] = Raw{vm[f.name].as<std::string>(), std::string("--") + f.name};
    } else if (auto v = env(env_name(f.name))) {
      raw[f.name] = Raw{*v, env_name(f.name) + " (environment)"};
    }
  }
  const auto has = [&](const char* name) { return raw.count(name) > 0; };

  Config& c = result.config;
  c.workers = std::max(1u, std::thread::hardware_concurrency());
  if (has("listen")) c.listen = endpoint_of("listen", raw["listen"], true);
  if (has("upstream")) c.upstream = endpoint_of("upstream", raw["upstream"], false);
  if (has("admin")) c.admin = endpoint_of("admin", raw["admin"], true);
  if (has("mode")) {
    const Raw& r = raw["mode"];
    if (r.value == "tcp") c.mode = Mode::Tcp;
    else if (r.value == "http") c.mode = Mode::Http;
    else fail("mode", r, "expected http or tcp");
  }
  if (has("propagation-delay")) c.propagation_delay = duration_of("propagation-delay", raw["propagation-delay"]);
  if (has("drain-timeout")) c.drain_timeout = duration_of("drain-timeout", raw["drain-timeout"]);
  if (has("termination-grace-period"))
    c.termination_grace_period = duration_of("termination-grace-period", raw["termination-grace-period"]);
  if (has("health-check")) {
    const Raw& r = raw["health-check"];
    if (r.value == "tcp") c.health.kind = HealthCheckKind::Tcp;
    else if (r.value == "none") c.health.kind = HealthCheckKind::None;
    else if (r.value.rfind("http:", 0) == 0) {
      c.health.kind = HealthCheckKind::Http;
      c.health.http_path = r.value.substr(5);
      const bool printable = std::all_of(c.health.http_path.begin(), c.health.http_path.end(),
                                         [](unsigned char ch) { return ch > 0x20 && ch < 0x7f; });
      if (c.health.http_path.empty() || c.health.http_path.front() != '/' || !printable)
        fail("health-check", r, "the path must start with '/' and contain no spaces, e.g. http:/healthz");
    } else {
      fail("health-check", r, "expected tcp, http:/path or none");
    }
  }
  if (has("health-interval")) c.health.interval = duration_of("health-interval", raw["health-interval"]);
  if (has("health-timeout")) c.health.timeout = duration_of("health-timeout", raw["health-timeout"]);
  if (has("health-healthy-threshold"))
    c.health.healthy_threshold = static_cast<unsigned>(count_of("health-healthy-threshold", raw["health-healthy-threshold"], 1, 100));
  if (has("health-unhealthy-threshold"))
    c.health.unhealthy_threshold =
        static_cast<unsigned>(count_of("health-unhealthy-threshold", raw["health-unhealthy-threshold"], 1, 100));
  // The default timeout follows a shorter interval; an explicit one must fit in it.
  if (!has("health-timeout")) c.health.timeout = std::min(c.health.timeout, c.health.interval);
  if (c.health.kind != HealthCheckKind::None) {
    if (c.health.interval.count() == 0) fail("health-interval", raw["health-interval"], "must be greater than 0");
    if (c.health.timeout.count() == 0) fail("health-timeout", raw["health-timeout"], "must be greater than 0");
  }
  if (has("workers")) c.workers = static_cast<unsigned>(count_of("workers", raw["workers"], 1, 256));
  if (has("io-uring")) {
    const Raw& r = raw["io-uring"];
    if (r.value == "auto") c.io_uring = IoUring::Auto;
    else if (r.value == "on") c.io_uring = IoUring::On;
    else if (r.value == "off") c.io_uring = IoUring::Off;
    else fail("io-uring", r, "expected auto, on or off");
  }
  if (has("max-connections"))
    c.max_connections = count_of("max-connections", raw["max-connections"], 1, 10'000'000);
  if (has("connect-timeout")) c.connect_timeout = duration_of("connect-timeout", raw["connect-timeout"]);
  if (has("idle-timeout")) c.idle_timeout = duration_of("idle-timeout", raw["idle-timeout"]);
  if (has("header-timeout")) c.header_timeout = duration_of("header-timeout", raw["header-timeout"]);
  if (has("max-header-bytes"))
    c.max_header_bytes = size_of("max-header-bytes", raw["max-header-bytes"], 1024, 1024 * 1024);
  if (has("max-body-bytes")) c.max_body_bytes = size_of("max-body-bytes", raw["max-body-bytes"], 0, 1ull << 62);
  if (has("upstream-timeout")) c.upstream_timeout = duration_of("upstream-timeout", raw["upstream-timeout"]);
  if (has("upstream-keepalive"))
    c.upstream_keepalive = count_of("upstream-keepalive", raw["upstream-keepalive"], 0, 100000);
  if (has("upstream-idle-timeout"))
    c.upstream_idle_timeout = duration_of("upstream-idle-timeout", raw["upstream-idle-timeout"]);
  if (has("drain-idle-grace")) c.drain_idle_grace = duration_of("drain-idle-grace", raw["drain-idle-grace"]);
  for (const char* name : {"connect-timeout", "idle-timeout", "header-timeout", "upstream-timeout",
                           "upstream-idle-timeout"}) {
    if (has(name) && parse_duration(raw[name].value).count() == 0) fail(name, raw[name], "must be greater than 0");
  }
  if (has("drain-token") && has("drain-token-file"))
    throw ConfigError("--drain-token and --drain-token-file are mutually exclusive; set one");
  if (has("drain-token")) {
    c.drain_token = raw["drain-token"].value;
    if (c.drain_token.empty()) fail("drain-token", raw["drain-token"], "must not be empty");
  }
  if (has("drain-token-file")) {
    const Raw& r = raw["drain-token-file"];
    std::ifstream in(r.value);
    if (!in) fail("drain-token-file", r, "cannot read the file");
    std::stringstream ss;
    ss << in.rdbuf();
    c.drain_token = trim(ss.str());
    if (c.drain_token.empty()) fail("drain-token-file", r, "the file is empty");
  }
  if (has("log-format")) {
    const Raw& r = raw["log-format"];
    if (r.value == "text") c.log_format = LogFormat::Text;
    else if (r.value == "json") c.log_format = LogFormat::Json;
    else fail("log-format", r, "expected text or json");
  }
  if (has("log-level")) {
    const Raw& r = raw["log-level"];
    static const std::string kLevels[] = {"trace", "debug", "info", "warn", "error", "critical", "off"};
    if (std::find(std::begin(kLevels), std::end(kLevels), r.value) == std::end(kLevels))
      fail("log-level", r, "expected trace, debug, info, warn, error, critical or off");
    c.log_level = r.value;
  }
  check_timings(c, raw);
  return result;
}

}  // namespace drainproxy::config
