#include "proxy/upstream_pool.hpp"

#include <sys/socket.h>

namespace drainproxy::proxy {

namespace {

// The app may have closed (or, wrongly, written to) an idle connection. Such a
// connection must never carry a request: the request would fail or be answered
// with stale bytes.
bool still_usable(tcp::socket& s) {
  char c;
  const ssize_t n = ::recv(s.native_handle(), &c, 1, MSG_PEEK | MSG_DONTWAIT);
  return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

}  // namespace

std::optional<tcp::socket> UpstreamPool::take(time_point now) {
  while (!idle_.empty()) {
    Idle e = std::move(idle_.back());
    idle_.pop_back();
    if (now - e.since < idle_timeout_ && still_usable(e.socket)) return std::move(e.socket);
    error_code ignored;
    e.socket.close(ignored);
  }
  return std::nullopt;
}

void UpstreamPool::put(tcp::socket s, time_point now) {
  if (max_idle_ == 0) return;
  if (idle_.size() >= max_idle_) {
    error_code ignored;
    idle_.front().socket.close(ignored);
    idle_.pop_front();
  }
  idle_.push_back(Idle{std::move(s), now});
}

void UpstreamPool::expire(time_point now) {
  while (!idle_.empty() && now - idle_.front().since >= idle_timeout_) {
    error_code ignored;
    idle_.front().socket.close(ignored);
    idle_.pop_front();
  }
}

void UpstreamPool::clear() {
  for (auto& e : idle_) {
    error_code ignored;
    e.socket.close(ignored);
  }
  idle_.clear();
}

}  // namespace drainproxy::proxy
