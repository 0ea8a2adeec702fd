#pragma once
// comm's ReduceOp as c10d's, for the transports on c10d's process groups (Gloo, NCCL).
#include <kdist/comm.h>
#include <torch/csrc/distributed/c10d/Types.hpp>

namespace kdist::comm::detail {

inline c10d::ReduceOp to_c10d(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum:
      return c10d::ReduceOp::SUM;
    case ReduceOp::kAvg:
      return c10d::ReduceOp::AVG;
    case ReduceOp::kMax:
      return c10d::ReduceOp::MAX;
  }
  return c10d::ReduceOp::SUM;
}

}  // namespace kdist::comm::detail
