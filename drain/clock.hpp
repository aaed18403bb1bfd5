#pragma once
#include <chrono>

namespace drainproxy::drain {

// Injected so tests can drive the drain sequence without waiting for it.
class Clock {
 public:
  using time_point = std::chrono::steady_clock::time_point;
  virtual ~Clock() = default;
  virtual time_point now() const = 0;
};

class SteadyClock final : public Clock {
 public:
  time_point now() const override { return std::chrono::steady_clock::now(); }
};

}  // namespace drainproxy::drain
