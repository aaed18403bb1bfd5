#pragma once
#include <atomic>
#include <cstddef>

namespace drainproxy::proxy {

// Process-wide cap on open proxied connections (--max-connections), shared by all
// workers. Touched once per accept and once per close, never per byte.
class ConnectionLimiter {
 public:
  explicit ConnectionLimiter(std::size_t max) : max_(max) {}

  bool try_acquire() {
    std::size_t cur = active_.load(std::memory_order_relaxed);
    do {
      if (cur >= max_) return false;
    } while (!active_.compare_exchange_weak(cur, cur + 1, std::memory_order_acq_rel, std::memory_order_relaxed));
    return true;
  }
  void release() { active_.fetch_sub(1, std::memory_order_acq_rel); }
  std::size_t active() const { return active_.load(std::memory_order_acquire); }

 private:
  const std::size_t max_;
  std::atomic<std::size_t> active_{0};
};

}  // namespace drainproxy::proxy
