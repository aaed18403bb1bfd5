#include "proxy/upstream_pool.hpp"

namespace drainproxy::proxy {

std::optional<Socket> UpstreamPool::take(time_point now) {
  while (!idle_.empty()) {
    Idle e = std::move(idle_.back());
    idle_.pop_back();
    // The app may have closed (or, wrongly, written to) an idle connection. Such a
    // connection must never carry a request: the request would fail or be answered
    // with stale bytes.
    if (now - e.since < idle_timeout_ && e.socket.idle_intact()) return std::move(e.socket);
  }
  return std::nullopt;
}

void UpstreamPool::put(Socket s, time_point now) {
  if (max_idle_ == 0) return;
  if (idle_.size() >= max_idle_) idle_.pop_front();
  idle_.push_back(Idle{std::move(s), now});
}

void UpstreamPool::expire(time_point now) {
  while (!idle_.empty() && now - idle_.front().since >= idle_timeout_) idle_.pop_front();
}

void UpstreamPool::clear() { idle_.clear(); }

}  // namespace drainproxy::proxy
