// Which layout does each parameter of an MLP get under a Keras-style LayoutMap?
// A 2x2 (batch, model) mesh; fc1 is made column parallel with its Keras name
// (fc1/kernel is (in, out)), fc2 row parallel with its torch name (fc2.weight is (out, in)).
#include <kdist/kdist.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/linear.h>

#include <iomanip>
#include <iostream>
#include <sstream>

struct MlpImpl : torch::nn::Module {
  MlpImpl(int64_t in, int64_t hidden, int64_t out)
      : fc1(register_module("fc1", torch::nn::Linear(in, hidden))),
        fc2(register_module("fc2", torch::nn::Linear(hidden, out))) {}
  torch::Tensor forward(const torch::Tensor& x) { return fc2(torch::relu(fc1(x))); }
  torch::nn::Linear fc1, fc2;
};
TORCH_MODULE(Mlp);

std::string shape_string(c10::IntArrayRef sizes) {
  std::ostringstream out;
  out << "(";
  for (size_t i = 0; i < sizes.size(); ++i) out << (i ? ", " : "") << sizes[i];
  out << ")";
  return out.str();
}

int main() {
  // Four devices of a job this single process only plans for.
  auto mesh = std::make_shared<kdist::DeviceMesh>(
      std::vector<int64_t>{2, 2}, std::vector<std::string>{"batch", "model"},
      std::vector<std::string>{"cpu:0", "cpu:1", "cpu:2", "cpu:3"});
  kdist::LayoutMap layout_map(mesh);
  layout_map.set("fc1/kernel", {std::nullopt, "model"});
  layout_map.set("fc1/bias", {"model"});
  layout_map.set("fc2.weight", {std::nullopt, "model"});
  auto distribution = std::make_shared<kdist::ModelParallel>(layout_map);
  auto guard = distribution->scope();

  Mlp model(1024, 4096, 1024);
  std::cout << distribution->to_string() << "\n\n";
  std::cout << std::left << std::setw(12) << "parameter" << std::setw(12) << "keras name" << std::setw(14)
            << "shape" << std::setw(15) << "layout"
            << "placements\n";
  for (const auto& path : kdist::parameter_paths(*model)) {
    auto sizes = model->named_parameters()[path.torch_name].sizes();
    auto layout = kdist::distribution()->get_parameter_layout(path, sizes.vec());
    std::string axes = layout.to_string().substr(std::string("TensorLayout").size());
    std::cout << std::setw(12) << path.torch_name << std::setw(12) << path.keras_name << std::setw(14)
              << shape_string(sizes) << std::setw(15) << axes
              << kdist::to_string(kdist::to_placements(layout, sizes.size())) << "\n";
  }
  return 0;
}
