#pragma once
#include <chrono>
#include <string>
#include <string_view>

namespace drainproxy::config {

using Duration = std::chrono::milliseconds;

// Parses "250ms", "5s", "1.5s", "1m", "2h" or "0". A bare number is rejected:
// "5" could mean seconds or milliseconds, and guessing wrong breaks a drain budget.
// Throws std::invalid_argument with a human-readable reason.
Duration parse_duration(std::string_view text);

// The shortest exact rendering: 1500ms -> "1.5s", 60000ms -> "1m".
std::string format_duration(Duration d);

double to_seconds(Duration d);

}  // namespace drainproxy::config
