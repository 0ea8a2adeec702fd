#pragma once
// The KERAS_DISTRIBUTION_DEBUG=1 trace: lines "DEBUG | [Rank r/N] <event>" on stderr.
#include <string>

namespace kdist::detail {

bool debug_enabled();  // reads the variable on every call, so tests can toggle it
void debug_log(const std::string& event);

}  // namespace kdist::detail
