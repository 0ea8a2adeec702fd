// Writes kdist's DTensor results for the cases that tests/dtensor/crosscheck.py then computes
// with PyTorch's own DTensor (same wheel, same ranks) and compares bit for bit.
//
//   kdist launch -n 4 -- kdist_dtensor_crosscheck OUTDIR
//
// Per case and rank: <case>.<rank>.{src,dst,full}.bin (float32) with .shape beside each;
// rank 0 writes OUTDIR/cases.txt: "<case> <mesh dims> <global shape> <src> <dst> <partial>".
#include <ATen/ATen.h>
#include <kdist/dtensor.h>
#include <kdist/runtime.h>

#include <fstream>
#include <iostream>
#include <sstream>

namespace {
using namespace kdist;

std::string join(const std::vector<int64_t>& v) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) s += (i ? "," : "") + std::to_string(v[i]);
  return s;
}

std::string placements_text(const std::vector<Placement>& ps) {
  std::string s;
  for (size_t i = 0; i < ps.size(); ++i) {
    const auto& p = ps[i];
    s += i ? "," : "";
    if (auto* sh = std::get_if<Shard>(&p))
      s += "S" + std::to_string(sh->dim);
    else
      s += std::holds_alternative<Partial>(p) ? "P" : "R";
  }
  return s;
}

void write(const std::string& path, const at::Tensor& t) {
  auto c = t.contiguous().to(at::kFloat);
  std::ofstream(path + ".bin", std::ios::binary).write(static_cast<const char*>(c.data_ptr()), c.numel() * 4);
  std::ofstream(path + ".shape") << join(c.sizes().vec()) << "\n";
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: kdist_dtensor_crosscheck OUTDIR\n";
    return 2;
  }
  const std::string out = argv[1];
  kdist::initialize();
  const int n = num_processes(), r = process_id();
  std::ostringstream cases;
  int id = 0;
  auto run = [&](std::vector<int64_t> mesh_shape, std::vector<int64_t> shape, std::vector<Placement> src,
                 std::vector<Placement> dst, bool partial) {
    std::vector<std::string> names;
    for (size_t i = 0; i < mesh_shape.size(); ++i) names.push_back("m" + std::to_string(i));
    auto mesh = std::make_shared<DeviceMesh>(mesh_shape, names);
    int64_t numel = 1;
    for (auto s : shape) numel *= s;
    auto full = at::arange(numel, at::kFloat).view(shape);
    // Partial sources: every rank holds its block of (rank + 1) * full (Partial read as
    // Replicate for the blocking); the sum over ranks is the reduction.
    auto partial_source = [&] {
      std::vector<Placement> blocks = src;
      for (auto& p : blocks)
        if (std::holds_alternative<Partial>(p)) p = Replicate{};
      auto local = distribute_tensor(full * (r + 1), mesh, blocks, {/*assume_identical=*/true});
      return DTensor::from_local(local.to_local(), mesh, src, shape);
    };
    DTensor x = partial ? partial_source() : distribute_tensor(full, mesh, src);
    DTensor y = x.redistribute(dst);
    std::string base = out + "/" + std::to_string(id) + "." + std::to_string(r);
    write(base + ".src", x.to_local());
    write(base + ".dst", y.to_local());
    write(base + ".full", y.full_tensor());
    cases << id << " " << join(mesh_shape) << " " << join(shape) << " " << placements_text(src) << " "
          << placements_text(dst) << " " << (partial ? 1 : 0) << "\n";
    ++id;
  };
  const std::vector<std::vector<int64_t>> shapes{{12, 3}, {13, 3}, {3, 14}, {5, 5}, {8, 5}, {1, 3}};
  const std::vector<std::pair<Placement, Placement>> pairs{{Shard{0}, Replicate{}},
                                                           {Shard{1}, Replicate{}},
                                                           {Replicate{}, Shard{0}},
                                                           {Shard{0}, Shard{1}},
                                                           {Shard{1}, Shard{0}}};
  for (const auto& shape : shapes) {
    for (const auto& [src, dst] : pairs) run({n}, shape, {src}, {dst}, false);
    run({n}, shape, {Partial{}}, {Replicate{}}, true);
    run({n}, shape, {Partial{}}, {Shard{0}}, true);
  }
  if (n == 4) {
    const std::vector<std::vector<Placement>> layouts{{Shard{0}, Shard{0}},    {Shard{0}, Shard{1}},
                                                      {Shard{1}, Shard{0}},    {Replicate{}, Shard{1}},
                                                      {Shard{0}, Replicate{}}, {Replicate{}, Replicate{}}};
    for (auto shape : std::vector<std::vector<int64_t>>{{10, 5}, {9, 5}, {3, 5}, {1, 3}, {8, 8}})
      for (const auto& src : layouts)
        for (const auto& dst : layouts)
          if (src != dst) run({2, 2}, shape, src, dst, false);
    run({2, 2}, {9, 6}, {Partial{}, Shard{1}}, {Shard{0}, Shard{1}}, true);
    run({2, 2}, {9, 6}, {Shard{0}, Partial{}}, {Replicate{}, Replicate{}}, true);
  }
  if (r == 0) std::ofstream(out + "/cases.txt") << cases.str();
  kdist::shutdown();
  std::cout << "wrote " << id << " cases\n";
  return 0;
}
