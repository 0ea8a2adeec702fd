// Trains an MLP data-parallel on every process of the job: each process reads its own shard
// of a dataset through LibTorch's data loader, and GradientSync averages the gradients while
// backward runs (PyTorch's DDP, in C++).
//
//   kdist launch -n 2 -- ./data_parallel_mlp [epochs]
//
// The task: regress the outputs of a fixed random "teacher" network on 4096 random inputs,
// global batch 64 (64 / N per process). At the end every process checks that all replicas
// hold exactly the same parameters.
#include <kdist/kdist.h>
#include <torch/data/datasets/tensor.h>
#include <torch/data/example.h>
#include <torch/nn/module.h>
#include <torch/optim/sgd.h>

#include <cstdio>
#include <string>

struct MlpImpl : torch::nn::Module {
  MlpImpl(int64_t in, int64_t hidden, int64_t out)
      : fc1(register_module("fc1", kdist::nn::Linear(in, hidden))),
        fc2(register_module("fc2", kdist::nn::Linear(hidden, out))) {}
  at::Tensor forward(const at::Tensor& x) { return fc2(at::relu(fc1(x))); }
  kdist::nn::Linear fc1, fc2;
};
TORCH_MODULE(Mlp);

// inputs (4096, 32) and the teacher's outputs (4096, 8), the same on every process.
struct Regression : torch::data::datasets::Dataset<Regression> {
  Regression() {
    torch::NoGradGuard no_grad;
    at::manual_seed(7);
    Mlp teacher(32, 64, 8);
    inputs = at::randn({4096, 32});
    targets = teacher->forward(inputs);
  }
  torch::data::Example<> get(size_t i) override {
    return {inputs[static_cast<int64_t>(i)], targets[static_cast<int64_t>(i)]};
  }
  torch::optional<size_t> size() const override { return static_cast<size_t>(inputs.size(0)); }
  at::Tensor inputs, targets;
};

int main(int argc, char** argv) {
  const int epochs = argc > 1 ? std::stoi(argv[1]) : 5;
  at::set_num_threads(1);
  kdist::initialize();
  const bool rank0 = kdist::process_id() == 0;

  auto distribution = std::make_shared<kdist::DataParallel>();  // a 1-D "batch" mesh of all processes
  auto scope = distribution->scope();
  at::manual_seed(kdist::process_id());  // different on purpose: replicas start from rank 0's
  Mlp model(32, 256, 8);
  kdist::distribute_module(*model, *distribution);  // replicated: parameters made identical
  kdist::GradientSync sync(*model, *distribution);
  torch::optim::SGD optimizer(model->parameters(), torch::optim::SGDOptions(0.05).momentum(0.9));

  auto data = kdist::distribute_dataset(Regression(), /*global_batch_size=*/64, *distribution, {/*seed=*/1});
  if (rank0)
    std::printf("%d processes, %lld samples per process per step\n", kdist::num_processes(),
                static_cast<long long>(data.batch().batch_size));
  auto batch_group = kdist::comm::axis_group(*distribution->device_mesh(), "batch");
  for (int epoch = 0; epoch < epochs; ++epoch) {
    at::Tensor total = at::zeros({1});
    int64_t steps = 0;
    for (auto& batch : data.epoch(epoch)) {
      std::vector<at::Tensor> xs, ys;
      for (auto& example : batch) xs.push_back(example.data), ys.push_back(example.target);
      optimizer.zero_grad();
      auto loss = at::mse_loss(model->forward(at::stack(xs)), at::stack(ys));
      loss.backward();  // gradients averaged over the replicas by now
      optimizer.step();
      total += loss.detach();
      ++steps;
    }
    kdist::comm::all_reduce(total, kdist::comm::ReduceOp::kAvg, *batch_group);
    if (rank0)
      std::printf("epoch %d  %lld steps  mean loss %.6f\n", epoch, static_cast<long long>(steps),
                  total.item<double>() / static_cast<double>(steps));
  }

  // Every replica must hold the same parameters, bit for bit.
  int status = 0;
  for (const auto& p : model->named_parameters()) {
    auto mine = p.value().detach().clone();
    auto first = mine.clone();
    kdist::comm::broadcast(first, 0, *batch_group);
    if (!at::equal(mine, first)) {
      std::printf("FAILED: rank %d's %s differs from rank 0's\n", kdist::process_id(), p.key().c_str());
      status = 1;
    }
  }
  if (rank0 && status == 0) std::printf("replicas identical: yes\n");
  kdist::shutdown();
  return status;
}
