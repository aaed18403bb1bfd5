#pragma once
#include <array>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>

#include "proxy/asio.hpp"
#include "proxy/poller.hpp"
#include "proxy/session.hpp"
#include "proxy/stats.hpp"
#include "proxy/task.hpp"

namespace drainproxy::proxy {

class Listener;

// A byte-stream tunnel: client <-> upstream, one pump per direction, half-close
// passed through, an idle watchdog. Lives on one worker thread and borrows relay
// buffers only while bytes move, so an idle connection costs a few hundred bytes.
class TcpSession final : public Session, public std::enable_shared_from_this<TcpSession> {
 public:
  TcpSession(Socket client, Listener& listener);
  static void start(std::shared_ptr<TcpSession> self);
  void force_close() override;

 private:
  enum class Side : std::uint8_t { Client, Upstream };

  static Task<void> connect(std::shared_ptr<TcpSession> self);
  static Task<void> pump(std::shared_ptr<TcpSession> self, Side from);
  static void arm_watchdog(std::shared_ptr<TcpSession> self);
  static void spawn_task(std::shared_ptr<TcpSession> self, Task<void> task);

  // Records why the connection ends (the first reason wins) and closes both sides.
  void end(CloseReason why, bool abortive);
  void task_done();
  void touch() { last_activity_ = LoopClock::now(); }

  Socket client_;
  Socket upstream_;
  Timer timer_;  // connect timeout, then the idle watchdog
  Listener& listener_;
  std::chrono::steady_clock::time_point last_activity_;
  std::optional<CloseReason> reason_;
  int tasks_ = 0;       // coroutines and the watchdog still running
  int open_pumps_ = 0;  // directions not yet finished
  bool closed_ = false;
  bool connect_timed_out_ = false;
};

}  // namespace drainproxy::proxy
