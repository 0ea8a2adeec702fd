#pragma once
// Tensor-parallel layers and distribute_module: a LayoutMap in Keras style shards a model's
// parameters, and the layers compute in parallel with results equal to the single-process
// model.
//
//   struct MlpImpl : torch::nn::Module {
//     kdist::nn::Linear fc1{nullptr}, fc2{nullptr};   // drop-in for torch::nn::Linear
//     ...
//   };
//   kdist::LayoutMap map(mesh);
//   map.set("fc1/kernel", {std::nullopt, "model"});  // column parallel (Keras (in, out))
//   map.set("fc2/kernel", {"model", std::nullopt});  // row parallel
//   kdist::ModelParallel mp(map);
//   auto summary = kdist::distribute_module(*model, mp);
//   // model->forward(x) now runs fc1 column-parallel and fc2 row-parallel: one all_reduce.
//
// The layers and what each computes in parallel: kdist/nn/linear.h, kdist/nn/embedding.h,
// kdist/nn/batch_norm.h (SyncBatchNorm); stock layers' parameters sharded over the batch axis:
// kdist/nn/fully_shard.h; the model's own calls: kdist/nn/sequence_parallel.h,
// kdist/nn/loss_parallel.h; mixed precision: kdist/nn/mixed_precision.h; the plans:
// kdist/nn/plan.h; distribute_module and plan_module: kdist/nn/distribute_module.h.
//
// Errors (std::invalid_argument, raised before any parameter is changed): a LayoutMap key
// that matches no parameter (KDIST_ALLOW_UNMATCHED=1 makes it a warning), a layout whose rank
// differs from its parameter's, a sharded parameter in a module kdist cannot run in parallel
// (a stock torch::nn::Linear held as a member of a custom module, a Conv, LayerNorm, a
// weight sharded over two mesh axes), a bias sharded against its weight's style, a sharded
// Embedding with padding_idx, max_norm, scale_grad_by_freq or sparse (not applied in parallel),
// a parameter of any other module sharded over the distribution's batch axis outside a
// FullyShard unit (only kdist's layers and units gather such parameters), a stock module's
// parameter in a unit sharded over another axis, a dimension sharded over the batch axis
// and another axis at once; over a batch axis of several processes, an Embedding with max_norm,
// a stock BatchNorm that cannot be swapped for SyncBatchNorm, and parameters that a
// GradientSync built before distribute_module already averages.
//
// Sharding over the batch axis (FSDP / ZeRO-3): a weight dimension mapped to the
// batch axis is stored sharded over the data-parallel ranks and gathered just before the
// layer uses it (kdist/nn/fully_shard.h); sharding over any other axis is tensor parallelism as
// above. So a Keras kernel layout (batch, model) is FSDP over "batch" and column parallel
// over "model", (model, batch) FSDP and row parallel, and on a 1-D mesh ("model",), whose
// batch axis Keras makes "model", every sharded weight is FSDP. keras-hub's Gemma and Llama
// maps, which shard every large weight over both axes, run as they are.
//
// Shards may be empty: the chunk rule gives trailing ranks nothing when a dimension is smaller
// than the axis (Embedding(9, 4) vocab-parallel on 4 ranks: 3, 3, 3, 0 rows). Every style still
// computes the single-process result there.
#include <kdist/dtensor.h>  // as_dtensor of a distributed parameter
#include <kdist/nn/batch_norm.h>
#include <kdist/nn/distribute_module.h>
#include <kdist/nn/embedding.h>
#include <kdist/nn/fully_shard.h>
#include <kdist/nn/linear.h>
#include <kdist/nn/loss_parallel.h>
#include <kdist/nn/mixed_precision.h>
#include <kdist/nn/parallel.h>
#include <kdist/nn/plan.h>
#include <kdist/nn/sequence_parallel.h>
