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

Task<PumpEnd> pump_bytes(Socket& from, Socket& to, BufferPool& pool, Counter* read_bytes, Counter* written_bytes,
                        std::chrono::steady_clock::time_point& last_activity, error_code& ec) {
  Borrowed buf(pool);
  for (;;) {
    if (!from.maybe_readable()) {
      buf.give_back();
      ec = co_await from.wait_readable();
      if (ec) co_return PumpEnd::SourceError;
    }
    const std::size_t n = from.recv(buf.get(), BufferPool::kSize, ec);
    if (ec == asio::error::would_block) continue;
    if (ec == asio::error::eof) {
      // Half-close: the other direction may still have a reply to deliver.
      to.shutdown_send();
      co_return PumpEnd::SourceEof;
    }
    if (ec) co_return PumpEnd::SourceError;
    if (read_bytes) read_bytes->add(n);
    last_activity = std::chrono::steady_clock::now();
    const IoResult w = co_await to.write_all(buf.get(), n);
    ec = w.ec;
    if (ec) co_return PumpEnd::SinkError;
    if (written_bytes) written_bytes->add(n);
    last_activity = std::chrono::steady_clock::now();
  }
}

}  // namespace drainproxy::proxy
