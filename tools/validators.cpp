#include "validators.h"

#include <charconv>
#include <cmath>
#include <cstdlib>
#include <string>

namespace kdist::tools {

CLI::Validator whole_number(int64_t min, int64_t max) {
  const std::string expected =
      "expected a whole number from " + std::to_string(min) + " to " + std::to_string(max);
  return CLI::Validator(
      [=](std::string& text) -> std::string {
        int64_t value = 0;
        const char* end = text.data() + text.size();
        const auto [at, error] = std::from_chars(text.data(), end, value);
        if (text.empty() || error != std::errc() || at != end || value < min || value > max)
          return expected + ", got '" + text + "'";
        return {};
      },
      "INT in [" + std::to_string(min) + ", " + std::to_string(max) + "]", "whole number");
}

CLI::Validator real_number(bool positive) {
  const std::string expected = positive ? "expected a number above 0" : "expected a number of at least 0";
  return CLI::Validator(
      [=](std::string& text) -> std::string {
        char* end = nullptr;
        const double value = std::strtod(text.c_str(), &end);
        if (text.empty() || end != text.c_str() + text.size() || !std::isfinite(value) || value < 0 ||
            (positive && value == 0))
          return expected + ", got '" + text + "'";
        return {};
      },
      positive ? "NUMBER > 0" : "NUMBER >= 0", "real number");
}

}  // namespace kdist::tools
