#include "drain/phase.hpp"

namespace drainproxy::drain {

const char* to_string(Phase p) {
  switch (p) {
    case Phase::Starting: return "starting";
    case Phase::Serving: return "serving";
    case Phase::Propagating: return "propagating";
    case Phase::Draining: return "draining";
    case Phase::Stopped: return "stopped";
  }
  return "unknown";
}

const char* to_string(Trigger t) {
  switch (t) {
    case Trigger::None: return "none";
    case Trigger::Sigterm: return "SIGTERM";
    case Trigger::Sigint: return "SIGINT";
    case Trigger::Admin: return "admin";
  }
  return "unknown";
}

}  // namespace drainproxy::drain
