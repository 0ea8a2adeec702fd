// GradientSync: bucketed, overlapped gradient averaging over the batch axis.
#include <ATen/ATen.h>
#include <c10/util/accumulate.h>
#include <kdist/comm.h>
#include <kdist/dtensor.h>
#include <kdist/nn.h>
#include <kdist/sync.h>
#include <torch/csrc/autograd/engine.h>
#include <torch/csrc/autograd/graph_task.h>
#include <torch/csrc/autograd/variable.h>

#include <functional>
#include <mutex>

#include "base/errors.h"
#include "job/debug_log.h"
#include "nn/averaging.h"
#include "nn/batch_shard.h"

namespace kdist {

namespace {

struct Slot {
  at::Tensor param;
  int64_t offset;  // in the bucket's buffer
  int64_t numel;
  bool ready = false;
};

// One flat buffer: the gradients of its parameters (pre-scaled by 1/k), then one "had a
// gradient" flag each, so that the sum also says whether any rank produced a gradient.
struct Bucket {
  std::vector<Slot> slots;
  // The slot's memory as a plain tensor sharing the bucket's storage. Not an autograd view:
  // LibTorch's Optimizer::zero_grad calls detach_() on gradients, which views refuse.
  at::Tensor slot_tensor(const Slot& slot) const {
    at::NoGradGuard no_grad;
    return at::empty({0}, buffer.options())
        .set_(buffer.storage(), buffer.storage_offset() + slot.offset, slot.param.sizes(),
              slot.param.strides());
  }
  // The gradients' elements, then one flag per slot.
  int64_t gradient_numel() const { return slots.back().offset + slots.back().numel; }
  int64_t buffer_numel() const { return gradient_numel() + static_cast<int64_t>(slots.size()); }
  at::Tensor buffer;
  int64_t ready = 0;
  comm::PendingCollective pending;
  at::Tensor flags() const { return buffer.narrow(0, gradient_numel(), slots.size()); }
};

// Where each synchronised parameter goes: buckets of consecutive parameters (in the order
// given, roughly the order backward produces them), the first small so that communication
// starts early, each of one dtype. GradientSync and plan_gradient_sync both cut them here.
struct Piece {
  int64_t numel;
  c10::ScalarType dtype;
};
std::vector<std::vector<size_t>> cut_buckets(const std::vector<Piece>& pieces,
                                             const GradientSyncOptions& options) {
  std::vector<std::vector<size_t>> buckets;
  int64_t used = 0;
  for (size_t i = 0; i < pieces.size(); ++i) {
    const int64_t limit = buckets.size() <= 1 ? options.first_bucket_bytes : options.bucket_bytes;
    const int64_t element = c10::elementSize(pieces[i].dtype);
    const bool same_dtype = buckets.empty() || pieces[buckets.back().front()].dtype == pieces[i].dtype;
    if (buckets.empty() || !same_dtype || (used + pieces[i].numel) * element > limit) {
      buckets.emplace_back();
      used = 0;
    }
    buckets.back().push_back(i);
    used += pieces[i].numel;
  }
  return buckets;
}

}  // namespace

struct GradientSync::State {
  comm::GroupPtr group;
  std::vector<Bucket> buckets;
  std::vector<std::pair<size_t, size_t>> where;  // per hooked parameter: bucket, slot
  std::vector<at::Tensor> buffers;               // broadcast from the first replica each step
  std::vector<nn::BatchShardPtr> batch_shards;   // reduce-scattered by their layers and units; no_sync here
  std::vector<std::pair<c10::intrusive_ptr<torch::autograd::Node>, uintptr_t>> hooks;
  std::mutex mutex;
  std::weak_ptr<State> self;  // what the end-of-backward callback holds: it may outlive us
  bool syncing = true;
  bool callback_queued = false;
  int callback_graph_task = -1;  // the backward whose end runs finish()
  size_t next_to_launch = 0;

  void on_gradient(size_t index);
  void launch_ready_in_order();
  void launch(Bucket& bucket);
  void finish();
  void finish_locked();
  void reset_step();
};

// Back to "no gradient seen this step". A backward that threw never runs its end-of-backward
// callback, and a finish() whose collective threw stops halfway: either way the next
// backward must start clean, or it would skip synchronisation without a word.
void GradientSync::State::reset_step() {
  for (auto& bucket : buckets) {
    for (auto& slot : bucket.slots) slot.ready = false;
    bucket.ready = 0;
    bucket.pending = comm::PendingCollective();
  }
  next_to_launch = 0;
  callback_queued = false;
  callback_graph_task = -1;
}

void GradientSync::State::launch(Bucket& bucket) {
  // Slots whose parameter got no gradient count as zero, with their flag at zero.
  auto flags = bucket.flags();
  for (size_t i = 0; i < bucket.slots.size(); ++i) {
    auto& slot = bucket.slots[i];
    if (!slot.ready) bucket.buffer.narrow(0, slot.offset, slot.numel).zero_();
    flags[i].fill_(slot.ready ? 1.0 : 0.0);
  }
  bucket.pending = comm::all_reduce_async(bucket.buffer, comm::ReduceOp::kSum, *group);
}

void GradientSync::State::launch_ready_in_order() {
  // Buckets start in index order on every rank, whatever order their gradients arrive in.
  while (next_to_launch < buckets.size()) {
    auto& bucket = buckets[next_to_launch];
    if (bucket.ready < static_cast<int64_t>(bucket.slots.size())) return;
    launch(bucket);
    ++next_to_launch;
  }
}

void GradientSync::State::on_gradient(size_t index) {
  std::lock_guard<std::mutex> lock(mutex);
  if (!syncing) return;
  const int graph_task = torch::autograd::get_current_graph_task_id();
  if (callback_queued && graph_task != callback_graph_task) reset_step();  // that backward died
  if (!callback_queued) {
    callback_queued = true;
    callback_graph_task = graph_task;
    torch::autograd::Engine::get_default_engine().queue_callback([weak = self] {
      if (auto state = weak.lock()) state->finish();
    });
  }
  auto [b, s] = where[index];
  auto& bucket = buckets[b];
  auto& slot = bucket.slots[s];
  if (slot.ready) return;  // a parameter used twice in one backward: its accumulator fires again
  auto in_bucket = bucket.slot_tensor(slot);
  at::Tensor& grad = slot.param.mutable_grad();
  // The one copy, into the bucket, scaled by 1/k on the way so that the all_reduce is a plain
  // sum (Gloo's AVG would take another pass over the bucket). A gradient that already lives
  // in the bucket (zero_grad without set_to_none) is scaled in place. The scale is a 0-dim
  // tensor: LibTorch's mul_out with a Scalar computes into a fresh temporary and copies it
  // (5.6x slower on 16 MB, page faults included; bench/ddp_bench.cpp showed it).
  const auto scale = at::scalar_tensor(1.0 / group->size(), at::kDouble);
  if (grad.defined() && grad.data_ptr() == in_bucket.data_ptr()) {
    in_bucket.mul_(scale);
  } else {
    at::mul_out(in_bucket, grad, scale);
    grad = in_bucket;
  }
  slot.ready = true;
  ++bucket.ready;
  // On Gloo the sum runs beside backward; on shared memory it runs when finish() waits for it
  // (comm.h, all_reduce_async), so backward never blocks on a peer. It has no core to
  // overlap on there in any case, and measured as fast as summing in the hooks.
  launch_ready_in_order();
}

void GradientSync::State::finish() {
  std::lock_guard<std::mutex> lock(mutex);
  if (!callback_queued) return;
  try {
    finish_locked();
  } catch (...) {
    reset_step();
    throw;
  }
}

void GradientSync::State::finish_locked() {
  while (next_to_launch < buckets.size()) launch(buckets[next_to_launch++]);
  for (auto& bucket : buckets) {
    bucket.pending.wait();
    auto flags = bucket.flags();
    for (size_t i = 0; i < bucket.slots.size(); ++i) {
      auto& slot = bucket.slots[i];
      at::Tensor& grad = slot.param.mutable_grad();
      if (flags[i].item<float>() > 0) {
        auto in_bucket = bucket.slot_tensor(slot);
        if (!(grad.defined() && grad.data_ptr() == in_bucket.data_ptr())) grad = in_bucket;
      } else {
        grad = at::Tensor();  // no rank produced one: as in one process
      }
    }
  }
  if (!buffers.empty()) {
    at::NoGradGuard no_grad;
    for (auto& buffer : buffers) comm::broadcast(buffer, 0, *group);
  }
  reset_step();
}

namespace {
// On each synchronised parameter's gradient accumulator: the gradient is in .grad. An
// AveragingHook, so that distribute_module's check sees that this parameter is averaged.
class SyncHook : public nn::detail::AveragingHook {
 public:
  explicit SyncHook(std::function<void()> on_gradient) : on_gradient_(std::move(on_gradient)) {}
  torch::autograd::variable_list operator()(const torch::autograd::variable_list& outputs,
                                            const torch::autograd::variable_list&) override {
    on_gradient_();
    return outputs;
  }

 private:
  std::function<void()> on_gradient_;
};
}  // namespace

GradientSync::GradientSync(torch::nn::Module& module, const Distribution& distribution,
                           GradientSyncOptions options)
    : state_(std::make_shared<State>()) {
  state_->self = state_;
  const auto& mesh = *distribution.device_mesh();
  const int64_t batch_axis = mesh.axis_index(distribution.batch_dim_name());
  state_->group = comm::axis_group(mesh, batch_axis, options.group);

  // Parameters replicated along the batch axis, in reverse registration order: roughly the
  // order backward produces their gradients.
  std::vector<at::Tensor> params;
  for (const auto& p : module.parameters()) {
    if (!p.requires_grad()) continue;
    if (auto d = as_dtensor(p); d && !std::holds_alternative<Replicate>(d->placements()[batch_axis]))
      continue;  // sharded over the batch axis: each rank owns its piece
    params.push_back(p);
  }
  std::reverse(params.begin(), params.end());

  std::vector<Piece> pieces;
  for (const auto& p : params) {
    if (!p.is_contiguous() || !p.device().is_cpu())
      detail::invalid("sync", "GradientSync needs contiguous CPU parameters");
    pieces.push_back({p.numel(), p.scalar_type()});
  }
  state_->where.resize(params.size());
  for (const auto& members : cut_buckets(pieces, options)) {
    auto& bucket = state_->buckets.emplace_back();
    int64_t used = 0;
    for (size_t i : members) {
      bucket.slots.push_back(Slot{params[i], used, params[i].numel()});
      state_->where[i] = {state_->buckets.size() - 1, bucket.slots.size() - 1};
      used += params[i].numel();
    }
  }
  // Every bucket in one piece of comm's memory, which its transport sums where it lies.
  std::vector<int64_t> bucket_offsets;
  int64_t memory_bytes = 0;
  for (const auto& bucket : state_->buckets) {
    bucket_offsets.push_back(memory_bytes);
    memory_bytes += (bucket.buffer_numel() * bucket.slots.back().param.element_size() + 63) / 64 * 64;
  }
  const auto memory = params.empty() ? at::Tensor() : comm::allocate_buffer(*state_->group, memory_bytes);
  for (size_t b = 0; b < state_->buckets.size(); ++b) {
    auto& bucket = state_->buckets[b];
    const auto& param = bucket.slots.back().param;
    const int64_t bytes = bucket.buffer_numel() * static_cast<int64_t>(param.element_size());
    bucket.buffer = memory.narrow(0, bucket_offsets[b], bytes).view(param.scalar_type());
  }

  if (options.broadcast_buffers && state_->group->size() > 1)
    for (auto& b : module.buffers())
      if (b.defined() && b.numel() > 0) state_->buffers.push_back(b);
  if (options.broadcast_parameters) {
    torch::NoGradGuard no_grad;
    for (auto& p : params) comm::broadcast(p, 0, *state_->group);
    for (auto& b : module.buffers())
      if (b.defined()) comm::broadcast(b, 0, *state_->group);
  }

  for (const auto& m : module.modules())
    for (auto& shard : nn::batch_shards_of(*m)) state_->batch_shards.push_back(std::move(shard));

  for (size_t i = 0; i < params.size(); ++i) {
    auto accumulator = torch::autograd::impl::grad_accumulator(params[i]);
    auto key =
        accumulator->add_post_hook(std::make_unique<SyncHook>([weak = std::weak_ptr<State>(state_), i] {
          if (auto state = weak.lock()) state->on_gradient(i);
        }));
    state_->hooks.emplace_back(accumulator, key);
  }
  detail::debug_log("GradientSync: " + std::to_string(params.size()) + " parameters in " +
                    std::to_string(state_->buckets.size()) + " buckets over " + state_->group->name() + " (" +
                    comm::to_string(comm::transport(*state_->group)) + ")");
}

std::vector<PlannedCollective> plan_gradient_sync(const DistributionSummary& summary,
                                                  const Distribution& distribution, torch::nn::Module& module,
                                                  const GradientSyncOptions& options) {
  const auto& mesh = *distribution.device_mesh();
  const std::string& axis = distribution.batch_dim_name();
  const int64_t batch_axis = mesh.axis_index(axis), size = mesh.shape()[batch_axis];
  if (size == 1) return {};
  std::vector<Piece> pieces;  // as GradientSync's constructor picks them: reverse order
  for (auto it = summary.parameters.rbegin(); it != summary.parameters.rend(); ++it) {
    if (!it->requires_grad || !std::holds_alternative<Replicate>(it->placements[batch_axis])) continue;
    pieces.push_back({c10::multiply_integers(it->local_shape), it->dtype});
  }
  std::vector<PlannedCollective> plan;
  const auto buckets = cut_buckets(pieces, options);
  for (size_t b = 0; b < buckets.size(); ++b) {
    int64_t elements = static_cast<int64_t>(buckets[b].size());  // one flag each
    for (size_t i : buckets[b]) elements += pieces[i].numel;
    plan.push_back({"backward", "all_reduce", axis, size,
                    elements * static_cast<int64_t>(c10::elementSize(pieces[buckets[b].front()].dtype)),
                    "gradients, bucket " + std::to_string(b + 1) + " of " + std::to_string(buckets.size()) +
                        " (averaged)",
                    true});
  }
  if (options.broadcast_buffers && !buckets.empty())
    for (const auto& b : module.named_buffers())
      if (b.value().defined() && b.value().numel() > 0)
        plan.push_back({"backward", "broadcast", axis, size, static_cast<int64_t>(b.value().nbytes()),
                        b.key() + " (buffer, from the first replica)", true});
  return plan;
}

GradientSync::~GradientSync() {
  for (auto& [node, key] : state_->hooks) node->del_post_hook(key);
}

void GradientSync::finish() { state_->finish(); }
int64_t GradientSync::num_buckets() const { return static_cast<int64_t>(state_->buckets.size()); }
std::vector<int64_t> GradientSync::bucket_numels() const {
  std::vector<int64_t> numels;
  for (const auto& bucket : state_->buckets) numels.push_back(bucket.gradient_numel());
  return numels;
}
const comm::Group& GradientSync::group() const { return *state_->group; }
int64_t GradientSync::synchronized_parameters() const { return static_cast<int64_t>(state_->where.size()); }

GradientSync::NoSyncGuard::NoSyncGuard(GradientSync& sync) : sync_(sync) {
  std::lock_guard<std::mutex> lock(sync_.state_->mutex);
  previous_ = sync_.state_->syncing;
  sync_.state_->syncing = false;
  for (auto& shard : sync_.state_->batch_shards) shard->sync = false;
}

GradientSync::NoSyncGuard::~NoSyncGuard() {
  std::lock_guard<std::mutex> lock(sync_.state_->mutex);
  sync_.state_->syncing = previous_;
  for (auto& shard : sync_.state_->batch_shards) shard->sync = previous_;
}

}  // namespace kdist
