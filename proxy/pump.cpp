#include "proxy/pump.hpp"

#include <optional>

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


// Moves what one splice_in() put into the pipe on to the sink.
Task<bool> drain_pipe(BorrowedPipe& pipe, Socket& to, Counter* written_bytes, error_code& ec) {
  while (pipe.pending > 0) {
    const std::size_t w = to.splice_out(pipe.get().read, pipe.pending, ec);
    if (ec == asio::error::would_block || (!ec && w == 0)) {
      ec = co_await to.wait_writable();
      if (ec) co_return false;
      continue;
    }
    if (ec) co_return false;
    pipe.pending -= w;
    if (written_bytes) written_bytes->add(w);
  }
  co_return true;
}

}  // namespace

Task<PumpEnd> pump_bytes(Socket& from, Socket& to, BufferPool& pool, PipePool* pipes, Counter* read_bytes,
                         Counter* written_bytes, std::chrono::steady_clock::time_point& last_activity,
                         error_code& ec) {
  Borrowed buf(pool);
  std::optional<BorrowedPipe> pipe;
  if (pipes) pipe.emplace(*pipes);
  // Small messages are copied (recv + send, and a short read proves the socket
  // drained); once a read fills the buffer the flow is bulk and moves by splice.
  bool bulk = false;
  std::size_t since_yield = 0;
  for (;;) {
    if (!from.maybe_readable()) {
      buf.give_back();
      if (pipe) pipe->give_back();
      since_yield = 0;
      ec = co_await from.wait_readable();
      if (ec) co_return PumpEnd::SourceError;
    } else if (since_yield >= kFairShare) {
      since_yield = 0;
      co_await from.poller()->yield();
    }
    const bool via_pipe = bulk && pipe && pipe->get();
    std::size_t n;
    if (via_pipe) {
      n = from.splice_in(pipe->get().write, kSpliceChunk, ec);
    } else {
      // Completes at once on plain syscalls; with batched I/O the read goes into
      // this turn's batch. An empty socket answers would_block: the buffer goes back
      // before the wait above.
      const IoResult r = co_await from.try_read_some(buf.get(), BufferPool::kSize);
      n = r.bytes;
      ec = r.ec;
    }
    if (ec == asio::error::would_block) continue;
    if (ec == asio::error::eof) co_return PumpEnd::SourceEof;
    if (ec) co_return PumpEnd::SourceError;
    if (read_bytes) read_bytes->add(n);
    last_activity = LoopClock::now();
    if (via_pipe) {
      pipe->pending = n;
      if (!co_await drain_pipe(*pipe, to, written_bytes, ec)) co_return PumpEnd::SinkError;
    } else {
      const IoResult w = co_await to.write_all(buf.get(), n);
      ec = w.ec;
      if (ec) co_return PumpEnd::SinkError;
      if (written_bytes) written_bytes->add(n);
    }
    last_activity = LoopClock::now();
    since_yield += n;
    const bool was_bulk = bulk;
    bulk = n >= BufferPool::kSize;
    if (bulk && !was_bulk) from.ack_promptly();
  }
}

}  // namespace drainproxy::proxy
