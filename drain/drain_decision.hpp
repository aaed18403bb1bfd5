#pragma once

namespace drainproxy::drain {

// What the proxy may know about draining. Implementations answer from atomics:
// it is read on the data path of every worker.
class DrainDecision {
 public:
  virtual ~DrainDecision() = default;
  // True from the drain trigger on (propagating and draining): responses should
  // close their connection, idle keep-alive connections should be retired.
  virtual bool draining() const = 0;
};

}  // namespace drainproxy::drain
