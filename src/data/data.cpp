#include <kdist/data.h>
#include <kdist/runtime.h>

#include "base/errors.h"

namespace kdist {

PerProcessBatch per_process_batch(int64_t global_batch_size, const Distribution& distribution) {
  const int64_t shards = distribution.num_data_shards();
  if (global_batch_size <= 0 || global_batch_size % shards != 0)
    detail::invalid("data", "global batch size ", global_batch_size, " does not divide by the ", shards,
                    " data shards of ", distribution.to_string(), "; use a multiple of ", shards);
  return {shards, distribution.data_shard_id(), global_batch_size / shards};
}

DTensor distribute_data_input(const at::Tensor& per_process_batch, const Distribution& distribution) {
  auto layout = distribution.get_data_layout(per_process_batch.sizes().vec());
  return DTensor::from_local(per_process_batch, distribution.device_mesh(),
                             to_placements(layout, per_process_batch.dim()));
}

}  // namespace kdist
