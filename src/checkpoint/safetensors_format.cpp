#include "safetensors_format.h"

#include <nlohmann/json.hpp>

#include <cstring>

#include "../errors.h"

namespace kdist::checkpoint {
namespace {

const std::vector<std::pair<c10::ScalarType, const char*>>& dtype_codes() {
  static const std::vector<std::pair<c10::ScalarType, const char*>> codes{
      {c10::kFloat, "F32"}, {c10::kDouble, "F64"}, {c10::kHalf, "F16"}, {c10::kBFloat16, "BF16"},
      {c10::kLong, "I64"},  {c10::kInt, "I32"},    {c10::kShort, "I16"}, {c10::kChar, "I8"},
      {c10::kByte, "U8"},   {c10::kBool, "BOOL"}};
  return codes;
}

std::string code_of(c10::ScalarType type) {
  for (const auto& [t, code] : dtype_codes())
    if (t == type) return code;
  kdist::detail::invalid("checkpoint", "dtype ", c10::toString(type), " has no safetensors code");
}

int64_t bytes_of(const SafetensorsEntry& e) {
  int64_t n = static_cast<int64_t>(c10::elementSize(e.dtype));
  for (int64_t s : e.shape) n *= s;
  return n;
}

SafetensorsEntry decode_entry(const std::string& name, const nlohmann::json& j, const std::string& path) {
  auto bad = [&](const std::string& why) -> SafetensorsEntry {
    kdist::detail::invalid("checkpoint", "safetensors file '", path, "': tensor '", name, "' ", why);
  };
  if (!j.is_object() || !j.contains("dtype") || !j.contains("shape") || !j.contains("data_offsets"))
    return bad("is not an object with dtype, shape and data_offsets");
  SafetensorsEntry e;
  e.name = name;
  const std::string code = j["dtype"].is_string() ? j["dtype"].get<std::string>() : std::string("?");
  bool known = false;
  for (const auto& [t, c] : dtype_codes())
    if (code == c) e.dtype = t, known = true;
  if (!known) return bad("has dtype '" + code + "', which kdist does not read (F32, F64, F16, BF16, I64, I32, I16, I8, U8, BOOL)");
  try {
    e.shape = j["shape"].get<std::vector<int64_t>>();
    auto offsets = j["data_offsets"].get<std::vector<int64_t>>();
    if (offsets.size() != 2) return bad("has data_offsets of " + std::to_string(offsets.size()) + " numbers, expected 2");
    e.begin = offsets[0], e.end = offsets[1];
  } catch (const nlohmann::json::exception&) {
    return bad("has a shape or data_offsets that are not lists of integers");
  }
  for (int64_t s : e.shape)
    if (s < 0) return bad("has a negative dimension");
  if (e.begin < 0 || e.end < e.begin || e.end - e.begin != bytes_of(e))
    return bad("has data_offsets [" + std::to_string(e.begin) + ", " + std::to_string(e.end) + "]: " +
               std::to_string(e.end - e.begin) + " bytes, its dtype and shape need " + std::to_string(bytes_of(e)));
  return e;
}

}  // namespace

std::string encode_safetensors_header(std::vector<SafetensorsEntry>& entries) {
  nlohmann::json j = nlohmann::json::object();
  j["__metadata__"] = {{"format", "pt"}};
  int64_t offset = 0;
  for (auto& e : entries) {
    e.begin = offset;
    e.end = offset + bytes_of(e);
    offset = e.end;
    j[e.name] = {{"dtype", code_of(e.dtype)}, {"shape", e.shape}, {"data_offsets", {e.begin, e.end}}};
  }
  std::string text = j.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // the data starts 8-byte aligned
  const uint64_t length = text.size();
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((length >> (8 * i)) & 0xff);
  return out + text;
}

SafetensorsHeader decode_safetensors_header(const char* file, int64_t file_size, const std::string& path) {
  auto bad = [&](const std::string& why) -> SafetensorsHeader {
    kdist::detail::invalid("checkpoint", "safetensors file '", path, "' ", why);
  };
  if (file_size < 8)
    return bad("has " + std::to_string(file_size) + " bytes: a safetensors file starts with an 8-byte header length");
  uint64_t length = 0;
  for (int i = 0; i < 8; ++i) length |= uint64_t(static_cast<unsigned char>(file[i])) << (8 * i);
  if (length > uint64_t(file_size - 8))
    return bad("declares a header of " + std::to_string(length) + " bytes, but only " +
               std::to_string(file_size - 8) + " follow (truncated, or not safetensors)");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(file + 8, file + 8 + length);
  } catch (const nlohmann::json::exception& e) {
    return bad("has a header that is not JSON: " + std::string(e.what()).substr(0, 200));
  }
  if (!j.is_object()) return bad("has a header that is not a JSON object");
  SafetensorsHeader header;
  header.data_start = 8 + static_cast<int64_t>(length);
  const int64_t data_size = file_size - header.data_start;
  for (const auto& [name, value] : j.items()) {
    if (name == "__metadata__") continue;
    auto entry = decode_entry(name, value, path);
    if (entry.end > data_size)
      return bad("holds tensor '" + name + "' up to data byte " + std::to_string(entry.end) + ", but its data has " +
                 std::to_string(data_size) + " bytes (truncated?)");
    header.entries.push_back(std::move(entry));
  }
  return header;
}

}  // namespace kdist::checkpoint
