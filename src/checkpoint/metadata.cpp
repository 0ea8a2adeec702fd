#include "checkpoint/metadata.h"

#include <nlohmann/json.hpp>

#include <regex>

#include "base/errors.h"
#include "checkpoint/files.h"

namespace kdist::checkpoint {

// Writing, and the chunk lists processes exchange while saving (their own, trusted): nlohmann's
// conversions. Reading a file goes through the strict readers below instead.
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(Chunk, offsets, sizes, file, byte_offset, byte_length, crc32)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(TensorRecord, dtype, shape, chunks)

namespace {
using nlohmann::json;

const std::vector<std::pair<c10::ScalarType, const char*>>& dtype_names() {
  static const std::vector<std::pair<c10::ScalarType, const char*>> names{
      {c10::kFloat, "float32"},     {c10::kDouble, "float64"}, {c10::kHalf, "float16"},
      {c10::kBFloat16, "bfloat16"}, {c10::kLong, "int64"},     {c10::kInt, "int32"},
      {c10::kShort, "int16"},       {c10::kChar, "int8"},      {c10::kByte, "uint8"},
      {c10::kBool, "bool"}};
  return names;
}

// The metadata's own text, without its checksum, as to_json writes it.
std::string canonical_text(const json& j) { return j.dump(1); }

// A reader of one metadata file: every value is checked for its JSON type, and the error names
// the file and where in it the value is.
class Reader {
 public:
  explicit Reader(const std::string& path) : path_(path) {}

  [[noreturn]] void bad(const std::string& where, const std::string& why) const {
    kdist::detail::invalid("checkpoint", "metadata '", path_, "' is damaged: ", where, " ", why);
  }
  const json& at(const json& j, const std::string& key, const std::string& where) const {
    if (!j.is_object() || !j.contains(key)) bad(where, "has no '" + key + "'");
    return j.at(key);
  }
  int64_t integer(const json& j, const std::string& where) const {
    if (!j.is_number_integer()) bad(where, "is " + j.dump() + ", expected an integer");
    if (j.is_number_unsigned() && j.get<uint64_t>() > uint64_t(INT64_MAX)) bad(where, "is out of range");
    return j.get<int64_t>();
  }
  int64_t natural(const json& j, const std::string& where) const {
    const int64_t v = integer(j, where);
    if (v < 0) bad(where, "is " + std::to_string(v) + ", expected at least 0");
    return v;
  }
  std::vector<int64_t> naturals(const json& j, const std::string& where) const {
    if (!j.is_array()) bad(where, "is " + j.dump().substr(0, 80) + ", expected a list of integers");
    std::vector<int64_t> out;
    for (size_t i = 0; i < j.size(); ++i) out.push_back(natural(j[i], where + "[" + std::to_string(i) + "]"));
    return out;
  }
  std::string text(const json& j, const std::string& where) const {
    if (!j.is_string()) bad(where, "is " + j.dump().substr(0, 80) + ", expected a string");
    return j.get<std::string>();
  }
  Chunk chunk(const json& j, const std::string& where) const {
    Chunk c;
    c.offsets = naturals(at(j, "offsets", where), where + ".offsets");
    c.sizes = naturals(at(j, "sizes", where), where + ".sizes");
    c.file = text(at(j, "file", where), where + ".file");
    c.byte_offset = natural(at(j, "byte_offset", where), where + ".byte_offset");
    c.byte_length = natural(at(j, "byte_length", where), where + ".byte_length");
    const int64_t crc = natural(at(j, "crc32", where), where + ".crc32");
    if (crc > int64_t(UINT32_MAX)) bad(where + ".crc32", "is out of range");
    c.crc32 = static_cast<uint32_t>(crc);
    return c;
  }
  TensorRecord tensor(const json& j, const std::string& where) const {
    TensorRecord t;
    t.dtype = text(at(j, "dtype", where), where + ".dtype");
    t.shape = naturals(at(j, "shape", where), where + ".shape");
    const json& chunks = at(j, "chunks", where);
    if (!chunks.is_array()) bad(where + ".chunks", "is not a list");
    for (size_t i = 0; i < chunks.size(); ++i)
      t.chunks.push_back(chunk(chunks[i], where + ".chunks[" + std::to_string(i) + "]"));
    return t;
  }

 private:
  const std::string& path_;
};

// The product of `sizes` times `element`, or -1 past 2^62 (no tensor is that large).
int64_t checked_bytes(const std::vector<int64_t>& sizes, int64_t element) {
  int64_t n = element;
  for (int64_t s : sizes)
    if (__builtin_mul_overflow(n, s, &n) || n > (int64_t(1) << 62)) return -1;
  return n;
}

bool plain_file_name(const std::string& name) {
  static const std::regex plain("[A-Za-z0-9_.-]+");
  return std::regex_match(name, plain) && name != "." && name != "..";
}

bool overlap(const Chunk& a, const Chunk& b) {
  for (size_t d = 0; d < a.offsets.size(); ++d)
    if (a.offsets[d] >= b.offsets[d] + b.sizes[d] || b.offsets[d] >= a.offsets[d] + a.sizes[d]) return false;
  return true;
}

// A tensor's chunks lie inside it, each holding exactly its block's bytes in a file of the
// checkpoint, and together cover it once: disjoint, their volumes adding up to its own.
void check_chunks(const std::string& name, const TensorRecord& t, const Reader& r) {
  const std::string where = "tensor '" + name + "'";
  const int64_t element = c10::elementSize(dtype_named(t.dtype, "tensor '" + name + "'"));
  const int64_t bytes = checked_bytes(t.shape, element);
  if (bytes < 0) r.bad(where, "has a shape too large for any tensor");
  int64_t volume = 0;
  for (size_t i = 0; i < t.chunks.size(); ++i) {
    const Chunk& c = t.chunks[i];
    const std::string at = where + " chunk " + std::to_string(i);
    if (c.offsets.size() != t.shape.size() || c.sizes.size() != t.shape.size())
      r.bad(at, "has " + std::to_string(c.offsets.size()) + " offsets and " + std::to_string(c.sizes.size()) +
                    " sizes for a tensor of " + std::to_string(t.shape.size()) + " dimensions");
    for (size_t d = 0; d < t.shape.size(); ++d)
      if (c.offsets[d] > t.shape[d] || c.sizes[d] > t.shape[d] - c.offsets[d])
        r.bad(at, "spans [" + std::to_string(c.offsets[d]) + ", " +
                      std::to_string(c.offsets[d] + c.sizes[d]) + ") of dimension " + std::to_string(d) +
                      ", whose size is " + std::to_string(t.shape[d]));
    const int64_t chunk_bytes = checked_bytes(c.sizes, element);
    if (c.byte_length != chunk_bytes)
      r.bad(at, "has byte_length " + std::to_string(c.byte_length) + ", but its block holds " +
                    std::to_string(chunk_bytes) + " bytes of " + t.dtype);
    if (c.byte_offset > (int64_t(1) << 62))
      r.bad(at, "has byte_offset " + std::to_string(c.byte_offset) + ", past any file");
    if (!plain_file_name(c.file))
      r.bad(at,
            "names file '" + c.file + "', which is not a plain file name inside the checkpoint directory");
    for (size_t j = 0; j < i; ++j)
      if (overlap(c, t.chunks[j])) r.bad(at, "overlaps chunk " + std::to_string(j));
    volume += chunk_bytes / element;
  }
  if (volume * element != bytes)
    r.bad(where, "has chunks holding " + std::to_string(volume) + " of its " +
                     std::to_string(bytes / element) + " elements");
}

// The optimizer's state: a kind kdist knows, step counts of saved parameters, each state tensor
// a field of that kind shaped as its parameter.
void check_optimizer(const Metadata& m, const Reader& r) {
  if (m.optimizer_kind.empty()) return;
  static const std::map<std::string, std::set<std::string>> fields{
      {"sgd", {"momentum_buffer"}},
      {"adam", {"exp_avg", "exp_avg_sq", "max_exp_avg_sq"}},
      {"adamw", {"exp_avg", "exp_avg_sq", "max_exp_avg_sq"}}};
  const auto kind = fields.find(m.optimizer_kind);
  if (kind == fields.end())
    r.bad("optimizer.kind", "is '" + m.optimizer_kind + "', expected sgd, adam or adamw");
  for (const auto& [param, step] : m.steps) {
    if (!m.tensors.count(param))
      r.bad("optimizer.steps", "names '" + param + "', which is not a saved tensor");
    if (step < 0)
      r.bad("optimizer.steps['" + param + "']", "is " + std::to_string(step) + ", expected at least 0");
  }
  for (const auto& [name, record] : m.tensors) {
    const auto slash = name.rfind('/');
    if (name.rfind("optimizer/", 0) != 0 || slash < 10) continue;
    const std::string param = name.substr(10, slash - 10), field = name.substr(slash + 1);
    const auto owner = m.tensors.find(param);
    if (owner == m.tensors.end())
      r.bad("tensor '" + name + "'", "is the state of '" + param + "', which is not saved");
    if (!kind->second.count(field))
      r.bad("tensor '" + name + "'", "is not a field of " + m.optimizer_kind + "'s state");
    if (record.shape != owner->second.shape) r.bad("tensor '" + name + "'", "is not shaped as its parameter");
  }
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
  json j{{"format", "kdist-checkpoint"},
         {"version", kFormatVersion},
         {"processes", m.processes},
         {"tensors", m.tensors}};
  if (!m.optimizer_kind.empty()) j["optimizer"] = {{"kind", m.optimizer_kind}, {"steps", m.steps}};
  const std::string text = canonical_text(j);
  j["checksum"] = crc32(text.data(), text.size());
  return j.dump(1);
}

Metadata metadata_from_json(const std::string& text, const std::string& path) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    kdist::detail::invalid("checkpoint", "metadata '", path, "' is damaged: not JSON (", e.what(), ")");
  }
  const Reader r(path);
  if (!j.is_object() || j.value("format", "") != "kdist-checkpoint")
    kdist::detail::invalid("checkpoint", "'", path, "' is not a kdist checkpoint's metadata");
  Metadata m;
  m.version = static_cast<int>(r.integer(r.at(j, "version", "the metadata"), "version"));
  if (m.version != kFormatVersion && m.version != 1)
    kdist::detail::invalid("checkpoint", "'", path, "' has format version ", m.version,
                           "; this kdist reads versions 1 and ", kFormatVersion);
  if (m.version >= 2) {  // version 1 had no checksum of its own
    const int64_t saved = r.natural(r.at(j, "checksum", "the metadata"), "checksum");
    j.erase("checksum");
    const std::string canonical = canonical_text(j);
    if (uint32_t(saved) != crc32(canonical.data(), canonical.size()))
      kdist::detail::failure("checkpoint", "checksum mismatch in metadata '", path,
                             "': the file was altered or damaged");
  }
  m.processes = static_cast<int>(r.natural(r.at(j, "processes", "the metadata"), "processes"));
  if (m.processes < 1) r.bad("processes", "is 0, expected at least 1");
  const json& tensors = r.at(j, "tensors", "the metadata");
  if (!tensors.is_object()) r.bad("tensors", "is not an object");
  for (const auto& [name, value] : tensors.items()) {
    m.tensors[name] = r.tensor(value, "tensor '" + name + "'");
    check_chunks(name, m.tensors[name], r);
  }
  if (j.contains("optimizer")) {
    const json& optimizer = j["optimizer"];
    m.optimizer_kind = r.text(r.at(optimizer, "kind", "optimizer"), "optimizer.kind");
    const json& steps = r.at(optimizer, "steps", "optimizer");
    if (!steps.is_object()) r.bad("optimizer.steps", "is not an object");
    for (const auto& [param, step] : steps.items())
      m.steps[param] = r.integer(step, "optimizer.steps['" + param + "']");
  }
  check_optimizer(m, r);
  return m;
}

std::string chunks_to_json(const std::map<std::string, std::vector<Chunk>>& chunks) {
  return json(chunks).dump();
}

std::map<std::string, std::vector<Chunk>> chunks_from_json(const std::string& text) {
  return json::parse(text).get<std::map<std::string, std::vector<Chunk>>>();
}

}  // namespace kdist::checkpoint
