#pragma once
// The one place Asio and Beast are included from. <utility> first: Asio 1.18's
// awaitable.hpp uses std::exchange without including it, which g++ 12 rejects.
#include <utility>

#include <boost/asio.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace drainproxy {
namespace asio = boost::asio;
using tcp = boost::asio::ip::tcp;
using error_code = boost::system::error_code;
using asio::awaitable;
using asio::use_awaitable;
}  // namespace drainproxy
