#pragma once
// Range checks of command-line values that say what they expected in words a user reads
// ("--steps: expected a whole number from 1 to 9223372036854775807, got '0'"), where CLI11's
// own print the bounds of a double, and that refuse what does not fit the option's type
// instead of letting it wrap or saturate.
#include <CLI/CLI.hpp>

#include <cstdint>
#include <limits>

namespace kdist::tools {

// A whole number in [min, max], written in digits (a leading '-' for negatives).
CLI::Validator whole_number(int64_t min, int64_t max = std::numeric_limits<int64_t>::max());
// A finite number above 0 (positive) or at least 0.
CLI::Validator real_number(bool positive);

}  // namespace kdist::tools
