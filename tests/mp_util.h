#pragma once
// Helpers of the multi-process tests (every rank runs them; see tests/comm/mp_main.cpp).
#include <ATen/ATen.h>
#include <kdist/comm.h>
#include <kdist/runtime.h>

#include "test_util.h"

namespace kdist::testing {

// A 1-D mesh "x" over every process of the job.
inline DeviceMeshPtr line_mesh() {
  return std::make_shared<DeviceMesh>(std::vector<int64_t>{num_processes()}, std::vector<std::string>{"x"});
}

// A 1-D mesh over every process of the job, its axis called `name`.
inline DeviceMeshPtr line_mesh_named(const std::string& name) {
  return std::make_shared<DeviceMesh>(std::vector<int64_t>{num_processes()}, std::vector<std::string>{name});
}

// (batch, model) over 4 processes.
inline DeviceMeshPtr mesh_2x2() {
  return std::make_shared<DeviceMesh>(std::vector<int64_t>{2, 2}, std::vector<std::string>{"batch", "model"});
}

// A global tensor every rank can build alone: 0, 1, 2, ... in the given shape.
inline at::Tensor global_arange(std::vector<int64_t> shape) {
  int64_t n = 1;
  for (auto s : shape) n *= s;
  return at::arange(n, at::kFloat).view(shape);
}

// Piece `index` of `t` split in k along dim by torch.chunk's rule (empty past the end).
using comm::chunk_piece;

}  // namespace kdist::testing
