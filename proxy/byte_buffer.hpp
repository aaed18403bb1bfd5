#pragma once
#include <cstddef>
#include <cstring>
#include <memory>
#include <string_view>

#include "proxy/asio.hpp"

namespace drainproxy::proxy {

// A contiguous receive buffer: [begin, end) holds unread bytes, [end, capacity) is free.
// Heads are parsed in place (string_views into it), bodies stream through it.
class ByteBuffer {
 public:
  explicit ByteBuffer(std::size_t capacity) : data_(new char[capacity]), capacity_(capacity) {}

  std::string_view view() const { return {data_.get() + begin_, end_ - begin_}; }
  std::size_t size() const { return end_ - begin_; }
  bool empty() const { return begin_ == end_; }
  std::size_t capacity() const { return capacity_; }
  const char* data() const { return data_.get() + begin_; }

  void consume(std::size_t n) {
    begin_ += n;
    if (begin_ == end_) begin_ = end_ = 0;
  }
  void clear() { begin_ = end_ = 0; }

  // Free space after the unread bytes, moving them to the front when that makes room.
  asio::mutable_buffer prepare() {
    if (end_ == capacity_ && begin_ > 0) {
      std::memmove(data_.get(), data_.get() + begin_, end_ - begin_);
      end_ -= begin_;
      begin_ = 0;
    }
    return asio::buffer(data_.get() + end_, capacity_ - end_);
  }
  void commit(std::size_t n) { end_ += n; }
  bool full() const { return begin_ == 0 && end_ == capacity_; }

  // Grows to hold a larger message head; unread bytes are kept. Views into the old
  // storage become invalid, so callers re-parse afterwards.
  void grow(std::size_t capacity) {
    if (capacity <= capacity_) return;
    std::unique_ptr<char[]> bigger(new char[capacity]);
    std::memcpy(bigger.get(), data_.get() + begin_, end_ - begin_);
    end_ -= begin_;
    begin_ = 0;
    data_ = std::move(bigger);
    capacity_ = capacity;
  }

 private:
  std::unique_ptr<char[]> data_;
  std::size_t capacity_;
  std::size_t begin_ = 0;
  std::size_t end_ = 0;
};

}  // namespace drainproxy::proxy
