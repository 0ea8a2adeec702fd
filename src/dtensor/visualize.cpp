// visualize_sharding: a terminal grid of which ranks hold which block of a 1-D or 2-D tensor.
#include <kdist/dtensor.h>

#include <algorithm>
#include <set>
#include <sstream>

#include "base/errors.h"
#include "base/text.h"

namespace kdist {

std::string visualize_sharding(const DTensorSpec& spec) {
  spec.validate();
  const auto ndim = spec.global_shape.size();
  if (ndim < 1 || ndim > 2)
    detail::invalid("dtensor", "visualize_sharding shows 1-D and 2-D tensors, got shape ",
                    detail::tuple_string(spec.global_shape));
  struct Block {
    int64_t r0, r1, c0, c1;
    int rank;
  };
  std::vector<Block> blocks;
  std::set<int64_t> row_cuts{0}, col_cuts{0};
  for (int64_t p = 0; p < spec.mesh->size(); ++p) {
    int rank = spec.mesh->rank_at(p);
    auto coordinate = spec.mesh->coordinate_of(rank);
    auto size = spec.local_shape(coordinate);
    auto offset = spec.local_offset(coordinate);
    Block b = ndim == 2 ? Block{offset[0], offset[0] + size[0], offset[1], offset[1] + size[1], rank}
                        : Block{0, 1, offset[0], offset[0] + size[0], rank};
    if (b.r1 == b.r0 || b.c1 == b.c0) continue;  // an empty trailing piece
    blocks.push_back(b);
    row_cuts.insert({b.r0, b.r1});
    col_cuts.insert({b.c0, b.c1});
  }
  std::vector<int64_t> rows(row_cuts.begin(), row_cuts.end()), cols(col_cuts.begin(), col_cuts.end());
  auto range = [](int64_t a, int64_t b) { return std::to_string(a) + ":" + std::to_string(b); };
  // cells[i][j]: the ranks holding rows [rows[i], rows[i+1]) x cols [cols[j], cols[j+1]).
  std::vector<std::vector<std::string>> cells(rows.size() - 1, std::vector<std::string>(cols.size() - 1));
  size_t width = 3;
  for (size_t i = 0; i + 1 < rows.size(); ++i)
    for (size_t j = 0; j + 1 < cols.size(); ++j) {
      std::string ranks;
      for (const auto& b : blocks)
        if (b.r0 <= rows[i] && rows[i + 1] <= b.r1 && b.c0 <= cols[j] && cols[j + 1] <= b.c1)
          ranks += (ranks.empty() ? "" : ",") + std::to_string(b.rank);
      cells[i][j] = ranks;
      width = std::max({width, ranks.size(), range(cols[j], cols[j + 1]).size()});
    }
  size_t label = 0;
  for (size_t i = 0; i + 1 < rows.size(); ++i) label = std::max(label, range(rows[i], rows[i + 1]).size());
  if (ndim == 1) label = 0;

  std::ostringstream out;
  out << spec.to_string() << " on mesh " << detail::tuple_string(spec.mesh->axis_names()) << " "
      << detail::tuple_string(spec.mesh->shape()) << "\n";
  auto pad = [](const std::string& s, size_t n) { return s + std::string(n - s.size(), ' '); };
  const std::string indent(label + (label ? 1 : 0), ' ');
  std::string rule = indent + "+", header = indent;
  for (size_t j = 0; j + 1 < cols.size(); ++j) {
    rule += std::string(width + 2, '-') + "+";
    header += "  " + pad(range(cols[j], cols[j + 1]), width) + " ";
  }
  header.erase(header.find_last_not_of(' ') + 1);
  out << header << "\n" << rule << "\n";
  for (size_t i = 0; i + 1 < rows.size(); ++i) {
    if (label) out << pad(range(rows[i], rows[i + 1]), label) << " ";
    out << "|";
    for (size_t j = 0; j + 1 < cols.size(); ++j) out << " " << pad(cells[i][j], width) << " |";
    out << "\n" << rule << "\n";
  }
  return out.str();
}

std::string visualize_sharding(const TensorLayout& layout, const std::vector<int64_t>& shape) {
  return visualize_sharding(
      DTensorSpec{layout.device_mesh(), to_placements(layout, static_cast<int64_t>(shape.size())), shape});
}

}  // namespace kdist
