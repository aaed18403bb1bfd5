#include "config/config.hpp"

#include <gtest/gtest.h>

#include <map>

namespace drainproxy::config {
namespace {

struct Env {
  std::map<std::string, std::string> vars;
  EnvLookup lookup() const {
    return [this](const std::string& n) -> std::optional<std::string> {
      auto it = vars.find(n);
      if (it == vars.end()) return std::nullopt;
      return it->second;
    };
  }
};

Config parse_ok(std::vector<std::string> args, const Env& env = {}) {
  auto r = parse(args, env.lookup());
  EXPECT_EQ(r.action, ParseResult::Action::Run);
  return r.config;
}

// The message a user sees must name the flag that is wrong.
void expect_error_naming(std::vector<std::string> args, const std::string& flag, const Env& env = {}) {
  try {
    parse(args, env.lookup());
    ADD_FAILURE() << "expected an error naming " << flag;
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find(flag), std::string::npos) << e.what();
  }
}

TEST(ConfigTest, DefaultsMatchTheContract) {
  const Config c = parse_ok({});
  EXPECT_EQ(c.listen, (Endpoint{"0.0.0.0", 8000}));
  EXPECT_EQ(c.upstream, (Endpoint{"127.0.0.1", 8080}));
  EXPECT_EQ(c.admin, (Endpoint{"0.0.0.0", 9901}));
  EXPECT_EQ(c.propagation_delay, Duration(5000));
  EXPECT_EQ(c.drain_timeout, Duration(20000));
  EXPECT_EQ(c.termination_grace_period, Duration(30000));
  EXPECT_EQ(c.health.kind, HealthCheckKind::Tcp);
  EXPECT_EQ(c.max_connections, 10000u);
  EXPECT_GE(c.workers, 1u);
  EXPECT_EQ(c.io_uring, IoUring::Auto);
}

TEST(ConfigTest, ParsesEveryFlag) {
  const Config c = parse_ok({"--listen", "127.0.0.1:0", "--upstream=localhost:9000", "--mode", "tcp", "--admin",
                             "[::1]:9902", "--propagation-delay", "2s", "--drain-timeout", "10s",
                             "--termination-grace-period", "1m", "--health-check", "http:/healthz",
                             "--health-interval", "2s", "--health-timeout", "1s", "--workers", "3",
                             "--max-connections", "5", "--connect-timeout", "100ms", "--idle-timeout", "5m",
                             "--header-timeout", "3s", "--drain-token", "secret", "--log-format", "json",
                             "--log-level", "debug", "--health-healthy-threshold", "2",
                             "--health-unhealthy-threshold", "4"});
  EXPECT_EQ(c.listen.port, 0);
  EXPECT_EQ(c.upstream.host, "localhost");
  EXPECT_EQ(c.admin.host, "::1");
  EXPECT_EQ(c.health.kind, HealthCheckKind::Http);
  EXPECT_EQ(c.health.http_path, "/healthz");
  EXPECT_EQ(c.health.healthy_threshold, 2u);
  EXPECT_EQ(c.health.unhealthy_threshold, 4u);
  EXPECT_EQ(c.workers, 3u);
  EXPECT_EQ(c.max_connections, 5u);
  EXPECT_EQ(c.idle_timeout, Duration(300000));
  EXPECT_EQ(c.drain_token, "secret");
  EXPECT_EQ(c.log_format, LogFormat::Json);
}

TEST(ConfigTest, EnvironmentFillsInAndFlagsWin) {
  Env env;
  env.vars = {{"DRAINPROXY_DRAIN_TIMEOUT", "7s"}, {"DRAINPROXY_PROPAGATION_DELAY", "3s"}};
  const Config c = parse_ok({"--propagation-delay", "1s"}, env);
  EXPECT_EQ(c.drain_timeout, Duration(7000));
  EXPECT_EQ(c.propagation_delay, Duration(1000));
}

TEST(ConfigTest, KubernetesServiceVariablesAreIgnored) {
  // A Service named "drainproxy" makes kubelet inject DRAINPROXY_PORT and friends.
  Env env;
  env.vars = {{"DRAINPROXY_PORT", "tcp://10.0.0.1:8000"}, {"DRAINPROXY_SERVICE_HOST", "10.0.0.1"}};
  EXPECT_NO_THROW(parse_ok({}, env));
}

TEST(ConfigTest, BadEnvironmentValueNamesFlagAndVariable) {
  Env env;
  env.vars = {{"DRAINPROXY_DRAIN_TIMEOUT", "abc"}};
  expect_error_naming({}, "--drain-timeout", env);
  expect_error_naming({}, "DRAINPROXY_DRAIN_TIMEOUT", env);
}

TEST(ConfigTest, IoUringTakesAutoOnOrOffFromTheFlagOrTheEnvironment) {
  EXPECT_EQ(parse_ok({"--io-uring", "on"}).io_uring, IoUring::On);
  EXPECT_EQ(parse_ok({"--io-uring=off"}).io_uring, IoUring::Off);
  EXPECT_EQ(parse_ok({}, Env{{{"DRAINPROXY_IO_URING", "off"}}}).io_uring, IoUring::Off);
  EXPECT_EQ(parse_ok({"--io-uring", "auto"}, Env{{{"DRAINPROXY_IO_URING", "off"}}}).io_uring, IoUring::Auto)
      << "the flag wins over the environment";
}

TEST(ConfigTest, InvalidValuesNameTheFlag) {
  expect_error_naming({"--drain-timeout", "5x"}, "--drain-timeout");
  expect_error_naming({"--propagation-delay", "5"}, "--propagation-delay");
  expect_error_naming({"--listen", "nohost"}, "--listen");
  expect_error_naming({"--upstream", "127.0.0.1:99999"}, "--upstream");
  expect_error_naming({"--upstream", "127.0.0.1:0"}, "--upstream");
  expect_error_naming({"--mode", "udp"}, "--mode");
  expect_error_naming({"--health-check", "http:healthz"}, "--health-check");
  expect_error_naming({"--health-check", "grpc"}, "--health-check");
  expect_error_naming({"--workers", "0"}, "--workers");
  expect_error_naming({"--workers", "two"}, "--workers");
  expect_error_naming({"--io-uring", "yes"}, "--io-uring");
  expect_error_naming({"--max-connections", "-1"}, "--max-connections");
  expect_error_naming({"--log-format", "xml"}, "--log-format");
  expect_error_naming({"--log-level", "loud"}, "--log-level");
  expect_error_naming({"--idle-timeout", "0"}, "--idle-timeout");
  expect_error_naming({"--drain-token-file", "/nonexistent/token"}, "--drain-token-file");
  expect_error_naming({"--health-interval", "1s", "--health-timeout", "2s"}, "--health-timeout");
}

TEST(ConfigTest, UnknownAndAbbreviatedFlagsAreRejected) {
  expect_error_naming({"--no-such-flag", "1"}, "--no-such-flag");
  // Prefix guessing would turn a typo into a different setting.
  EXPECT_THROW(parse({"--drain", "5s"}, Env{}.lookup()), ConfigError);
  EXPECT_THROW(parse({"stray"}, Env{}.lookup()), ConfigError);
}

TEST(ConfigTest, TimingsMustFitTheGracePeriod) {
  expect_error_naming({"--propagation-delay", "20s", "--drain-timeout", "20s"}, "--termination-grace-period");
  // 5s + 20s + max(1s, 10%) = 28s fits 30s; 5s + 23s + 3s does not.
  EXPECT_NO_THROW(parse_ok({"--drain-timeout", "22s"}));
  expect_error_naming({"--drain-timeout", "23s"}, "--termination-grace-period");
  EXPECT_NO_THROW(parse_ok({"--drain-timeout", "49s", "--termination-grace-period", "1m"}));
}

TEST(ConfigTest, HelpAndVersion) {
  EXPECT_EQ(parse({"--help"}, Env{}.lookup()).action, ParseResult::Action::Help);
  EXPECT_NE(parse({"--help"}, Env{}.lookup()).text.find("--drain-timeout"), std::string::npos);
  EXPECT_EQ(parse({"--version"}, Env{}.lookup()).action, ParseResult::Action::Version);
}

}  // namespace
}  // namespace drainproxy::config
