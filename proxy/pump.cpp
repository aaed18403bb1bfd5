#include "proxy/pump.hpp"

namespace drainproxy::proxy {

namespace {

// Returns the borrowed buffer on every way out of the pump.
class Borrowed {
 public:
  explicit Borrowed(BufferPool& pool) : pool_(pool) {}
  ~Borrowed() { give_back(); }
  Borrowed(const Borrowed&) = delete;
  Borrowed& operator=(const Borrowed&) = delete;

  char* get() {
    if (!buf_) buf_ = pool_.acquire();
    return buf_.get();
  }
  void give_back() { pool_.release(std::move(buf_)); }

 private:
  BufferPool& pool_;
  BufferPool::Buffer buf_;
};

}  // namespace

awaitable<PumpEnd> pump_bytes(tcp::socket& from, tcp::socket& to, BufferPool& pool, Counter* read_bytes,
                              Counter* written_bytes, std::chrono::steady_clock::time_point& last_activity,
                              error_code& ec) {
  Borrowed buf(pool);
  for (;;) {
    const std::size_t n = from.read_some(asio::buffer(buf.get(), BufferPool::kSize), ec);
    if (ec == asio::error::would_block || ec == asio::error::try_again) {
      buf.give_back();
      co_await from.async_wait(tcp::socket::wait_read, asio::redirect_error(use_awaitable, ec));
      if (ec) co_return PumpEnd::SourceError;
      continue;
    }
    if (ec == asio::error::eof) {
      // Half-close: the other direction may still have a reply to deliver.
      error_code ignored;
      to.shutdown(tcp::socket::shutdown_send, ignored);
      co_return PumpEnd::SourceEof;
    }
    if (ec) co_return PumpEnd::SourceError;
    if (read_bytes) read_bytes->add(n);
    last_activity = std::chrono::steady_clock::now();
    co_await asio::async_write(to, asio::buffer(buf.get(), n), asio::redirect_error(use_awaitable, ec));
    if (ec) co_return PumpEnd::SinkError;
    if (written_bytes) written_bytes->add(n);
    last_activity = std::chrono::steady_clock::now();
  }
}

}  // namespace drainproxy::proxy
