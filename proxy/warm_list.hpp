#pragma once
#include <algorithm>
#include <cstddef>
#include <utility>
#include <vector>

namespace drainproxy::proxy {

// Objects kept for reuse by a worker's connections (buffers, exchanges). It keeps
// as many as were recently in use at once: after a burst, trim() hands the surplus
// back to the heap, so a quiet proxy does not sit on its peak's memory.
template <typename Ptr>
class WarmList {
 public:
  WarmList(std::size_t max_free, std::size_t min_keep) : max_free_(max_free), min_keep_(min_keep) {}

  // A kept object, or an empty one for the caller to make.
  Ptr take() {
    ++in_use_;
    peak_ = std::max(peak_, in_use_);
    if (free_.empty()) return Ptr();
    Ptr p = std::move(free_.back());
    free_.pop_back();
    return p;
  }
  // Back from use: kept if there is room.
  void put(Ptr p) {
    if (in_use_ > 0) --in_use_;
    if (free_.size() < max_free_) free_.push_back(std::move(p));
  }
  // Back from use but not worth keeping (destroyed by the caller).
  void drop() {
    if (in_use_ > 0) --in_use_;
  }
  // Frees what exceeds the peak of concurrent use since the last call; returns how many.
  std::size_t trim() {
    const std::size_t keep = std::max(min_keep_, peak_);
    std::size_t freed = 0;
    while (free_.size() > keep) {
      free_.pop_back();
      ++freed;
    }
    peak_ = in_use_;
    return freed;
  }
  std::size_t free_count() const { return free_.size(); }

 private:
  std::size_t max_free_;
  std::size_t min_keep_;
  std::size_t in_use_ = 0;
  std::size_t peak_ = 0;
  std::vector<Ptr> free_;
};

}  // namespace drainproxy::proxy
