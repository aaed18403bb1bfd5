#pragma once
#include "proxy/asio.hpp"

namespace drainproxy::proxy {

using reuse_port = asio::detail::socket_option::boolean<SOL_SOCKET, SO_REUSEPORT>;

// Close with RST instead of FIN, so the peer sees a failure rather than a clean,
// empty stream (and we keep no TIME_WAIT entry).
void abort_fd(int fd);

// Opens an acceptor on `ep` with SO_REUSEPORT, so each worker can have its own.
// Throws boost::system::system_error.
tcp::acceptor open_reuseport_acceptor(asio::io_context& ioc, const tcp::endpoint& ep);

// Fails with EADDRINUSE if anything already listens on `ep`, including another
// process's SO_REUSEPORT group, which would otherwise silently share our traffic.
void check_port_free(const tcp::endpoint& ep);

}  // namespace drainproxy::proxy
