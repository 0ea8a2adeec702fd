#include "checkpoint/safetensors_format.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstring>
#include <set>

#include "base/errors.h"

namespace kdist::checkpoint {
namespace {

const std::vector<std::pair<c10::ScalarType, const char*>>& dtype_codes() {
  static const std::vector<std::pair<c10::ScalarType, const char*>> codes{
      {c10::kFloat, "F32"}, {c10::kDouble, "F64"}, {c10::kHalf, "F16"},  {c10::kBFloat16, "BF16"},
      {c10::kLong, "I64"},  {c10::kInt, "I32"},    {c10::kShort, "I16"}, {c10::kChar, "I8"},
      {c10::kByte, "U8"},   {c10::kBool, "BOOL"}};
  return codes;
}

std::string code_of(c10::ScalarType type) {
  for (const auto& [t, code] : dtype_codes())
    if (t == type) return code;
  kdist::detail::invalid("checkpoint", "dtype ", c10::toString(type), " has no safetensors code");
}

// The bytes of a tensor of the entry's dtype and shape; -1 past 2^62 (no file is that large).
int64_t bytes_of(const SafetensorsEntry& e) {
  int64_t n = static_cast<int64_t>(c10::elementSize(e.dtype));
  for (int64_t s : e.shape)
    if (__builtin_mul_overflow(n, s, &n) || n > (int64_t(1) << 62)) return -1;
  return n;
}

// A list of non-negative integers, strictly: 1.5, -1 or "2" are not.
bool naturals(const nlohmann::json& j, std::vector<int64_t>& out) {
  if (!j.is_array()) return false;
  for (const auto& v : j) {
    if (!v.is_number_unsigned() || v.get<uint64_t>() > uint64_t(INT64_MAX)) return false;
    out.push_back(v.get<int64_t>());
  }
  return true;
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
  if (!known)
    return bad("has dtype '" + code +
               "', which kdist does not read (F32, F64, F16, BF16, I64, I32, I16, I8, U8, BOOL)");
  std::vector<int64_t> offsets;
  if (!naturals(j["shape"], e.shape))
    return bad("has shape " + j["shape"].dump() + ", expected a list of integers >= 0");
  if (!naturals(j["data_offsets"], offsets) || offsets.size() != 2)
    return bad("has data_offsets " + j["data_offsets"].dump() + ", expected two integers >= 0");
  e.begin = offsets[0], e.end = offsets[1];
  const int64_t bytes = bytes_of(e);
  if (bytes < 0) return bad("has shape " + j["shape"].dump() + ", too large for any file");
  if (e.end < e.begin || e.end - e.begin != bytes)
    return bad("has data_offsets [" + std::to_string(e.begin) + ", " + std::to_string(e.end) + "]: " +
               std::to_string(e.end - e.begin) + " bytes, its dtype and shape need " + std::to_string(bytes));
  return e;
}

// The header's JSON, refusing a name given twice (the last would silently win).
nlohmann::json parse_header(const char* begin, const char* end, const std::string& path) {
  std::set<std::string> names;
  std::string repeated;
  auto note_names = [&](int depth, nlohmann::json::parse_event_t event, nlohmann::json& parsed) {
    if (depth == 1 && event == nlohmann::json::parse_event_t::key &&
        !names.insert(parsed.get<std::string>()).second && repeated.empty())
      repeated = parsed.get<std::string>();
    return true;
  };
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(begin, end, note_names);
  } catch (const nlohmann::json::exception& e) {
    kdist::detail::invalid("checkpoint", "safetensors file '", path,
                           "' has a header that is not JSON: ", std::string(e.what()).substr(0, 200));
  }
  if (!repeated.empty())
    kdist::detail::invalid("checkpoint", "safetensors file '", path, "' names tensor '", repeated, "' twice");
  return j;
}

// The data is the tensors' ranges back to back, from its first byte to its last: no range
// overlaps another (a tensor would read another's bytes), none leaves a gap, nothing follows.
void check_layout(std::vector<SafetensorsEntry> entries, int64_t data_size, const std::string& path) {
  std::sort(entries.begin(), entries.end(), [](const SafetensorsEntry& a, const SafetensorsEntry& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  int64_t at = 0;
  std::string before = "the data's start";
  for (const auto& e : entries) {
    if (e.begin != at)
      kdist::detail::invalid(
          "checkpoint", "safetensors file '", path, "': tensor '", e.name, "' has data_offsets [", e.begin,
          ", ", e.end, "], but ", before, " is at ", at,
          e.begin < at ? " (the two overlap)" : " (bytes between them belong to no tensor)",
          ": tensors lie back to back");
    at = e.end;
    before = "the end of tensor '" + e.name + "'";
  }
  if (at != data_size)
    kdist::detail::invalid("checkpoint", "safetensors file '", path, "': its tensors' data ends at byte ", at,
                           " after the header, but ", data_size, " bytes follow the header",
                           at < data_size ? " (junk after the data)" : " (truncated?)");
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
    return bad("has " + std::to_string(file_size) +
               " bytes: a safetensors file starts with an 8-byte header length");
  uint64_t length = 0;
  for (int i = 0; i < 8; ++i) length |= uint64_t(static_cast<unsigned char>(file[i])) << (8 * i);
  if (length > kMaxSafetensorsHeader)
    return bad("declares a header of " + std::to_string(length) +
               " bytes; safetensors readers refuse more than " + std::to_string(kMaxSafetensorsHeader));
  if (length > uint64_t(file_size - 8))
    return bad("declares a header of " + std::to_string(length) + " bytes, but only " +
               std::to_string(file_size - 8) + " follow (truncated, or not safetensors)");
  if (length == 0 || file[8] != '{') return bad("has a header that does not start with '{'");
  const nlohmann::json j = parse_header(file + 8, file + 8 + length, path);
  if (!j.is_object()) return bad("has a header that is not a JSON object");
  SafetensorsHeader header;
  header.data_start = 8 + static_cast<int64_t>(length);
  for (const auto& [name, value] : j.items()) {
    if (name == "__metadata__") {
      if (!value.is_object()) return bad("has a __metadata__ that is not an object");
      for (const auto& [key, text] : value.items())
        if (!text.is_string()) return bad("has __metadata__ '" + key + "' that is not a string");
      continue;
    }
    header.entries.push_back(decode_entry(name, value, path));
  }
  check_layout(header.entries, file_size - header.data_start, path);
  return header;
}

}  // namespace kdist::checkpoint
