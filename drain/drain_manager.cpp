#include "drain/drain_manager.hpp"

namespace drainproxy::drain {

DrainManager::DrainManager(DrainTimings timings, const Clock& clock)
    : timings_(timings), clock_(clock), phase_since_(clock.now()) {}

Step DrainManager::enter(Phase next) {
  Step s;
  s.changed = true;
  s.from = phase();
  s.to = next;
  phase_since_ = clock_.now();
  if (next == Phase::Stopped) stopped_at_ = phase_since_;
  phase_.store(next, std::memory_order_release);
  return s;
}

Step DrainManager::set_upstream_healthy(bool healthy) {
  if (healthy && phase() == Phase::Starting) return enter(Phase::Serving);
  return {};
}

Step DrainManager::start_drain(Trigger why) {
  const Phase p = phase();
  if (p != Phase::Starting && p != Phase::Serving) return {};
  trigger_ = why;
  drain_started_at_ = clock_.now();
  return enter(Phase::Propagating);
}

Step DrainManager::advance(std::size_t active_connections) {
  const auto now = clock_.now();
  switch (phase()) {
    case Phase::Starting:
    case Phase::Serving:
    case Phase::Stopped:
      return {};
    case Phase::Propagating:
      if (now - drain_started_at_ >= timings_.propagation_delay) return enter(Phase::Draining);
      return {};
    case Phase::Draining: {
      if (active_connections == 0) return enter(Phase::Stopped);
      if (!forced_ && now - phase_since_ >= timings_.drain_timeout) {
        forced_ = true;
        forced_at_ = now;
        Step s;
        s.from = s.to = Phase::Draining;
        s.force_close = true;
        return s;
      }
      // A force-closed connection that is never reaped must not keep the pod alive.
      if (forced_ && now - forced_at_ >= timings_.force_grace) return enter(Phase::Stopped);
      return {};
    }
  }
  return {};
}

double DrainManager::drain_seconds() const {
  if (trigger_ == Trigger::None) return 0;
  const auto end = phase() == Phase::Stopped ? stopped_at_ : clock_.now();
  return std::chrono::duration<double>(end - drain_started_at_).count();
}

}  // namespace drainproxy::drain
