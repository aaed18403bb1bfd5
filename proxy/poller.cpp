#include "proxy/poller.hpp"
#include "proxy/task.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <liburing.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <cstdlib>
#include <limits>
#include <new>

namespace drainproxy::proxy {

// ---------------------------------------------------------------- coroutine frames

namespace {

constexpr std::size_t kFrameGranule = 64;
constexpr std::size_t kFrameClasses = 64;  // frames up to 4 KiB are recycled
constexpr std::size_t kMaxFreePerClass = 256;  // per size class and thread; more goes back to malloc
constexpr std::size_t kKeepAfterTrim = 16;

struct FreeFrame {
  FreeFrame* next;
};

struct FrameCache {
  std::array<FreeFrame*, kFrameClasses> heads{};
  std::array<std::size_t, kFrameClasses> counts{};
  ~FrameCache() {
    for (FreeFrame* f : heads) {
      while (f) {
        FreeFrame* next = f->next;
        ::operator delete(f);
        f = next;
      }
    }
  }
};

thread_local FrameCache frame_cache;

[[maybe_unused]] std::size_t frame_class(std::size_t size) { return (size + kFrameGranule - 1) / kFrameGranule; }

}  // namespace

// Sanitizer builds allocate every frame afresh, so a use after free stays visible.
#if defined(__SANITIZE_ADDRESS__)
void* frame_allocate(std::size_t size) { return ::operator new(size); }
void frame_deallocate(void* p, std::size_t) noexcept { ::operator delete(p); }
std::size_t frame_trim() { return 0; }
#else
void* frame_allocate(std::size_t size) {
  const std::size_t c = frame_class(size);
  if (c < kFrameClasses) {
    if (FreeFrame* f = frame_cache.heads[c]) {
      frame_cache.heads[c] = f->next;
      --frame_cache.counts[c];
      return f;
    }
    return ::operator new(c * kFrameGranule);
  }
  return ::operator new(size);
}

void frame_deallocate(void* p, std::size_t size) noexcept {
  const std::size_t c = frame_class(size);
  if (c < kFrameClasses && frame_cache.counts[c] < kMaxFreePerClass) {
    auto* f = static_cast<FreeFrame*>(p);
    f->next = frame_cache.heads[c];
    frame_cache.heads[c] = f;
    ++frame_cache.counts[c];
    return;
  }
  ::operator delete(p);
}

std::size_t frame_trim() {
  std::size_t freed = 0;
  for (std::size_t c = 0; c < kFrameClasses; ++c) {
    while (frame_cache.counts[c] > kKeepAfterTrim) {
      FreeFrame* f = frame_cache.heads[c];
      frame_cache.heads[c] = f->next;
      --frame_cache.counts[c];
      ::operator delete(f);
      freed += c * kFrameGranule;
    }
  }
  return freed;
}
#endif

// ---------------------------------------------------------------- resumption

namespace {
thread_local std::coroutine_handle<> next_resume;
}

void detail::set_next_resume(std::coroutine_handle<> h) noexcept { next_resume = h; }

void resume(std::coroutine_handle<> h) {
  // Nested calls (a join resumed from inside a completion) drain their own chain.
  const auto outer = std::exchange(next_resume, {});
  while (h) {
    h.resume();
    h = std::exchange(next_resume, {});
  }
  next_resume = outer;
}

// ---------------------------------------------------------------- poller

namespace {

error_code last_error() { return error_code(errno, boost::system::system_category()); }

bool would_block(int e) { return e == EAGAIN || e == EWOULDBLOCK; }

// After a failed socket call: EAGAIN means the kernel has nothing (or no room) for
// us until the next edge, so `ready` is cleared; anything else is a real error.
void note_failure(bool& ready, error_code& ec) {
  if (would_block(errno)) {
    ready = false;
    ec = asio::error::would_block;
  } else {
    ec = last_error();
  }
}

// The epoll data of the eventfd; socket slots encode (generation << 32 | index) and
// never reach it (a slot index stays far below 2^32 - 1).
constexpr std::uint64_t kWakeTag = ~std::uint64_t{0};
constexpr int kMaxEvents = 256;

}  // namespace

Poller::Poller() {
  ep_ = ::epoll_create1(EPOLL_CLOEXEC);
  if (ep_ < 0) throw boost::system::system_error(last_error(), "epoll_create1");
  wake_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wake_fd_ < 0) {
    const error_code ec = last_error();
    ::close(ep_);
    throw boost::system::system_error(ec, "eventfd");
  }
  // Level-triggered: a post that lands between the read and the next wait still wakes it.
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = kWakeTag;
  if (::epoll_ctl(ep_, EPOLL_CTL_ADD, wake_fd_, &ev) != 0) {
    const error_code ec = last_error();
    ::close(wake_fd_);
    ::close(ep_);
    throw boost::system::system_error(ec, "epoll_ctl(eventfd)");
  }
}

Poller::~Poller() {
  // Handlers may own sessions whose sockets and timers unregister from this poller
  // as they go: destroy them (without running them) while the poller is still whole.
  for (;;) {
    std::vector<std::function<void()>> queued;
    queued.swap(ready_);
    {
      const std::lock_guard lock(posted_mutex_);
      for (auto& f : posted_) queued.push_back(std::move(f));
      posted_.clear();
    }
    std::vector<Timer::Handler> waits;
    while (!timers_.empty()) {
      Timer* t = timers_.back();
      timers_.pop_back();
      t->index_ = Timer::kNotQueued;
      waits.push_back(std::move(t->handler_));
    }
    if (queued.empty() && waits.empty()) break;
  }
  ::close(wake_fd_);
  ::close(ep_);
}

// ---------------------------------------------------------------- batched I/O

struct Poller::Ring {
  io_uring ring{};
  bool open = false;
  // Operations whose entries are in the submission queue, not yet submitted.
  std::vector<IoOp*> queued;
  ~Ring() {
    if (open) io_uring_queue_exit(&ring);
  }
};

namespace {

// Entries per submission: a turn with more steps submits early, which costs one
// more io_uring_enter, not a failure.
constexpr unsigned kRingEntries = 256;

// One thread submits (SINGLE_ISSUER: the ring must be set up on the loop's thread),
// and completions are posted when it enters the kernel anyway (COOP_TASKRUN) rather
// than by interrupting it. Kernels older than 6.0 refuse these flags: then without.
int open_ring(io_uring& ring) {
  io_uring_params params{};
  params.flags = IORING_SETUP_COOP_TASKRUN | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_SUBMIT_ALL;
  int rc = io_uring_queue_init_params(kRingEntries, &ring, &params);
  if (rc == -EINVAL) {
    params = io_uring_params{};
    rc = io_uring_queue_init_params(kRingEntries, &ring, &params);
  }
  return rc;
}

std::string refusal(int rc) {
  std::string why = std::string("io_uring_setup: ") + std::strerror(-rc);
  // EPERM: a seccomp profile (RuntimeDefault in containerd >= 2.0 and Docker >= 25)
  // or kernel.io_uring_disabled; ENOSYS: a kernel built without it.
  if (rc == -EPERM) why += " (refused by the seccomp profile or kernel.io_uring_disabled)";
  if (rc == -ENOSYS) why += " (kernel without io_uring)";
  return why;
}

}  // namespace

bool Poller::batching_available(std::string& why) {
  io_uring ring{};
  const int rc = open_ring(ring);
  if (rc < 0) {
    why = refusal(rc);
    return false;
  }
  io_uring_queue_exit(&ring);
  return true;
}

bool Poller::enable_batching(std::string& why, int min_events) {
  if (ring_) return true;
  batch_min_events_ = min_events;
  batch_turn_ = true;
  auto r = std::make_unique<Ring>();
  const int rc = open_ring(r->ring);
  if (rc < 0) {
    why = refusal(rc);
    return false;
  }
  r->open = true;
  // A step that could not finish inside the submitting call would post its
  // completion later: the eventfd then wakes the loop. With MSG_DONTWAIT on every
  // step this does not happen; it keeps a kernel that thinks otherwise from hanging
  // the loop.
  io_uring_register_eventfd_async(&r->ring, wake_fd_);
  ring_ = std::move(r);
  return true;
}

void Poller::batch(Socket& s, IoOp& op) {
  io_uring_sqe* sqe = next_entry();
  op.prepare(s, sqe);
  io_uring_sqe_set_data(sqe, &op);
  op.batched = true;
  op.batch_socket = &s;
  op.unsubmitted = sqe;
  ring_->queued.push_back(&op);
}

void Poller::unbatch(IoOp& op) {
  op.batch_socket = nullptr;
  if (op.unsubmitted) {
    // The descriptor is about to close, and its number may be reused before the
    // batch is submitted: the entry must no longer name it.
    io_uring_prep_nop(op.unsubmitted);
    io_uring_sqe_set_data(op.unsubmitted, &op);
    return;
  }
  // Submitted, result not taken yet. Every step is non-blocking, so the kernel has
  // already finished it; a kernel that parked it anyway must give it up, or the
  // operation would wait on a closed socket for bytes that never come.
  io_uring_sqe* sqe = next_entry();
  io_uring_prep_cancel(sqe, &op, 0);
  io_uring_sqe_set_data(sqe, nullptr);
  ring_->queued.push_back(nullptr);
}

void Poller::submit_batch() {
  auto& queued = ring_->queued;
  const int rc = io_uring_submit(&ring_->ring);
  if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY)
    throw boost::system::system_error(error_code(-rc, boost::system::system_category()), "io_uring_enter");
  // The kernel takes entries in order; the rest (if it stopped early) go next time.
  const auto taken = static_cast<std::size_t>(std::clamp(rc, 0, static_cast<int>(queued.size())));
  for (std::size_t i = 0; i < taken; ++i) {
    if (queued[i]) queued[i]->unsubmitted = nullptr;
  }
  queued.erase(queued.begin(), queued.begin() + static_cast<std::ptrdiff_t>(taken));
}

io_uring_sqe* Poller::next_entry() {
  io_uring_sqe* sqe = io_uring_get_sqe(&ring_->ring);
  // A full queue is submitted without taking the results: finishing them here would
  // resume other sessions in the middle of the caller's operation. They wait in the
  // completion queue (which the kernel never lets drop one) for this turn's reap.
  while (!sqe) {
    submit_batch();
    sqe = io_uring_get_sqe(&ring_->ring);
  }
  return sqe;
}

void Poller::flush_batch() {
  while (!ring_->queued.empty()) {
    submit_batch();
    // Their completions were posted inside the call; finishing them may queue more.
    reap_batch();
  }
}

void Poller::reap_batch() {
  io_uring_cqe* cqe;
  while (io_uring_peek_cqe(&ring_->ring, &cqe) == 0) {
    auto* op = static_cast<IoOp*>(io_uring_cqe_get_data(cqe));
    const int res = cqe->res;
    io_uring_cqe_seen(&ring_->ring, cqe);
    if (!op) continue;  // a cancellation's own result
    op->batched = false;
    Socket* s = std::exchange(op->batch_socket, nullptr);
    if (!s) {
      // Its socket closed (and forgot it) while the step was in the ring.
      op->ec = asio::error::operation_aborted;
      op->complete();
      continue;
    }
    s->stepped(*op, res);
  }
}

void Poller::wake() {
  const std::uint64_t one = 1;
  // Only fails when the counter would overflow, and then the loop is awake anyway.
  [[maybe_unused]] const auto n = ::write(wake_fd_, &one, sizeof one);
}

void Poller::post(std::function<void()> fn) {
  {
    const std::lock_guard lock(posted_mutex_);
    posted_.push_back(std::move(fn));
  }
  wake();
}

void Poller::stop() {
  stop_.store(true, std::memory_order_release);
  wake();
}

void Poller::abort() {
  abort_.store(true, std::memory_order_release);
  wake();
}

void Poller::take_posted() {
  std::uint64_t count;
  [[maybe_unused]] const auto n = ::read(wake_fd_, &count, sizeof count);
  const std::lock_guard lock(posted_mutex_);
  for (auto& f : posted_) ready_.push_back(std::move(f));
  posted_.clear();
}

int Poller::wait_timeout(std::chrono::milliseconds limit) const {
  if (!ready_.empty() || stop_.load(std::memory_order_acquire) || abort_.load(std::memory_order_acquire))
    return 0;
  auto wait = limit;
  if (!timers_.empty()) {
    const auto left = timers_.front()->expiry_ - std::chrono::steady_clock::now();
    // Rounded up: waking before the expiry would only come back to wait again.
    const auto left_ms = std::chrono::ceil<std::chrono::milliseconds>(left);
    if (left_ms < wait || wait.count() < 0) wait = std::max(left_ms, std::chrono::milliseconds(0));
  }
  return static_cast<int>(std::min<std::int64_t>(wait.count(), std::numeric_limits<int>::max()));
}

void Poller::run() {
  for (;;) {
    run_once(std::chrono::milliseconds(-1));
    if (abort_.load(std::memory_order_acquire)) break;
    if (stop_.load(std::memory_order_acquire) && ready_.empty()) {
      const std::lock_guard lock(posted_mutex_);
      if (posted_.empty()) break;
    }
  }
  // The poller can run again (tests restart it; a worker never does).
  stop_.store(false, std::memory_order_relaxed);
  abort_.store(false, std::memory_order_relaxed);
}

void Poller::run_once(std::chrono::milliseconds timeout) {
  std::array<epoll_event, kMaxEvents> events;
  if (ring_) flush_batch();
  const int n = ::epoll_wait(ep_, events.data(), kMaxEvents, wait_timeout(timeout));
  const LoopClock::Batch batch;
  if (ring_) {
    reap_batch();
    int sockets = n;
    for (int i = 0; i < n; ++i) sockets -= events[i].data.u64 == kWakeTag ? 1 : 0;
    batch_turn_ = sockets >= batch_min_events_;
  }
  for (int i = 0; i < n; ++i) {
    if (events[i].data.u64 == kWakeTag) {
      take_posted();
      continue;
    }
    const auto index = static_cast<std::uint32_t>(events[i].data.u64);
    const auto generation = static_cast<std::uint32_t>(events[i].data.u64 >> 32);
    // A socket closed earlier in this batch frees its slot: its event is stale.
    if (index >= slots_.size() || slots_[index].generation != generation) continue;
    if (Socket* s = slots_[index].socket) s->on_event(events[i].events);
  }
  fire_due_timers();
  // What was queued before this point; what these queue runs in the next turn, so a
  // task that keeps yielding cannot starve the sockets.
  running_.swap(ready_);
  for (auto& f : running_) {
    f();
    if (abort_.load(std::memory_order_relaxed)) break;
  }
  running_.clear();
  // Everything this turn queued goes to the kernel in one call.
  if (ring_) flush_batch();
}

void Poller::fire_due_timers() {
  if (timers_.empty()) return;
  // The turn's time, which the handlers see too: a watchdog that compares it with
  // its deadline must not find itself a little early and re-arm for nothing.
  const auto now = LoopClock::now();
  while (!timers_.empty() && timers_.front()->expiry_ <= now) {
    Timer* t = timers_.front();
    heap_remove(t);
    // The handler may re-arm or destroy its timer.
    Timer::Handler h = std::move(t->handler_);
    h(error_code());
  }
}

// ---------------------------------------------------------------- timer heap

void Poller::heap_place(std::size_t i, Timer* t) {
  timers_[i] = t;
  t->index_ = i;
}

void Poller::heap_sift_up(std::size_t i) {
  Timer* t = timers_[i];
  while (i > 0) {
    const std::size_t parent = (i - 1) / 2;
    if (timers_[parent]->expiry_ <= t->expiry_) break;
    heap_place(i, timers_[parent]);
    i = parent;
  }
  heap_place(i, t);
}

void Poller::heap_sift_down(std::size_t i) {
  Timer* t = timers_[i];
  const std::size_t size = timers_.size();
  for (;;) {
    std::size_t child = 2 * i + 1;
    if (child >= size) break;
    if (child + 1 < size && timers_[child + 1]->expiry_ < timers_[child]->expiry_) ++child;
    if (t->expiry_ <= timers_[child]->expiry_) break;
    heap_place(i, timers_[child]);
    i = child;
  }
  heap_place(i, t);
}

void Poller::heap_push(Timer* t) {
  timers_.push_back(t);
  heap_sift_up(timers_.size() - 1);
}

void Poller::heap_remove(Timer* t) {
  const std::size_t i = t->index_;
  t->index_ = Timer::kNotQueued;
  Timer* last = timers_.back();
  timers_.pop_back();
  if (last == t) return;
  heap_place(i, last);
  heap_sift_down(i);
  heap_sift_up(last->index_);
}

Timer::~Timer() {
  if (pending()) poller_->heap_remove(this);
}

void Timer::expires_at(clock::time_point t) {
  cancel();
  expiry_ = t;
}

void Timer::async_wait(Handler h) {
  // One wait at a time, as every caller uses it; a second one replaces the first.
  cancel();
  handler_ = std::move(h);
  poller_->heap_push(this);
}

std::size_t Timer::cancel() {
  if (!pending()) return 0;
  poller_->heap_remove(this);
  poller_->defer([h = std::move(handler_)] { h(asio::error::operation_aborted); });
  handler_ = nullptr;
  return 1;
}

std::uint32_t Poller::attach(Socket* s, int fd, error_code& ec) {
  std::uint32_t index;
  if (!free_slots_.empty()) {
    index = free_slots_.back();
    free_slots_.pop_back();
  } else {
    index = static_cast<std::uint32_t>(slots_.size());
    slots_.push_back(Slot{});
  }
  slots_[index].socket = s;
  if (fd >= 0 && !watch(index, fd, ec)) detach(index);
  return index;
}

bool Poller::watch(std::uint32_t index, int fd, error_code& ec) {
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
  ev.data.u64 = (static_cast<std::uint64_t>(slots_[index].generation) << 32) | index;
  if (::epoll_ctl(ep_, EPOLL_CTL_ADD, fd, &ev) == 0) return true;
  ec = last_error();
  return false;
}

void Poller::detach(std::uint32_t index) {
  Slot& slot = slots_[index];
  slot.socket = nullptr;
  ++slot.generation;
  free_slots_.push_back(index);
}

// ---------------------------------------------------------------- socket

Socket::Socket(Poller& poller, int fd, error_code& ec) : poller_(&poller), fd_(fd), watched_(true) {
  slot_ = poller.attach(this, fd, ec);
  if (ec) {
    ::close(fd_);
    fd_ = -1;
  }
}

Socket::Socket(Poller& poller, int fd, Lazy) : poller_(&poller), fd_(fd), readable_(true) {
  error_code no_syscall;
  slot_ = poller.attach(this, -1, no_syscall);
}

bool Socket::watch(error_code& ec) {
  if (watched_) return true;
  // Edge-triggered, and the kernel reports what is already ready when the fd is added:
  // nothing that happened before this point is missed.
  watched_ = poller_->watch(slot_, fd_, ec);
  return watched_;
}

Socket::Socket(Socket&& o) noexcept
    : poller_(o.poller_),
      fd_(std::exchange(o.fd_, -1)),
      slot_(o.slot_),
      watched_(o.watched_),
      readable_(o.readable_),
      writable_(o.writable_),
      peer_closed_(o.peer_closed_) {
  // Only idle sockets move (into and out of the app connection pool).
  if (fd_ >= 0) poller_->rebind(slot_, this);
}

Socket& Socket::operator=(Socket&& o) noexcept {
  if (this != &o) {
    close();
    poller_ = o.poller_;
    fd_ = std::exchange(o.fd_, -1);
    slot_ = o.slot_;
    watched_ = o.watched_;
    readable_ = o.readable_;
    writable_ = o.writable_;
    peer_closed_ = o.peer_closed_;
    if (fd_ >= 0) poller_->rebind(slot_, this);
  }
  return *this;
}

void Socket::cancel_ops() {
  IoOp* ops[2] = {std::exchange(reader_, nullptr), std::exchange(writer_, nullptr)};
  for (IoOp* op : ops) {
    if (!op) continue;
    // A step in the ring completes (aborted) when its result comes back.
    if (op->batched) {
      poller_->unbatch(*op);
      continue;
    }
    op->ec = asio::error::operation_aborted;
    poller_->defer(op);
  }
}

void Socket::cancel() {
  if (fd_ >= 0) cancel_ops();
}

void Socket::close() {
  if (fd_ < 0) return;
  cancel_ops();
  poller_->detach(slot_);
  ::close(fd_);  // also removes it from the epoll set
  fd_ = -1;
}

void Socket::abort() {
  if (fd_ < 0) return;
  const linger l{1, 0};
  ::setsockopt(fd_, SOL_SOCKET, SO_LINGER, &l, sizeof l);
  close();
}

void Socket::shutdown_send() {
  if (fd_ >= 0) ::shutdown(fd_, SHUT_WR);
}

void Socket::set_no_delay() {
  const int one = 1;
  if (fd_ >= 0) ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

void Socket::ack_promptly() {
  const int one = 1;
  if (fd_ >= 0) ::setsockopt(fd_, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof one);
}

std::size_t Socket::recv(void* data, std::size_t size, error_code& ec) {
  ec.clear();
  if (fd_ < 0) {
    ec = asio::error::bad_descriptor;
    return 0;
  }
  ssize_t n;
  do {
    n = ::recv(fd_, data, size, 0);
  } while (n < 0 && errno == EINTR);
  return took(n < 0 ? -errno : n, size, ec);
}

std::size_t Socket::took(ssize_t n, std::size_t size, error_code& ec) {
  if (n > 0) {
    // A short read took everything the kernel had: wait for the next edge.
    if (static_cast<std::size_t>(n) < size && !peer_closed_) readable_ = false;
    return static_cast<std::size_t>(n);
  }
  if (n == 0) {
    if (size > 0) ec = asio::error::eof;
    return 0;
  }
  if (would_block(static_cast<int>(-n))) {
    readable_ = false;
    ec = asio::error::would_block;
  } else {
    ec = error_code(static_cast<int>(-n), boost::system::system_category());
  }
  return 0;
}

std::size_t Socket::splice_in(int pipe_write, std::size_t max, error_code& ec) {
  ec.clear();
  for (;;) {
    const ssize_t n = ::splice(fd_, nullptr, pipe_write, nullptr, max, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    if (n > 0) return static_cast<std::size_t>(n);
    if (n == 0) {
      ec = asio::error::eof;
      return 0;
    }
    if (errno == EINTR) continue;
    // EAGAIN from splice may also mean the pipe is full; the caller empties it first,
    // so here it is the socket.
    note_failure(readable_, ec);
    return 0;
  }
}

std::size_t Socket::splice_out(int pipe_read, std::size_t max, error_code& ec) {
  ec.clear();
  for (;;) {
    const ssize_t n = ::splice(pipe_read, nullptr, fd_, nullptr, max, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    if (n >= 0) return static_cast<std::size_t>(n);
    if (errno == EINTR) continue;
    note_failure(writable_, ec);
    return 0;
  }
}

int Socket::accept(sockaddr_storage& peer, error_code& ec) {
  ec.clear();
  if (fd_ < 0) {
    ec = asio::error::bad_descriptor;
    return -1;
  }
  for (;;) {
    socklen_t len = sizeof peer;
    const int fd = ::accept4(fd_, reinterpret_cast<sockaddr*>(&peer), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) return fd;
    if (errno == EINTR) continue;
    note_failure(readable_, ec);
    return -1;
  }
}

bool Socket::idle_intact() {
  if (fd_ < 0) return false;
  if (watched_ && !readable_) return true;  // unwatched: no event could have told us
  char c;
  const ssize_t n = ::recv(fd_, &c, 1, MSG_PEEK | MSG_DONTWAIT);
  if (n < 0 && would_block(errno)) {
    readable_ = false;
    return true;
  }
  return false;
}

bool Socket::progress(IoOp& op) {
  // A read on a socket outside the epoll set goes on a guess (readiness is unknown
  // until the socket first waits): a batched guess would hold the reader's buffer
  // until the turn ends, for every connection accepted in that turn, only to find
  // most of them empty. Tried at once, a miss gives the buffer straight back.
  const bool guess = &op == reader_ && !watched_;
  if (poller_->batch_turn_ && op.batchable() && !guess) {
    poller_->batch(*this, op);
    return false;
  }
  return op.perform(*this);
}

bool Socket::start_read(IoOp& op) {
  if (fd_ < 0) {
    op.ec = asio::error::bad_descriptor;
    return true;
  }
  reader_ = &op;
  if (readable_) {
    if (progress(op)) {
      reader_ = nullptr;
      return true;
    }
    if (op.batched) return false;
  }
  if (!op.parks) {
    op.ec = asio::error::would_block;
    reader_ = nullptr;
    return true;
  }
  if (!watch(op.ec)) {
    reader_ = nullptr;
    return true;
  }
  return false;
}

bool Socket::start_write(IoOp& op) {
  if (fd_ < 0) {
    op.ec = asio::error::bad_descriptor;
    return true;
  }
  writer_ = &op;
  if (writable_) {
    if (progress(op)) {
      writer_ = nullptr;
      return true;
    }
    if (op.batched) return false;
  }
  if (!watch(op.ec)) {
    writer_ = nullptr;
    return true;
  }
  return false;
}

void Socket::stepped(IoOp& op, int res) {
  IoOp*& slot = reader_ == &op ? reader_ : writer_;
  if (!op.finish(*this, res)) {
    // Ready still (a partial write): the next step goes into this turn's batch.
    // Otherwise the op waits for an edge, in the epoll set.
    const bool ready = &slot == &reader_ ? readable_ : writable_;
    if (ready) {
      poller_->batch(*this, op);
      return;
    }
    if (!op.parks) {
      op.ec = asio::error::would_block;
    } else if (watch(op.ec)) {
      return;
    }
  }
  slot = nullptr;
  op.complete();
}

void Socket::on_event(std::uint32_t events) {
  IoOp* done_read = nullptr;
  IoOp* done_write = nullptr;
  if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
    readable_ = true;
    if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) peer_closed_ = true;
    if (reader_ && !reader_->batched && progress(*reader_)) done_read = std::exchange(reader_, nullptr);
  }
  if (events & (EPOLLOUT | EPOLLHUP | EPOLLERR)) {
    writable_ = true;
    if (writer_ && !writer_->batched && progress(*writer_)) done_write = std::exchange(writer_, nullptr);
  }
  // Completions last: a resumed coroutine may close or destroy this socket.
  if (done_write) done_write->complete();
  if (done_read) done_read->complete();
}

bool Socket::ReadSome::perform(Socket& sock) {
  bytes = sock.recv(data, size, ec);
  return ec != asio::error::would_block;
}

void Socket::ReadSome::prepare(Socket& sock, io_uring_sqe* sqe) {
  // MSG_DONTWAIT: an empty socket answers EAGAIN, as a plain recv would, instead of
  // the kernel keeping the buffer until bytes arrive.
  io_uring_prep_recv(sqe, sock.fd_, data, size, MSG_DONTWAIT);
}

bool Socket::ReadSome::finish(Socket& sock, int res) {
  if (res == -EINTR) return false;
  ec.clear();
  bytes = sock.took(res, size, ec);
  return ec != asio::error::would_block;
}

Socket::WriteAll::WriteAll(Socket& sock, const void* a, std::size_t an, const void* b, std::size_t bn, bool more)
    : s(sock),
      iov{iovec{const_cast<void*>(a), an}, iovec{const_cast<void*>(b), bn}},
      count(bn > 0 ? 2 : 1),
      flags(MSG_NOSIGNAL | (more ? MSG_MORE : 0)) {}

bool Socket::WriteAll::perform(Socket& sock) {
  for (;;) {
    int first = 0;
    while (first < count && iov[first].iov_len == 0) ++first;
    if (first == count) return true;
    msghdr msg{};
    msg.msg_iov = &iov[first];
    msg.msg_iovlen = static_cast<std::size_t>(count - first);
    // One buffer (the common case) goes through send(): no msghdr for the kernel to copy in.
    const ssize_t n = count - first == 1 ? ::send(sock.fd_, iov[first].iov_base, iov[first].iov_len, flags)
                                         : ::sendmsg(sock.fd_, &msg, flags);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (would_block(errno)) {
        sock.writable_ = false;
        return false;
      }
      ec = last_error();
      return true;
    }
    if (advance(static_cast<std::size_t>(n))) return true;
  }
}

bool Socket::WriteAll::advance(std::size_t n) {
  bytes += n;
  for (int i = 0; i < count && n > 0; ++i) {
    const std::size_t take = std::min(n, iov[i].iov_len);
    iov[i].iov_base = static_cast<char*>(iov[i].iov_base) + take;
    iov[i].iov_len -= take;
    n -= take;
  }
  return iov[count - 1].iov_len == 0;
}

void Socket::WriteAll::prepare(Socket& sock, io_uring_sqe* sqe) {
  int first = 0;
  while (first < count - 1 && iov[first].iov_len == 0) ++first;
  if (count - first == 1) {
    io_uring_prep_send(sqe, sock.fd_, iov[first].iov_base, iov[first].iov_len, flags | MSG_DONTWAIT);
    return;
  }
  msg = msghdr{};
  msg.msg_iov = &iov[first];
  msg.msg_iovlen = static_cast<std::size_t>(count - first);
  io_uring_prep_sendmsg(sqe, sock.fd_, &msg, flags | MSG_DONTWAIT);
}

bool Socket::WriteAll::finish(Socket& sock, int res) {
  if (res >= 0) return advance(static_cast<std::size_t>(res));
  if (res == -EINTR) return false;
  if (would_block(-res)) {
    sock.writable_ = false;
    return false;
  }
  ec = error_code(-res, boost::system::system_category());
  return true;
}

Socket::Connect::Connect(Poller& poller, const tcp::endpoint& ep, Socket& out) : s(out) {
  out.close();
  const int fd = ::socket(ep.protocol().family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    ec = last_error();
    done_ = true;
    return;
  }
  const int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  int rc;
  do {
    rc = ::connect(fd, ep.data(), static_cast<socklen_t>(ep.size()));
  } while (rc != 0 && errno == EINTR);
  if (rc != 0 && errno != EINPROGRESS) {
    ec = last_error();
    ::close(fd);
    done_ = true;
    return;
  }
  // Registered after connect(): an unconnected socket polls as writable-and-hung-up.
  out = Socket(poller, fd, ec);
  if (ec) {
    done_ = true;
    return;
  }
  out.writable_ = rc == 0;
  done_ = rc == 0;
}

bool Socket::Connect::perform(Socket& sock) {
  int err = 0;
  socklen_t len = sizeof err;
  if (::getsockopt(sock.fd_, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
  if (err != 0) ec = error_code(err, boost::system::system_category());
  return true;
}

std::string peer_address(const sockaddr_storage& sa) {
  char text[INET6_ADDRSTRLEN] = {};
  if (sa.ss_family == AF_INET) {
    const auto& in = reinterpret_cast<const sockaddr_in&>(sa);
    if (::inet_ntop(AF_INET, &in.sin_addr, text, sizeof text)) return text;
  } else if (sa.ss_family == AF_INET6) {
    const auto& in6 = reinterpret_cast<const sockaddr_in6&>(sa);
    if (::inet_ntop(AF_INET6, &in6.sin6_addr, text, sizeof text)) return text;
  }
  return {};
}

}  // namespace drainproxy::proxy
