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

// Returns the borrowed pipe on every way out; a pipe left holding bytes is not reused.
class BorrowedPipe {
 public:
  explicit BorrowedPipe(PipePool& pool) : pool_(pool) {}
  ~BorrowedPipe() { give_back(); }
  BorrowedPipe(const BorrowedPipe&) = delete;
  BorrowedPipe& operator=(const BorrowedPipe&) = delete;

  const PipePool::Pipe& get() {
    if (!pipe_) pipe_ = pool_.acquire();
    return pipe_;
  }
  void give_back() {
    pool_.release(pipe_, pending == 0);
    pipe_ = {};
  }
  std::size_t pending = 0;  // bytes in the pipe, not yet written to the sink

 private:
  PipePool& pool_;
  PipePool::Pipe pipe_;
};

constexpr std::size_t kSpliceChunk = 64 * 1024;

Task<PumpEnd> copy_bytes(Socket& from, Socket& to, BufferPool& pool, Counter* read_bytes, Counter* written_bytes,
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

}  // namespace

Task<PumpEnd> pump_bytes(Socket& from, Socket& to, BufferPool& pool, PipePool* pipes, Counter* read_bytes,
                         Counter* written_bytes, std::chrono::steady_clock::time_point& last_activity,
                         error_code& ec) {
  if (!pipes) co_return co_await copy_bytes(from, to, pool, read_bytes, written_bytes, last_activity, ec);
  BorrowedPipe pipe(*pipes);
  for (;;) {
    if (!from.maybe_readable()) {
      pipe.give_back();
      ec = co_await from.wait_readable();
      if (ec) co_return PumpEnd::SourceError;
    }
    if (!pipe.get()) co_return co_await copy_bytes(from, to, pool, read_bytes, written_bytes, last_activity, ec);
    const std::size_t n = from.splice_in(pipe.get().write, kSpliceChunk, ec);
    if (ec == asio::error::would_block) continue;
    if (ec == asio::error::eof) {
      to.shutdown_send();
      co_return PumpEnd::SourceEof;
    }
    if (ec) co_return PumpEnd::SourceError;
    if (read_bytes) read_bytes->add(n);
    last_activity = std::chrono::steady_clock::now();
    pipe.pending = n;
    while (pipe.pending > 0) {
      const std::size_t w = to.splice_out(pipe.get().read, pipe.pending, ec);
      if (ec == asio::error::would_block) {
        ec = co_await to.wait_writable();
        if (ec) co_return PumpEnd::SinkError;
        continue;
      }
      if (ec) co_return PumpEnd::SinkError;
      if (w == 0) {
        // Nothing moved and no error: wait for room rather than spin.
        ec = co_await to.wait_writable();
        if (ec) co_return PumpEnd::SinkError;
        continue;
      }
      pipe.pending -= w;
      if (written_bytes) written_bytes->add(w);
    }
    last_activity = std::chrono::steady_clock::now();
  }
}

}  // namespace drainproxy::proxy
