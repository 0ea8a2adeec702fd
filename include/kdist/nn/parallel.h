#pragma once
// How a kdist::nn layer runs across the ranks of one mesh axis: its parallel style, chosen by
// distribute_module from the placement of its weight (kdist/nn/linear.h, kdist/nn/embedding.h
// say what each style computes), and the group it runs over.
#include <kdist/comm.h>

#include <cstdint>
#include <memory>
#include <string>

namespace kdist::nn {

enum class ParallelStyle { kReplicated, kColumn, kRow, kVocab, kEmbeddingDim };
std::string to_string(ParallelStyle style);  // "replicated", "column", "row", "vocab", "embedding-dim"

struct SequenceParallel;  // kdist/nn/sequence_parallel.h
using SequenceParallelPtr = std::shared_ptr<SequenceParallel>;

// How a layer runs across the ranks of one mesh axis; set by distribute_module.
struct TensorParallel {
  ParallelStyle style = ParallelStyle::kReplicated;
  comm::GroupPtr group;          // the mesh-axis group the weight is sharded over
  int64_t full_size = 0;         // the sharded dimension's global size
  int64_t local_offset = 0;      // this rank's first index in it
  bool gather_output = false;    // column / embedding-dim: all_gather the output
  SequenceParallelPtr sequence;  // column and row Linears under sequence parallelism
};

// A parameter sharded over the batch axis (FSDP): the layer gathers it before use and
// reduce-scatters its gradient (src/nn/batch_shard.h has what a BatchShard holds).
struct BatchShard;
using BatchShardPtr = std::shared_ptr<BatchShard>;
// What distribute_module set for a layer's parameters sharded over the batch axis (null:
// replicated over it).
struct BatchSharding {
  BatchShardPtr weight;
  BatchShardPtr bias;
};

}  // namespace kdist::nn
