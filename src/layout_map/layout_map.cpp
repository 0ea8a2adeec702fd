#include <kdist/layout_map.h>

#include <algorithm>
#include <regex>

#include "base/errors.h"
#include "base/text.h"

namespace kdist {
using detail::invalid;

struct LayoutMap::Entry {
  std::string key;
  std::regex pattern;  // compiled once, at set()
  TensorLayout layout;
};

LayoutMap::LayoutMap(DeviceMeshPtr mesh) : mesh_(std::move(mesh)) {}
LayoutMap::~LayoutMap() = default;
LayoutMap::LayoutMap(LayoutMap&&) noexcept = default;
LayoutMap& LayoutMap::operator=(LayoutMap&&) noexcept = default;
LayoutMap::LayoutMap(const LayoutMap& other) : mesh_(other.mesh_) {
  for (const auto& e : other.entries_) entries_.push_back(std::make_unique<Entry>(*e));
}
LayoutMap& LayoutMap::operator=(const LayoutMap& other) {
  if (this != &other) *this = LayoutMap(other);
  return *this;
}

void LayoutMap::set(const std::string& key, TensorLayout layout) {
  if (contains(key))
    invalid("layout_map", key, " already exist in the LayoutMap with value ", at(key).to_string(),
            ". Please make sure to not use duplicated keys.");
  std::regex pattern;
  try {
    pattern = std::regex(key, std::regex::ECMAScript);
  } catch (const std::regex_error& e) {
    invalid("layout_map", "key '", key, "' is not a valid regular expression: ", e.what());
  }
  if (!layout.device_mesh() && mesh_) layout.set_device_mesh(mesh_);
  entries_.push_back(std::make_unique<Entry>(Entry{key, std::move(pattern), std::move(layout)}));
}

void LayoutMap::set(const std::string& key, std::vector<AxisSpec> axes) {
  set(key, TensorLayout(std::move(axes)));
}

std::vector<std::string> LayoutMap::keys_matching_any(const std::vector<std::string>& names) const {
  std::vector<std::string> matched;
  for (const auto& e : entries_) {
    bool hit = std::any_of(names.begin(), names.end(), [&](const std::string& name) {
      return name == e->key || std::regex_match(name, e->pattern);
    });
    if (hit) matched.push_back(e->key);
  }
  return matched;
}

std::optional<std::string> LayoutMap::matching_key(const std::string& path) const {
  if (contains(path)) return path;
  auto matched = keys_matching_any({path});
  if (matched.size() > 1)
    invalid("layout_map", "Path '", path,
            "' matches multiple layout specification keys: ", detail::quoted_list(matched),
            ". Please make sure each tensor/variable path only matches at most one layout "
            "specification key in the LayoutMap.");
  if (matched.empty()) return std::nullopt;
  return matched.front();
}

std::optional<TensorLayout> LayoutMap::get(const std::string& path) const {
  auto key = matching_key(path);
  if (!key) return std::nullopt;
  return at(*key);
}

const TensorLayout& LayoutMap::at(const std::string& key) const {
  for (const auto& e : entries_)
    if (e->key == key) return e->layout;
  invalid("layout_map", "no key '", key, "' in LayoutMap with keys ", detail::quoted_list(keys()));
}

bool LayoutMap::erase(const std::string& key) {
  auto it = std::find_if(entries_.begin(), entries_.end(), [&](const auto& e) { return e->key == key; });
  if (it == entries_.end()) return false;
  entries_.erase(it);
  return true;
}

size_t LayoutMap::size() const { return entries_.size(); }

bool LayoutMap::contains(const std::string& key) const {
  return std::any_of(entries_.begin(), entries_.end(), [&](const auto& e) { return e->key == key; });
}

std::vector<std::string> LayoutMap::keys() const {
  std::vector<std::string> out;
  for (const auto& e : entries_) out.push_back(e->key);
  return out;
}

}  // namespace kdist
