#pragma once
#include <sys/socket.h>
#include <sys/uio.h>

#include <array>
#include <atomic>
#include <chrono>
#include <coroutine>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "proxy/asio.hpp"
#include "proxy/task.hpp"

struct io_uring_sqe;

namespace drainproxy::proxy {

class Socket;

// The time for bookkeeping on the data path (idle timers, request durations, pool
// ages): read once per turn of the loop while the turn runs, like HAProxy's now_ms
// and nginx's cached time, instead of a clock read at every step of every request.
// Outside a turn it reads the clock.
struct LoopClock {
  using time_point = std::chrono::steady_clock::time_point;
  using duration = std::chrono::steady_clock::duration;

  static time_point now() noexcept { return in_batch_ ? batch_now_ : std::chrono::steady_clock::now(); }

  // Scope of one batch of events.
  class Batch {
   public:
    Batch() noexcept : outer_(in_batch_) {
      batch_now_ = std::chrono::steady_clock::now();
      in_batch_ = true;
    }
    ~Batch() { in_batch_ = outer_; }
    Batch(const Batch&) = delete;
    Batch& operator=(const Batch&) = delete;

   private:
    bool outer_;
  };

 private:
  static inline thread_local time_point batch_now_{};
  static inline thread_local bool in_batch_ = false;
};

struct IoResult {
  std::size_t bytes = 0;
  error_code ec;  // eof at the end of the stream, operation_aborted when cancelled or closed
};

// A pending read, write or wait on a Socket. perform() is called when the socket
// may be ready and returns true once the operation has its result; complete()
// then hands the result to whoever waits.
class IoOp {
 public:
  virtual bool perform(Socket& s) = 0;
  virtual void complete() = 0;

  // With batched I/O (Poller::enable_batching), an operation that moves bytes is not
  // performed at once: prepare() describes its next step for the ring, and the
  // poller hands the step's result to finish() once the batch went through, which
  // returns true when the operation has its result and false when it must go on
  // (at once, or after the next edge, as the socket's readiness says).
  virtual bool batchable() const { return false; }
  virtual void prepare(Socket&, io_uring_sqe*) {}
  virtual bool finish(Socket&, int) { return true; }

  error_code ec;
  std::size_t bytes = 0;
  // False: instead of waiting for an edge, the operation completes with would_block
  // (a reader that must not hold its buffer while the socket is empty).
  bool parks = true;
  // While a step is in the ring: its socket (null once that socket closed; the step
  // then completes with operation_aborted), and its entry until the batch is submitted.
  bool batched = false;
  Socket* batch_socket = nullptr;
  io_uring_sqe* unsubmitted = nullptr;

 protected:
  ~IoOp() = default;
};

class Timer;

// A worker's event loop: an edge-triggered epoll set for the data path's sockets, a
// timer heap, a queue for completions that must not run on the caller's stack, and
// an eventfd through which other threads post work. The loop blocks in exactly one
// epoll_wait, like HAProxy's and nginx's: nesting this set inside another reactor
// (Asio's io_context) cost a second epoll_wait on every wake-up.
//
// Why not asio's socket operations: asio does not remember readiness between
// operations, so every read is first tried speculatively (one failing recv per
// response) and every wait re-arms the descriptor (one epoll_ctl per request).
// Here a socket remembers what the kernel last said — a short read means the
// receive queue is empty, EAGAIN on send means the send buffer is full — and the
// next edge-triggered event is the only thing that changes it. A keep-alive request
// then costs exactly its four data syscalls plus a share of epoll_wait.
class Poller {
 public:
  Poller();
  ~Poller();
  Poller(const Poller&) = delete;
  Poller& operator=(const Poller&) = delete;

  // Runs the loop on the calling thread until stop() or abort(). After stop() it
  // keeps turning (without blocking) until nothing is queued, so completions of
  // what the stopping code closed still run; then the poller can run again.
  void run();
  // One turn: waits at most `timeout` for events (not at all when work is queued),
  // then dispatches them, fires due timers and runs what was queued before the turn.
  void run_once(std::chrono::milliseconds timeout);
  // Thread-safe. stop(): run() returns once the queue is empty; abort(): after the
  // current turn, whatever is queued.
  void stop();
  void abort();
  // Thread-safe: `fn` runs on the loop's thread, from the queue.
  void post(std::function<void()> fn);
  // Loop thread only: `fn` runs from the queue, after the current call stack.
  void defer(std::function<void()> fn) { ready_.push_back(std::move(fn)); }
  // Completes `op` from the queue instead of the current call stack: used where
  // the caller may be iterating over what the completion would change.
  void defer(IoOp* op) {
    defer([op] { op->complete(); });
  }
  int native_handle() const { return ep_; }

  // Batched I/O: from now on the reads and writes that move bytes (read_some,
  // write_all) go to the kernel through an io_uring, all of one turn of the loop in
  // one io_uring_enter, instead of a recv or send syscall each. Readiness still comes
  // from the epoll set, and every step is non-blocking (MSG_DONTWAIT), so no buffer
  // is held by the kernel past the turn that submitted it. Loop thread only, before
  // any socket is attached. False, with the reason in `why`, when the kernel refuses
  // (a seccomp profile such as containerd's and Docker's RuntimeDefault, or a kernel
  // without io_uring); the poller then stays on plain syscalls.
  //
  // A turn whose epoll_wait returned fewer than `min_events` socket events does its
  // I/O with plain syscalls: one or two sockets' steps need two io_uring_enter calls
  // (the reads, then the writes their results lead to), which saves no syscall and
  // costs io_uring's own overhead per step. The first turn after enabling batches.
  bool enable_batching(std::string& why, int min_events = kBatchMinEvents);
  static constexpr int kBatchMinEvents = 3;
  // Whether enable_batching() can succeed in this process (any thread): false, with
  // the reason, when io_uring is refused.
  static bool batching_available(std::string& why);
  bool batching() const { return ring_ != nullptr; }

  // co_await poller.yield(): resumes after what is queued now, and one round of events.
  struct Yield {
    Poller& poller;
    bool await_ready() const noexcept { return false; }
    void await_suspend(std::coroutine_handle<> h) {
      poller.defer([h] { resume(h); });
    }
    void await_resume() const noexcept {}
  };
  Yield yield() { return Yield{*this}; }

 private:
  friend class Socket;
  friend class Timer;
  struct Slot {
    Socket* socket = nullptr;
    std::uint32_t generation = 0;
  };
  // A slot for `s`; with `fd` >= 0 also adds fd to the epoll set (detaching again on failure).
  std::uint32_t attach(Socket* s, int fd, error_code& ec);
  bool watch(std::uint32_t slot, int fd, error_code& ec);
  void rebind(std::uint32_t slot, Socket* s) { slots_[slot].socket = s; }
  void detach(std::uint32_t slot);
  void wake();
  void take_posted();
  struct Ring;
  void batch(Socket& s, IoOp& op);
  void unbatch(IoOp& op);
  io_uring_sqe* next_entry();
  void submit_batch();
  void flush_batch();
  void reap_batch();
  int wait_timeout(std::chrono::milliseconds limit) const;
  void fire_due_timers();

  // Timer heap (min-heap on expiry; each Timer knows its index).
  void heap_push(Timer* t);
  void heap_remove(Timer* t);
  void heap_sift_up(std::size_t i);
  void heap_sift_down(std::size_t i);
  void heap_place(std::size_t i, Timer* t);

  int ep_ = -1;
  int wake_fd_ = -1;
  std::vector<Slot> slots_;
  std::vector<std::uint32_t> free_slots_;
  std::vector<Timer*> timers_;
  std::vector<std::function<void()>> ready_;
  std::vector<std::function<void()>> running_;
  std::mutex posted_mutex_;
  std::vector<std::function<void()>> posted_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> abort_{false};
  std::unique_ptr<Ring> ring_;
  int batch_min_events_ = 0;
  bool batch_turn_ = false;  // this turn's steps go to the ring
};

// A one-shot timer on a Poller, shaped like asio::steady_timer: a wait that is
// cancelled (or replaced by a new expiry) completes with operation_aborted, from
// the poller's queue. Loop thread only. Destroying a timer drops its pending
// handler without calling it.
class Timer {
 public:
  using clock = std::chrono::steady_clock;
  using Handler = std::function<void(const error_code&)>;

  explicit Timer(Poller& poller) : poller_(&poller) {}
  ~Timer();
  Timer(const Timer&) = delete;
  Timer& operator=(const Timer&) = delete;

  void expires_at(clock::time_point t);
  void expires_after(clock::duration d) { expires_at(clock::now() + d); }
  void async_wait(Handler h);
  // Completes a pending wait with operation_aborted; returns how many were pending.
  std::size_t cancel();
  bool pending() const { return index_ != kNotQueued; }

 private:
  friend class Poller;
  static constexpr std::size_t kNotQueued = static_cast<std::size_t>(-1);
  Poller* poller_;
  clock::time_point expiry_{};
  std::size_t index_ = kNotQueued;
  Handler handler_;
};

// A non-blocking TCP socket registered with a Poller. Move-only; closing it
// completes pending operations with operation_aborted (from the poller's queue).
class Socket {
 public:
  Socket() = default;
  // Takes ownership of a connected, non-blocking descriptor.
  Socket(Poller& poller, int fd, error_code& ec);
  // Same, but joins the epoll set only when an operation first has to wait. A
  // connection that is served without ever waiting (a request already queued at
  // accept, answered, closed) then costs no epoll_ctl and no epoll bookkeeping at
  // close, as in HAProxy. Until then readiness is unknown, so reads are tried.
  struct Lazy {};
  Socket(Poller& poller, int fd, Lazy);
  Socket(Socket&& o) noexcept;
  Socket& operator=(Socket&& o) noexcept;
  ~Socket() { close(); }

  bool is_open() const { return fd_ >= 0; }
  int native_handle() const { return fd_; }
  Poller* poller() const { return poller_; }
  // Whether the kernel may have bytes for us (false after EAGAIN or a short read).
  bool maybe_readable() const { return readable_; }
  // In the epoll set (a lazily watched socket joins it when an operation first waits).
  bool watched() const { return watched_; }

  void close();
  // Closes with RST: the peer sees a failure, not a clean end of stream.
  void abort();
  // Completes pending operations with operation_aborted; the socket stays open.
  void cancel();
  void shutdown_send();
  void set_no_delay();
  // Leaves the kernel's delayed-ACK "interactive" mode (TCP_QUICKACK) for the bytes
  // that follow. A connection that carries requests and responses is in that mode:
  // our ACKs wait to ride on data going back, or for the delayed-ACK timer (40 ms at
  // least). A peer sending us a body it cannot fully put in flight waits for them.
  // Not sticky: the kernel re-enters the mode as requests flow again.
  void ack_promptly();

  // Synchronous, non-blocking receive. `would_block` when nothing is there.
  std::size_t recv(void* data, std::size_t size, error_code& ec);
  // Zero-copy relay through a pipe: bytes from this socket into `pipe_write`, and
  // from `pipe_read` into this socket. Same conventions as recv(); a short splice
  // proves nothing about the socket being drained, so only EAGAIN clears readiness.
  std::size_t splice_in(int pipe_write, std::size_t max, error_code& ec);
  std::size_t splice_out(int pipe_read, std::size_t max, error_code& ec);
  // For a listening socket: a new non-blocking connection, or -1 (ec would_block when none is queued).
  int accept(sockaddr_storage& peer, error_code& ec);
  // For an idle pooled connection: true unless the peer closed it or sent bytes
  // nobody asked for. Free while no event was seen since the last short read.
  bool idle_intact();

  // Starts `op`: performs it now when the socket is ready, else parks it until an
  // event makes it ready. Returns true when it completed at once (complete() is
  // not called then).
  bool start_read(IoOp& op);
  bool start_write(IoOp& op);

  // co_await-able operations.
  struct ReadSome;
  struct WriteAll;
  struct WaitReadable;
  struct WaitWritable;
  struct Connect;
  ReadSome read_some(void* data, std::size_t size);
  // The same, but an empty socket completes it with would_block rather than parking
  // it: the caller lets go of its buffer and waits with wait_readable().
  ReadSome try_read_some(void* data, std::size_t size);
  // `more`: the connection closes right after this write, so the kernel may hold the
  // last segment back and send it together with the FIN (MSG_MORE).
  WriteAll write_all(const void* a, std::size_t a_size, const void* b = nullptr, std::size_t b_size = 0,
                     bool more = false);
  WaitReadable wait_readable();
  WaitWritable wait_writable();

  // Connects a new socket to `ep`: `co_await Socket::connect(poller, ep, socket)`.
  static Connect connect(Poller& poller, const tcp::endpoint& ep, Socket& out);

 private:
  friend class Poller;
  void on_event(std::uint32_t events);
  void cancel_ops();
  // Moves `op` on while the socket is ready: performs it, or with batched I/O hands
  // its next step to the ring. True when it has its result now.
  bool progress(IoOp& op);
  // The result of `op`'s batched step: completes it, sends it on, or parks it.
  void stepped(IoOp& op, int res);
  // recv()'s bookkeeping for `n` bytes (or -errno) received into `size`, shared with
  // batched reads.
  std::size_t took(ssize_t n, std::size_t size, error_code& ec);
  // Before an operation parks: joins the epoll set if not yet done. False (with
  // `ec`) when the kernel refused.
  bool watch(error_code& ec);

  Poller* poller_ = nullptr;
  int fd_ = -1;
  std::uint32_t slot_ = 0;
  bool watched_ = false;    // in the epoll set
  bool readable_ = false;  // an edge arrives for bytes that are already there when registering
  bool writable_ = true;
  // The peer's FIN (or an error) was seen: a short read no longer means "wait for
  // an edge", because no further edge comes for an end of stream already queued.
  bool peer_closed_ = false;
  IoOp* reader_ = nullptr;
  IoOp* writer_ = nullptr;
};

// An operation awaited by a coroutine: resumes it on completion.
class CoroOp : public IoOp {
 public:
  void complete() override { resume(waiter_); }

 protected:
  ~CoroOp() = default;
  std::coroutine_handle<> waiter_;
};

struct Socket::ReadSome final : CoroOp {
  Socket& s;
  void* data;
  std::size_t size;
  ReadSome(Socket& sock, void* d, std::size_t n, bool park) : s(sock), data(d), size(n) { parks = park; }
  bool perform(Socket& sock) override;
  bool batchable() const override { return true; }
  void prepare(Socket& sock, io_uring_sqe* sqe) override;
  bool finish(Socket& sock, int res) override;
  bool await_ready() { return s.start_read(*this); }
  void await_suspend(std::coroutine_handle<> h) { waiter_ = h; }
  IoResult await_resume() const { return {bytes, ec}; }
};

struct Socket::WriteAll final : CoroOp {
  Socket& s;
  std::array<iovec, 2> iov;
  int count;
  int flags;
  msghdr msg{};  // a batched two-buffer step's, read by the kernel when the batch is submitted
  WriteAll(Socket& sock, const void* a, std::size_t an, const void* b, std::size_t bn, bool more);
  bool perform(Socket& sock) override;
  bool batchable() const override { return true; }
  void prepare(Socket& sock, io_uring_sqe* sqe) override;
  bool finish(Socket& sock, int res) override;
  // Counts `n` bytes as written; true when nothing is left.
  bool advance(std::size_t n);
  bool await_ready() { return s.start_write(*this); }
  void await_suspend(std::coroutine_handle<> h) { waiter_ = h; }
  IoResult await_resume() const { return {bytes, ec}; }
};

struct Socket::WaitReadable final : CoroOp {
  Socket& s;
  explicit WaitReadable(Socket& sock) : s(sock) {}
  bool perform(Socket& sock) override { return sock.readable_; }
  bool await_ready() { return s.start_read(*this); }
  void await_suspend(std::coroutine_handle<> h) { waiter_ = h; }
  error_code await_resume() const { return ec; }
};

struct Socket::WaitWritable final : CoroOp {
  Socket& s;
  explicit WaitWritable(Socket& sock) : s(sock) {}
  bool perform(Socket& sock) override { return sock.writable_; }
  bool await_ready() { return s.start_write(*this); }
  void await_suspend(std::coroutine_handle<> h) { waiter_ = h; }
  error_code await_resume() const { return ec; }
};

struct Socket::Connect final : CoroOp {
  Socket& s;
  Connect(Poller& poller, const tcp::endpoint& ep, Socket& out);
  bool perform(Socket& sock) override;
  bool await_ready() { return done_ || s.start_write(*this); }
  void await_suspend(std::coroutine_handle<> h) { waiter_ = h; }
  error_code await_resume() {
    // A failed connect leaves nothing half-open behind.
    if (ec) s.close();
    return ec;
  }

 private:
  bool done_ = false;
};

inline Socket::ReadSome Socket::read_some(void* data, std::size_t size) { return ReadSome(*this, data, size, true); }
inline Socket::ReadSome Socket::try_read_some(void* data, std::size_t size) {
  return ReadSome(*this, data, size, false);
}
inline Socket::WriteAll Socket::write_all(const void* a, std::size_t an, const void* b, std::size_t bn, bool more) {
  return WriteAll(*this, a, an, b, bn, more);
}
inline Socket::WaitReadable Socket::wait_readable() { return WaitReadable(*this); }
inline Socket::WaitWritable Socket::wait_writable() { return WaitWritable(*this); }
inline Socket::Connect Socket::connect(Poller& poller, const tcp::endpoint& ep, Socket& out) {
  return Connect(poller, ep, out);
}

// The peer's address as text ("" when unknown).
std::string peer_address(const sockaddr_storage& sa);

}  // namespace drainproxy::proxy
