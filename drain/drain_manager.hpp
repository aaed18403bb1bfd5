#pragma once
#include <atomic>
#include <chrono>
#include <cstddef>

#include "drain/clock.hpp"
#include "drain/drain_decision.hpp"
#include "drain/phase.hpp"

namespace drainproxy::drain {

struct DrainTimings {
  std::chrono::milliseconds propagation_delay{5000};
  std::chrono::milliseconds drain_timeout{20000};
  // After the force-close at the deadline, how long to wait for the closed
  // connections to be reaped before stopping regardless.
  std::chrono::milliseconds force_grace{1000};
};

// What one call to advance() asks the owner to do. At most one transition per call,
// so the owner logs and acts on each phase in order.
struct Step {
  bool changed = false;
  Phase from = Phase::Starting;
  Phase to = Phase::Starting;
  bool force_close = false;  // the drain deadline passed: close what is left
};

// The drain state machine: phases, triggers and deadlines. It does no I/O and owns
// no timers; its owner calls advance() on a timer and acts on the returned Step.
// All mutators run on one thread (the control loop); phase() and draining() may be
// read from any thread.
class DrainManager final : public DrainDecision {
 public:
  using time_point = Clock::time_point;

  DrainManager(DrainTimings timings, const Clock& clock);

  Phase phase() const { return phase_.load(std::memory_order_acquire); }
  bool draining() const override {
    const Phase p = phase();
    return p == Phase::Propagating || p == Phase::Draining;
  }

  // Result of the latest upstream health check. The first success leaves `starting`.
  Step set_upstream_healthy(bool healthy);

  // Starts the drain sequence. Idempotent: a second trigger changes nothing and
  // returns a Step with changed == false.
  Step start_drain(Trigger why);

  // Moves time-driven transitions forward given the number of open proxied connections.
  Step advance(std::size_t active_connections);

  Trigger trigger() const { return trigger_; }
  time_point phase_since() const { return phase_since_; }
  time_point drain_started_at() const { return drain_started_at_; }
  // Seconds from the trigger to now (or to `stopped` once there).
  double drain_seconds() const;
  bool forced() const { return forced_; }
  const DrainTimings& timings() const { return timings_; }

 private:
  Step enter(Phase next);

  DrainTimings timings_;
  const Clock& clock_;
  std::atomic<Phase> phase_{Phase::Starting};
  time_point phase_since_;
  time_point drain_started_at_{};
  time_point stopped_at_{};
  time_point forced_at_{};
  Trigger trigger_ = Trigger::None;
  bool forced_ = false;
};

}  // namespace drainproxy::drain
