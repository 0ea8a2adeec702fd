#pragma once
#include <sstream>
#include <string>
#include <vector>

namespace kdist::detail {

// "(a, b, c)" from any range whose elements stream.
template <typename Range>
std::string tuple_string(const Range& items) {
  std::ostringstream out;
  out << "(";
  bool first = true;
  for (const auto& item : items) {
    out << (first ? "" : ", ") << item;
    first = false;
  }
  out << ")";
  return out.str();
}

inline std::string quoted_list(const std::vector<std::string>& items) {
  std::ostringstream out;
  out << "[";
  for (size_t i = 0; i < items.size(); ++i) out << (i ? ", " : "") << "'" << items[i] << "'";
  out << "]";
  return out.str();
}

}  // namespace kdist::detail
