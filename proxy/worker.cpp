#include "proxy/worker.hpp"
#include "proxy/task_error.hpp"

#include <spdlog/spdlog.h>

#include <malloc.h>

#include <future>

namespace drainproxy::proxy {

namespace {
constexpr auto kTrimInterval = std::chrono::seconds(1);
constexpr std::size_t kTrimThreshold = 256 * 1024;
}  // namespace

Worker::Worker(unsigned id, const drain::DrainDecision& drain)
    : id_(id),
      drain_(drain),
      ioc_(std::make_unique<asio::io_context>(1)),
      poller_(std::make_unique<Poller>(*ioc_)),
      last_pong_(std::chrono::steady_clock::now().time_since_epoch().count()) {}

Worker::~Worker() {
  if (thread_.joinable()) {
    ioc_->stop();
    thread_.join();
  }
  // Sockets go before the poller that watches them, and the poller before its
  // io_context; the listeners outlive both, for anything that still unlinks from them.
  for (auto& l : listeners_) l->release_sockets();
  tick_.reset();
  poller_.reset();
  ioc_.reset();
  listeners_.clear();
}

void Worker::start() {
  guard_.emplace(ioc_->get_executor());
  poller_->start();
  asio::post(*ioc_, [this] {
    for (auto& l : listeners_) l->start();
  });
  tick_ = std::make_unique<asio::steady_timer>(*ioc_);
  asio::co_spawn(*ioc_, housekeeping_loop(this),
                 [](std::exception_ptr e) { log_task_exception("proxy", "worker housekeeping", e); });
  thread_ = std::thread([this] {
    try {
      ioc_->run();
    } catch (const std::exception& e) {
      spdlog::get("proxy")->critical("worker {} stopped by an exception: {}", id_, e.what());
      std::terminate();
    }
  });
}

awaitable<void> Worker::housekeeping_loop(Worker* self) {
  auto next_trim = std::chrono::steady_clock::now() + kTrimInterval;
  while (!self->stopping_) {
    const auto now = std::chrono::steady_clock::now();
    for (auto& l : self->listeners_) l->housekeeping(now);
    if (now >= next_trim) {
      next_trim = now + kTrimInterval;
      std::size_t released = frame_trim();
      for (auto& l : self->listeners_) released += l->trim_pools();
      // free() keeps the pages; after a burst, give them back to the system.
      if (released >= kTrimThreshold) ::malloc_trim(0);
    }
    self->tick_->expires_after(self->drain_.draining() ? Listener::kDrainTick : Listener::kDrainTick * 10);
    error_code ec;
    co_await self->tick_->async_wait(asio::redirect_error(use_awaitable, ec));
  }
}

std::future<void> Worker::post_stop_accepting() {
  auto closed = std::make_shared<std::promise<void>>();
  auto result = closed->get_future();
  asio::post(*ioc_, [this, closed] {
    for (auto& l : listeners_) l->stop_accepting();
    closed->set_value();
  });
  return result;
}

void Worker::post_force_close() {
  asio::post(*ioc_, [this] {
    for (auto& l : listeners_) l->force_close_all();
  });
}

void Worker::post_ping() {
  asio::post(*ioc_, [this] { last_pong_.store(std::chrono::steady_clock::now().time_since_epoch().count()); });
}

void Worker::shutdown(std::chrono::milliseconds max_wait) {
  if (!thread_.joinable()) return;
  asio::post(*ioc_, [this] {
    stopping_ = true;
    if (tick_) tick_->cancel();
    for (auto& l : listeners_) {
      l->close_acceptor();
      l->force_close_all();
      l->upstreams().clear();
    }
    // The closes above complete their pending operations from the io_context's queue;
    // with the poller's wait gone the loop ends once those have run.
    poller_->stop();
    guard_.reset();
  });
  // Normally the loop runs out of work at once; a stuck handler must not hang the exit.
  auto done = std::async(std::launch::async, [this] { thread_.join(); });
  if (done.wait_for(max_wait) != std::future_status::ready) {
    spdlog::get("proxy")->warn("worker {} did not finish in {} ms; stopping it", id_, max_wait.count());
    ioc_->stop();
    done.wait();
  }
}

}  // namespace drainproxy::proxy
