#pragma once
#include <cstddef>
#include <memory>
#include <vector>

namespace drainproxy::proxy {

// Fixed-size relay buffers shared by a worker's connections. A connection borrows
// one only while bytes are actually moving, so an idle tunnel holds none.
class BufferPool {
 public:
  static constexpr std::size_t kSize = 16 * 1024;
  using Buffer = std::unique_ptr<char[]>;

  explicit BufferPool(std::size_t max_free = 256) : max_free_(max_free) {}

  Buffer acquire() {
    if (free_.empty()) return Buffer(new char[kSize]);
    Buffer b = std::move(free_.back());
    free_.pop_back();
    return b;
  }

  void release(Buffer b) {
    if (b && free_.size() < max_free_) free_.push_back(std::move(b));
  }

 private:
  std::size_t max_free_;
  std::vector<Buffer> free_;
};

}  // namespace drainproxy::proxy
