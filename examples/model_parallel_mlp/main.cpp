// Trains an MLP tensor-parallel on every process of the job, driven by a Keras-style
// LayoutMap, and checks the result against the same training in one process.
//
//   kdist launch -n 4 -- ./model_parallel_mlp [steps]
//
// fc1 is column parallel (its Keras kernel (in, out) sharded on the output features), fc2
// row parallel; each rank holds a quarter of both weights. The task: regress the outputs of
// a fixed random "teacher" network. Rank 0 also trains the plain model alone on the same
// data and reports how far the distributed losses are from it.
#include <kdist/kdist.h>
#include <torch/nn/module.h>
#include <torch/optim/adam.h>

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

std::vector<float> train(Mlp& model, int steps, bool report) {
  torch::optim::Adam optimizer(model->parameters(), torch::optim::AdamOptions(3e-3));
  at::manual_seed(1);
  Mlp teacher(32, 64, 8);  // plain (never distributed): the function to learn
  std::vector<float> losses;
  for (int step = 0; step < steps; ++step) {
    auto x = at::randn({128, 32});
    auto target = teacher->forward(x).detach();
    optimizer.zero_grad();
    auto loss = at::mse_loss(model->forward(x), target);
    loss.backward();
    optimizer.step();
    losses.push_back(loss.item<float>());
    if (report && (step % 25 == 0 || step + 1 == steps))
      std::printf("step %4d  loss %.6f\n", step, losses.back());
  }
  return losses;
}

int main(int argc, char** argv) {
  const int steps = argc > 1 ? std::stoi(argv[1]) : 200;
  at::set_num_threads(1);
  kdist::initialize();
  const bool rank0 = kdist::process_id() == 0;

  // Every process on "model"; the batch axis (size 1) says all of them read the same rows.
  auto mesh = std::make_shared<kdist::DeviceMesh>(std::vector<int64_t>{1, kdist::num_processes()},
                                                  std::vector<std::string>{"batch", "model"});
  kdist::LayoutMap layout_map(mesh);
  layout_map.set("fc1/kernel", {std::nullopt, "model"});
  layout_map.set("fc2/kernel", {"model", std::nullopt});
  auto distribution = std::make_shared<kdist::ModelParallel>(layout_map);
  auto scope = distribution->scope();

  at::manual_seed(0);
  Mlp model(32, 256, 8);
  if (rank0) std::printf("%s\n\n", mesh->to_string().c_str());
  kdist::distribute_module(*model, *distribution, {/*print_summary=*/true});
  if (rank0)  // fc1's weight (out=256, in=32): which rank holds which rows
    std::printf("\n%s\n", kdist::visualize_sharding(*kdist::as_dtensor(model->fc1->weight)).c_str());
  auto losses = train(model, steps, rank0);

  int status = 0;
  if (rank0) {
    at::manual_seed(0);
    Mlp alone(32, 256, 8);  // the same model in this process only: replicated = plain torch
    auto expected = train(alone, steps, false);
    float worst = 0;
    for (size_t i = 0; i < losses.size(); ++i)
      worst = std::max(worst, std::abs(losses[i] - expected[i]) / std::max(1e-6f, std::abs(expected[i])));
    std::printf("\n%d processes: loss %.6f -> %.6f; largest relative difference from one process: %.2e\n",
                kdist::num_processes(), losses.front(), losses.back(), worst);
    if (worst > 1e-4 || !(losses.back() < losses.front())) {
      std::printf("FAILED: the distributed training does not match one process\n");
      status = 1;
    }
  }
  kdist::shutdown();
  return status;
}
