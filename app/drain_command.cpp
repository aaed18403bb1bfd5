#include "app/drain_command.hpp"

#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <iostream>

#include "proxy/asio.hpp"

namespace drainproxy::app {

namespace beast = boost::beast;
namespace http = beast::http;

namespace {

constexpr const char* kUsage =
    "usage: drainproxy drain [--admin ADDR:PORT] [--no-wait | --until-draining] [--drain-token TOKEN] [--timeout DUR]\n"
    "  Starts the drain of the drainproxy whose admin port is ADDR:PORT (default: $DRAINPROXY_ADMIN\n"
    "  or 0.0.0.0:9901, reached on loopback) and waits until it has finished; --no-wait returns at\n"
    "  once, --until-draining once the proxy stopped accepting new connections.\n";

int usage_error(const std::string& msg) {
  std::cerr << "drainproxy drain: " << msg << "\n" << kUsage;
  return 2;
}

}  // namespace

int run_drain_command(const std::vector<std::string>& args, const config::EnvLookup& env) {
  std::string admin = env("DRAINPROXY_ADMIN").value_or("0.0.0.0:9901");
  std::string token = env("DRAINPROXY_DRAIN_TOKEN").value_or("");
  std::string target = "/drain";
  config::Duration timeout{60000};
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    auto value = [&](const std::string& flag) -> std::optional<std::string> {
      if (a.rfind(flag + "=", 0) == 0) return a.substr(flag.size() + 1);
      if (a == flag && i + 1 < args.size()) return args[++i];
      return std::nullopt;
    };
    if (a == "--help" || a == "-h") {
      std::cout << kUsage;
      return 0;
    }
    if (a == "--no-wait") {
      target = "/drain?wait=false";
    } else if (a == "--until-draining") {
      target = "/drain?wait=draining";
    } else if (auto v = value("--admin")) {
      admin = *v;
    } else if (auto v2 = value("--drain-token")) {
      token = *v2;
    } else if (auto v3 = value("--timeout")) {
      try {
        timeout = config::parse_duration(*v3);
      } catch (const std::exception& e) {
        return usage_error("invalid value '" + *v3 + "' for --timeout: " + e.what());
      }
    } else {
      return usage_error("unknown argument '" + a + "'");
    }
  }

  config::Endpoint ep;
  try {
    ep = config::parse_endpoint(admin, false);
  } catch (const std::exception& e) {
    return usage_error("invalid value '" + admin + "' for --admin: " + e.what());
  }
  // A wildcard admin address is reached on loopback, where /drain needs no token.
  if (ep.host == "0.0.0.0") ep.host = "127.0.0.1";
  if (ep.host == "::") ep.host = "::1";

  try {
    asio::io_context ioc;
    beast::tcp_stream stream(ioc);
    tcp::resolver resolver(ioc);
    stream.expires_after(timeout);
    stream.connect(resolver.resolve(ep.host, std::to_string(ep.port)));
    http::request<http::empty_body> req{http::verb::post, target, 11};
    req.set(http::field::host, ep.to_string());
    req.set(http::field::user_agent, "drainproxy-drain");
    if (!token.empty()) req.set(http::field::authorization, "Bearer " + token);
    req.keep_alive(false);

    // The synchronous calls ignore tcp_stream's deadline, so run the async ones with a bound.
    error_code ec;
    http::async_write(stream, req, [&](error_code e, std::size_t) { ec = e; });
    ioc.run();
    if (ec) throw boost::system::system_error(ec);
    ioc.restart();
    beast::flat_buffer buf;
    http::response<http::string_body> res;
    stream.expires_after(timeout);
    http::async_read(stream, buf, res, [&](error_code e, std::size_t) { ec = e; });
    ioc.run();
    if (ec) throw boost::system::system_error(ec);
    std::cout << res.body();
    if (res.result_int() == 200 || res.result_int() == 202) return 0;
    std::cerr << "drainproxy drain: admin answered " << res.result_int() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "drainproxy drain: cannot reach the admin endpoint at " << ep.to_string() << ": " << e.what() << "\n";
    return 1;
  }
}

}  // namespace drainproxy::app
