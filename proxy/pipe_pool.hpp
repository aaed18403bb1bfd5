#pragma once
#include <fcntl.h>
#include <unistd.h>

#include <cstddef>
#include <vector>

namespace drainproxy::proxy {

// Pipes for zero-copy TCP relaying (splice: socket -> pipe -> socket, no copy
// through user space). Like relay buffers, a connection borrows one only while
// bytes move, so idle connections hold no descriptors beyond their sockets.
class PipePool {
 public:
  struct Pipe {
    int read = -1;
    int write = -1;
    explicit operator bool() const { return read >= 0; }
  };

  explicit PipePool(std::size_t max_free = 64) : max_free_(max_free) {}
  ~PipePool() {
    for (Pipe& p : free_) close(p);
  }
  PipePool(const PipePool&) = delete;
  PipePool& operator=(const PipePool&) = delete;

  // An empty pipe, or an invalid one when none can be made (out of descriptors):
  // the caller then copies through a buffer instead.
  Pipe acquire() {
    if (!free_.empty()) {
      Pipe p = free_.back();
      free_.pop_back();
      return p;
    }
    int fds[2];
    if (::pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0) return {};
    return Pipe{fds[0], fds[1]};
  }

  // Only an empty pipe can be reused; one still holding bytes is closed.
  void release(Pipe p, bool empty) {
    if (!p) return;
    if (empty && free_.size() < max_free_) {
      free_.push_back(p);
      return;
    }
    close(p);
  }

 private:
  static void close(Pipe& p) {
    ::close(p.read);
    ::close(p.write);
  }
  std::size_t max_free_;
  std::vector<Pipe> free_;
};

}  // namespace drainproxy::proxy
