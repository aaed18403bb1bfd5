#pragma once
#include <atomic>
#include <chrono>
#include <future>
#include <memory>
#include <thread>
#include <vector>

#include "proxy/asio.hpp"
#include "proxy/listener.hpp"
#include "proxy/poller.hpp"

namespace drainproxy::proxy {

// One event-loop thread with its own Poller. A connection lives its whole life on
// the worker that accepted it, so sessions need neither strands nor locks.
class Worker {
 public:
  // `batching`: the loop moves socket bytes through io_uring (Poller::enable_batching).
  Worker(unsigned id, const drain::DrainDecision& drain, bool batching = false);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  Poller& poller() { return *poller_; }
  void add_listener(std::unique_ptr<Listener> l) { listeners_.push_back(std::move(l)); }

  void start();
  // The future is ready once this worker's listening sockets are closed.
  std::future<void> post_stop_accepting();
  void post_force_close();
  // Lets the loop finish once its sessions are gone, then joins the thread.
  void shutdown(std::chrono::milliseconds max_wait);

  // Liveness: the control loop posts a ping; a worker stuck in a handler stops answering.
  void post_ping();
  std::chrono::steady_clock::time_point last_pong() const {
    return std::chrono::steady_clock::time_point(std::chrono::steady_clock::duration(last_pong_.load()));
  }

 private:
  void housekeeping();
  void arm_tick();

  unsigned id_;
  const drain::DrainDecision& drain_;
  bool batching_;
  bool stopping_ = false;
  std::unique_ptr<Poller> poller_;
  std::vector<std::unique_ptr<Listener>> listeners_;
  std::unique_ptr<Timer> tick_;
  std::chrono::steady_clock::time_point next_trim_;
  std::thread thread_;
  std::atomic<std::chrono::steady_clock::rep> last_pong_;
};

}  // namespace drainproxy::proxy
