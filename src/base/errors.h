#pragma once
// Errors carry a tag naming the layer and the values: "[kdist.layout] axis 'modle' ...".
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace kdist::detail {

template <typename... Parts>
std::string cat(Parts&&... parts) {
  std::ostringstream out;
  (out << ... << std::forward<Parts>(parts));
  return out.str();
}

template <typename... Parts>
[[noreturn]] void invalid(const char* tag, Parts&&... parts) {
  throw std::invalid_argument(cat("[kdist.", tag, "] ", std::forward<Parts>(parts)...));
}

template <typename... Parts>
[[noreturn]] void failure(const char* tag, Parts&&... parts) {
  throw std::runtime_error(cat("[kdist.", tag, "] ", std::forward<Parts>(parts)...));
}

}  // namespace kdist::detail
