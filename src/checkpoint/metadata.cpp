#include "metadata.h"

#include <nlohmann/json.hpp>

#include "../errors.h"

namespace kdist::checkpoint {

NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(Chunk, offsets, sizes, file, byte_offset, byte_length, crc32)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(TensorRecord, dtype, shape, chunks)

namespace {
const std::vector<std::pair<c10::ScalarType, const char*>>& dtype_names() {
  static const std::vector<std::pair<c10::ScalarType, const char*>> names{
      {c10::kFloat, "float32"}, {c10::kDouble, "float64"}, {c10::kHalf, "float16"},
      {c10::kBFloat16, "bfloat16"}, {c10::kLong, "int64"}, {c10::kInt, "int32"},
      {c10::kShort, "int16"}, {c10::kChar, "int8"}, {c10::kByte, "uint8"}, {c10::kBool, "bool"}};
  return names;
}
}  // namespace

std::string dtype_name(c10::ScalarType type) {
  for (const auto& [t, name] : dtype_names())
    if (t == type) return name;
  kdist::detail::invalid("checkpoint", "dtype ", c10::toString(type), " cannot be checkpointed");
}

c10::ScalarType dtype_named(const std::string& name, const std::string& path) {
  for (const auto& [t, n] : dtype_names())
    if (n == name) return t;
  kdist::detail::invalid("checkpoint", "'", path, "' names dtype '", name, "', which kdist does not know");
}

std::string to_json(const Metadata& m) {
  nlohmann::json j{{"format", "kdist-checkpoint"}, {"version", m.version}, {"processes", m.processes},
                   {"tensors", m.tensors}};
  if (!m.optimizer_kind.empty()) j["optimizer"] = {{"kind", m.optimizer_kind}, {"steps", m.steps}};
  return j.dump(1);
}

Metadata metadata_from_json(const std::string& text, const std::string& path) {
  Metadata m;
  try {
    auto j = nlohmann::json::parse(text);
    if (j.value("format", "") != "kdist-checkpoint")
      kdist::detail::invalid("checkpoint", "'", path, "' is not a kdist checkpoint's metadata");
    m.version = j.at("version").get<int>();
    if (m.version != kFormatVersion)
      kdist::detail::invalid("checkpoint", "'", path, "' has format version ", m.version,
                             "; this kdist reads version ", kFormatVersion);
    m.processes = j.at("processes").get<int>();
    m.tensors = j.at("tensors").get<std::map<std::string, TensorRecord>>();
    if (j.contains("optimizer")) {
      m.optimizer_kind = j["optimizer"].at("kind").get<std::string>();
      m.steps = j["optimizer"].at("steps").get<std::map<std::string, int64_t>>();
    }
  } catch (const nlohmann::json::exception& e) {
    kdist::detail::invalid("checkpoint", "metadata '", path, "' is damaged: ", e.what());
  }
  return m;
}

std::string chunks_to_json(const std::map<std::string, std::vector<Chunk>>& chunks) {
  return nlohmann::json(chunks).dump();
}

std::map<std::string, std::vector<Chunk>> chunks_from_json(const std::string& text) {
  return nlohmann::json::parse(text).get<std::map<std::string, std::vector<Chunk>>>();
}

}  // namespace kdist::checkpoint
