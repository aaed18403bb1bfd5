#include "config/duration.hpp"

#include <cctype>
#include <cmath>
#include <stdexcept>

namespace drainproxy::config {

Duration parse_duration(std::string_view text) {
  if (text == "0") return Duration::zero();
  std::size_t i = 0;
  std::uint64_t whole = 0;
  bool any_digit = false;
  while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) {
    whole = whole * 10 + static_cast<unsigned>(text[i] - '0');
    if (whole > 1'000'000'000ULL) throw std::invalid_argument("duration is too large");
    any_digit = true;
    ++i;
  }
  double fraction = 0;
  if (i < text.size() && text[i] == '.') {
    ++i;
    double scale = 0.1;
    while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) {
      fraction += scale * (text[i] - '0');
      scale /= 10;
      any_digit = true;
      ++i;
    }
  }
  if (!any_digit) throw std::invalid_argument("expected a number followed by a unit (ms, s, m, h), e.g. 5s");
  const std::string_view unit = text.substr(i);
  double ms_per_unit = 0;
  if (unit == "ms") ms_per_unit = 1;
  else if (unit == "s") ms_per_unit = 1000;
  else if (unit == "m") ms_per_unit = 60'000;
  else if (unit == "h") ms_per_unit = 3'600'000;
  else if (unit.empty()) throw std::invalid_argument("missing unit (ms, s, m or h), e.g. 5s");
  else throw std::invalid_argument("unknown unit '" + std::string(unit) + "' (use ms, s, m or h)");
  const double ms = (static_cast<double>(whole) + fraction) * ms_per_unit;
  if (ms > 1e12) throw std::invalid_argument("duration is too large");
  return Duration(static_cast<Duration::rep>(std::llround(ms)));
}

std::string format_duration(Duration d) {
  const auto ms = d.count();
  if (ms == 0) return "0s";
  if (ms % 3'600'000 == 0) return std::to_string(ms / 3'600'000) + "h";
  if (ms % 60'000 == 0) return std::to_string(ms / 60'000) + "m";
  if (ms % 1000 == 0) return std::to_string(ms / 1000) + "s";
  if (ms < 1000) return std::to_string(ms) + "ms";
  std::string s = std::to_string(ms / 1000) + "." + std::to_string(1000 + ms % 1000).substr(1);
  while (s.back() == '0') s.pop_back();
  return s + "s";
}

double to_seconds(Duration d) { return static_cast<double>(d.count()) / 1000.0; }

}  // namespace drainproxy::config
