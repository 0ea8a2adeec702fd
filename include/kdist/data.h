#pragma once
// Dataset sharding: each process reads its per-process batches from its data shard (Keras's
// distribute_dataset), on LibTorch's own distributed sampler and data loader.
//
//   auto batches = kdist::distribute_dataset(MyDataset(...), /*global_batch_size=*/64);
//   for (size_t epoch = 0; epoch < epochs; ++epoch)
//     for (auto& batch : batches.epoch(epoch)) { ... }    // batches of 64 / num_data_shards
//
// The shard is the distribution's data_shard_id() of num_data_shards(): processes of the same
// model replica (a 2-D mesh's model group) read the same batches. Every epoch uses every
// sample once, shuffled by (seed, epoch) as torch.utils.data.DistributedSampler does; shards
// are padded with repeated samples to equal length (drop_last = false) or cut (true), so
// every process takes the same number of steps.
//
// Throws std::invalid_argument when the global batch size does not divide by the number of
// data shards.
#include <kdist/distribution.h>
#include <kdist/dtensor.h>
#include <torch/data/dataloader.h>
#include <torch/data/samplers/distributed.h>

#include <memory>

namespace kdist {

struct PerProcessBatch {
  int64_t num_shards;
  int64_t shard_id;
  int64_t batch_size;  // global batch size / num_shards
};
PerProcessBatch per_process_batch(int64_t global_batch_size,
                                  const Distribution& distribution = *kdist::distribution());

struct DistributedDataOptions {
  uint64_t seed = 0;
  bool drop_last = false;
  size_t workers = 0;  // LibTorch data loader worker threads
};

template <typename Dataset>
class DistributedDataset {
 public:
  using Loader = torch::data::StatelessDataLoader<Dataset, torch::data::samplers::DistributedRandomSampler>;

  DistributedDataset(Dataset dataset, int64_t global_batch_size, const Distribution& distribution,
                     DistributedDataOptions options)
      : dataset_(std::move(dataset)), options_(options) {
    auto batch = per_process_batch(global_batch_size, distribution);
    if (!distribution.auto_shard_dataset()) batch.num_shards = 1, batch.shard_id = 0;
    batch_ = batch;
  }

  // One epoch's batches: a range that owns its LibTorch data loader, so that
  // `for (auto& batch : data.epoch(e))` keeps the loader alive for the whole loop.
  class Epoch {
   public:
    explicit Epoch(std::unique_ptr<Loader> loader) : loader_(std::move(loader)) {}
    auto begin() { return loader_->begin(); }
    auto end() { return loader_->end(); }
    Loader& loader() { return *loader_; }

   private:
    std::unique_ptr<Loader> loader_;
  };

  // This process's batches for one epoch.
  Epoch epoch(size_t epoch) const {
    const auto size = dataset_.size();
    if (!size) throw std::invalid_argument("[kdist.data] the dataset has no size()");
    torch::data::samplers::DistributedRandomSampler sampler(*size, static_cast<size_t>(batch_.num_shards),
                                                            static_cast<size_t>(batch_.shard_id),
                                                            /*allow_duplicates=*/!options_.drop_last);
    // LibTorch's sampler shuffles by its epoch alone: fold the seed into it.
    sampler.set_epoch(options_.seed * 1000003u + epoch);
    return Epoch(
        std::make_unique<Loader>(dataset_, std::move(sampler),
                                 torch::data::DataLoaderOptions(static_cast<size_t>(batch_.batch_size))
                                     .workers(options_.workers)
                                     .drop_last(options_.drop_last)));
  }

  const PerProcessBatch& batch() const { return batch_; }

 private:
  Dataset dataset_;
  DistributedDataOptions options_;
  PerProcessBatch batch_{1, 0, 1};
};

template <typename Dataset>
DistributedDataset<Dataset> distribute_dataset(Dataset dataset, int64_t global_batch_size,
                                               const Distribution& distribution = *kdist::distribution(),
                                               DistributedDataOptions options = {}) {
  return DistributedDataset<Dataset>(std::move(dataset), global_batch_size, distribution, options);
}

// This process's batch as a DTensor: its batch dimension sharded over the batch axis
// (Keras's distribute_data_input), replicated over the others.
DTensor distribute_data_input(const at::Tensor& per_process_batch,
                              const Distribution& distribution = *kdist::distribution());

}  // namespace kdist
