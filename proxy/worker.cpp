#include "proxy/worker.hpp"

#include <spdlog/spdlog.h>

#include <malloc.h>

#include <future>

namespace drainproxy::proxy {

namespace {
constexpr auto kTrimInterval = std::chrono::seconds(1);
constexpr std::size_t kTrimThreshold = 256 * 1024;
}  // namespace

Worker::Worker(unsigned id, const drain::DrainDecision& drain, bool batching)
    : id_(id),
      drain_(drain),
      batching_(batching),
      poller_(std::make_unique<Poller>()),
      last_pong_(std::chrono::steady_clock::now().time_since_epoch().count()) {}

Worker::~Worker() {
  if (thread_.joinable()) {
    poller_->abort();
    thread_.join();
  }
  // Sockets and timers go before the poller that watches them; the listeners
  // outlive it, for anything that still unlinks from them.
  for (auto& l : listeners_) l->release_sockets();
  tick_.reset();
  poller_.reset();
  listeners_.clear();
}

void Worker::start() {
  poller_->post([this] {
    std::string why;
    if (batching_ && !poller_->enable_batching(why))
      spdlog::get("proxy")->warn("worker {}: batched I/O unavailable, using plain syscalls: {}", id_, why);
    for (auto& l : listeners_) l->start();
  });
  tick_ = std::make_unique<Timer>(*poller_);
  next_trim_ = std::chrono::steady_clock::now() + kTrimInterval;
  arm_tick();
  thread_ = std::thread([this] {
    try {
      poller_->run();
    } catch (const std::exception& e) {
      spdlog::get("proxy")->critical("worker {} stopped by an exception: {}", id_, e.what());
      std::terminate();
    }
  });
}

void Worker::arm_tick() {
  tick_->expires_after(drain_.draining() ? Listener::kDrainTick : Listener::kDrainTick * 10);
  tick_->async_wait([this](const error_code& ec) {
    if (ec || stopping_) return;
    housekeeping();
    arm_tick();
  });
}

void Worker::housekeeping() {
  const auto now = std::chrono::steady_clock::now();
  for (auto& l : listeners_) l->housekeeping(now);
  if (now >= next_trim_) {
    next_trim_ = now + kTrimInterval;
    std::size_t released = frame_trim();
    for (auto& l : listeners_) released += l->trim_pools();
    // free() keeps the pages; after a burst, give them back to the system.
    if (released >= kTrimThreshold) ::malloc_trim(0);
  }
}

std::future<void> Worker::post_stop_accepting() {
  auto closed = std::make_shared<std::promise<void>>();
  auto result = closed->get_future();
  poller_->post([this, closed] {
    for (auto& l : listeners_) l->stop_accepting();
    closed->set_value();
  });
  return result;
}

void Worker::post_force_close() {
  poller_->post([this] {
    for (auto& l : listeners_) l->force_close_all();
  });
}

void Worker::post_ping() {
  poller_->post([this] { last_pong_.store(std::chrono::steady_clock::now().time_since_epoch().count()); });
}

void Worker::shutdown(std::chrono::milliseconds max_wait) {
  if (!thread_.joinable()) return;
  poller_->post([this] {
    stopping_ = true;
    if (tick_) tick_->cancel();
    for (auto& l : listeners_) {
      l->close_acceptor();
      l->force_close_all();
      l->upstreams().clear();
    }
    // The closes above complete their pending operations from the poller's queue;
    // the loop ends once those have run.
    poller_->stop();
  });
  // Normally the loop runs out of work at once; a stuck handler must not hang the exit.
  auto done = std::async(std::launch::async, [this] { thread_.join(); });
  if (done.wait_for(max_wait) != std::future_status::ready) {
    spdlog::get("proxy")->warn("worker {} did not finish in {} ms; stopping it", id_, max_wait.count());
    poller_->abort();
    done.wait();
  }
}

}  // namespace drainproxy::proxy
