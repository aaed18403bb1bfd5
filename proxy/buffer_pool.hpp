#pragma once
#include <cstddef>
#include <memory>
#include <vector>

#include "proxy/warm_list.hpp"

namespace drainproxy::proxy {

// Fixed-size relay buffers shared by a worker's connections. A connection borrows
// one only while bytes are actually moving, so an idle tunnel holds none.
class BufferPool {
 public:
  static constexpr std::size_t kSize = 16 * 1024;
  using Buffer = std::unique_ptr<char[]>;

  explicit BufferPool(std::size_t max_free = 256) : list_(max_free, 4) {}

  Buffer acquire() {
    Buffer b = list_.take();
    return b ? std::move(b) : Buffer(new char[kSize]);
  }

  void release(Buffer b) {
    if (b) list_.put(std::move(b));
  }

  // Frees buffers kept beyond recent use; returns the bytes handed back.
  std::size_t trim() { return list_.trim() * kSize; }

 private:
  WarmList<Buffer> list_;
};

}  // namespace drainproxy::proxy
