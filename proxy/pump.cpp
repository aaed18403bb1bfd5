#include "proxy/pump.hpp"

namespace drainproxy::proxy {

awaitable<PumpEnd> pump_bytes(tcp::socket& from, tcp::socket& to, asio::mutable_buffer buf, Counter* read_bytes,
                              Counter* written_bytes, std::chrono::steady_clock::time_point& last_activity,
                              error_code& ec) {
  for (;;) {
    const std::size_t n = co_await from.async_read_some(buf, asio::redirect_error(use_awaitable, ec));
    if (ec == asio::error::eof) {
      // Half-close: the other direction may still have a reply to deliver.
      error_code ignored;
      to.shutdown(tcp::socket::shutdown_send, ignored);
      co_return PumpEnd::SourceEof;
    }
    if (ec) co_return PumpEnd::SourceError;
    if (read_bytes) read_bytes->add(n);
    last_activity = std::chrono::steady_clock::now();
    co_await asio::async_write(to, asio::buffer(buf.data(), n), asio::redirect_error(use_awaitable, ec));
    if (ec) co_return PumpEnd::SinkError;
    if (written_bytes) written_bytes->add(n);
    last_activity = std::chrono::steady_clock::now();
  }
}

}  // namespace drainproxy::proxy
