#pragma once
#include <spdlog/spdlog.h>

#include <exception>

namespace drainproxy {

// For co_spawn completion handlers. Network errors never throw on our paths, so an
// exception escaping a coroutine is a bug: log it loudly with what was running.
inline void log_task_exception(const char* logger, const char* task, std::exception_ptr e) {
  if (!e) return;
  auto log = spdlog::get(logger);
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& ex) {
    if (log) log->error("{} failed: {}", task, ex.what());
  } catch (...) {
    if (log) log->error("{} failed with an unknown exception", task);
  }
}

}  // namespace drainproxy
