#include "proxy/socket_options.hpp"

#include <sys/socket.h>
#include <unistd.h>

namespace drainproxy::proxy {

void abort_fd(int fd) {
  const linger l{1, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
  ::close(fd);
}

tcp::acceptor open_reuseport_acceptor(asio::io_context& ioc, const tcp::endpoint& ep) {
  tcp::acceptor a(ioc);
  a.open(ep.protocol());
  a.set_option(asio::socket_base::reuse_address(true));
  a.set_option(reuse_port(true));
  a.bind(ep);
  a.listen(asio::socket_base::max_listen_connections);
  return a;
}

void check_port_free(const tcp::endpoint& ep) {
  if (ep.port() == 0) return;
  asio::io_context ioc;
  tcp::acceptor probe(ioc);
  probe.open(ep.protocol());
  probe.set_option(asio::socket_base::reuse_address(true));
  probe.bind(ep);
}

}  // namespace drainproxy::proxy
