#pragma once
#include <memory>
#include <string>
#include <vector>

#include "http/chunked.hpp"
#include "http/message.hpp"
#include "proxy/byte_buffer.hpp"
#include "proxy/warm_list.hpp"

namespace drainproxy::proxy {

// The working memory of one HTTP connection while it has a request in progress:
// buffers, parsed heads and the outgoing head. Borrowed from the worker's pool
// when bytes arrive and returned when the connection goes idle, so an idle
// keep-alive connection holds no buffers, and a busy one allocates nothing.
struct Exchange {
  static constexpr std::size_t kBufferSize = 16 * 1024;

  ByteBuffer in{kBufferSize};   // from the client
  ByteBuffer out{kBufferSize};  // from the upstream
  http::RequestHead req;
  http::ResponseHead resp;
  http::RequestKind req_kind = http::RequestKind::Regular;  // survives the request head's bytes
  http::ChunkedFramer framer;
  std::string head;  // the head being sent

  Exchange() {
    req.fields.reserve(32);
    resp.fields.reserve(32);
    head.reserve(2048);
  }
};

class ExchangePool {
 public:
  explicit ExchangePool(std::size_t max_free = 64) : list_(max_free, 4) {}

  std::unique_ptr<Exchange> acquire() {
    auto e = list_.take();
    return e ? std::move(e) : std::make_unique<Exchange>();
  }

  void release(std::unique_ptr<Exchange> e) {
    // An exchange that grew for a huge head is not worth keeping.
    if (e->in.capacity() != Exchange::kBufferSize) {
      list_.drop();
      return;
    }
    e->in.clear();
    e->out.clear();
    e->head.clear();
    list_.put(std::move(e));
  }

  // Frees exchanges kept beyond recent use; returns the bytes handed back (roughly).
  std::size_t trim() { return list_.trim() * 2 * Exchange::kBufferSize; }

 private:
  WarmList<std::unique_ptr<Exchange>> list_;
};

}  // namespace drainproxy::proxy
