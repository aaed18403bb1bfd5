#pragma once
#include <array>
#include <cstdint>

namespace drainproxy::drain {

enum class Phase : std::uint8_t { Starting, Serving, Propagating, Draining, Stopped };
inline constexpr std::array kAllPhases{Phase::Starting, Phase::Serving, Phase::Propagating, Phase::Draining,
                                       Phase::Stopped};

enum class Trigger : std::uint8_t { None, Sigterm, Sigint, Admin };

const char* to_string(Phase p);
const char* to_string(Trigger t);

}  // namespace drainproxy::drain
