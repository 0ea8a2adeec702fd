// Sharded checkpoints (src/checkpoint/): save a trained tensor-parallel GPT and its Adam state
// on a 2x2 (batch, model) mesh, load it onto other meshes and layouts (4, 2 and 1 processes),
// and compare every full tensor bit for bit; damaged and mismatched checkpoints.
//
// The cases share a directory, $KDIST_TEST_CHECKPOINT_DIR: CheckpointSave2x2 (4 ranks) writes
// the checkpoint and the reference full tensors; CheckpointLoad2 (2 ranks) and
// CheckpointLoad1 (1 process) read them (ctest orders them with a fixture).
#include <kdist/checkpoint.h>
#include <kdist/nn.h>
#include <kdist/sync.h>
#include <torch/optim/adam.h>
#include <torch/optim/adamw.h>
#include <torch/optim/sgd.h>
#include <torch/serialize.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "../mp_util.h"
#include "../nn/models.h"

namespace kdist {
namespace {
namespace fs = std::filesystem;
using testing::TinyGpt;

std::string shared_dir() {
  const char* dir = std::getenv("KDIST_TEST_CHECKPOINT_DIR");
  return dir ? dir : "/tmp/kdist-checkpoint-test";
}

TinyGpt make_gpt(uint64_t seed, bool norms_in_units = false) {
  at::manual_seed(seed);
  return TinyGpt(50, 8, 32, 4, norms_in_units);
}

// The whole tensor whose block `local` is (sharded like `param`), on every rank.
at::Tensor full_tensor(const at::Tensor& local, const at::Tensor& param) {
  auto view = as_dtensor(param);
  if (!view) return local.detach().clone();
  const auto& spec = view->spec();
  return DTensor::from_local(local.detach(), spec.mesh, spec.placements, spec.global_shape).full_tensor();
}

// Every parameter and Adam state tensor, whole, by name; plus the step counts.
std::map<std::string, at::Tensor> full_state(TinyGpt& model, torch::optim::Adam& optimizer) {
  std::map<std::string, at::Tensor> out;
  for (const auto& p : model->named_parameters()) {
    out[p.key()] = full_tensor(p.value(), p.value());
    auto& state =
        static_cast<torch::optim::AdamParamState&>(*optimizer.state().at(p.value().unsafeGetTensorImpl()));
    out["optimizer/" + p.key() + "/exp_avg"] = full_tensor(state.exp_avg(), p.value());
    out["optimizer/" + p.key() + "/exp_avg_sq"] = full_tensor(state.exp_avg_sq(), p.value());
    out["optimizer/" + p.key() + "/step"] = at::full({1}, state.step(), at::kLong);
  }
  return out;
}

void write_reference(const std::map<std::string, at::Tensor>& state, const std::string& path) {
  std::vector<at::Tensor> tensors;
  std::ofstream names(path + ".names");
  for (const auto& [name, tensor] : state) tensors.push_back(tensor), names << name << "\n";
  torch::save(tensors, path);
}

std::map<std::string, at::Tensor> read_reference(const std::string& path) {
  std::vector<at::Tensor> tensors;
  torch::load(tensors, path);
  std::ifstream names(path + ".names");
  std::map<std::string, at::Tensor> out;
  std::string name;
  for (size_t i = 0; std::getline(names, name); ++i) out[name] = tensors.at(i);
  return out;
}

void expect_identical(const std::map<std::string, at::Tensor>& got,
                      const std::map<std::string, at::Tensor>& want) {
  ASSERT_EQ(got.size(), want.size());
  for (const auto& [name, tensor] : want) {
    ASSERT_TRUE(got.count(name)) << name;
    EXPECT_TRUE(at::equal(got.at(name), tensor)) << name << " differs after load";
  }
}

// Train a few Adam steps so that every parameter and moment holds distinctive values.
void train(TinyGpt& model, torch::optim::Adam& optimizer, const Distribution& distribution, int steps) {
  std::unique_ptr<GradientSync> sync;
  if (distribution.num_data_shards() > 1) sync = std::make_unique<GradientSync>(*model, distribution);
  for (int step = 0; step < steps; ++step) {
    at::manual_seed(100 + step);
    auto ids = at::randint(0, 50, {4, 8}, at::kLong);
    auto targets = at::randint(0, 50, {4, 8}, at::kLong);
    const int64_t rows = 4 / distribution.num_data_shards(), first = distribution.data_shard_id() * rows;
    optimizer.zero_grad();
    auto logits = model->forward(ids.narrow(0, first, rows));
    at::cross_entropy_loss(logits.reshape({-1, 50}), targets.narrow(0, first, rows).reshape({-1})).backward();
    optimizer.step();
  }
}

// Loads the shared checkpoint into a fresh model (other initial values) distributed by
// `distribution` (none: plain), and compares every full tensor with the reference.
void load_and_compare(const std::shared_ptr<Distribution>& distribution, const std::string& name = "gpt",
                      bool norms_in_units = false) {
  TinyGpt model = make_gpt(99, norms_in_units);
  if (distribution) distribute_module(*model, *distribution);
  torch::optim::Adam optimizer(model->parameters(), torch::optim::AdamOptions(1e-2));
  load(shared_dir() + "/" + name, *model, &optimizer);
  expect_identical(full_state(model, optimizer), read_reference(shared_dir() + "/" + name + "-reference.pt"));
}

TEST(CheckpointSave2x2, TrainedGptLoadsOntoAnotherLayout) {
  ASSERT_EQ(num_processes(), 4);
  auto mesh = testing::mesh_2x2();
  auto distribution = std::make_shared<ModelParallel>(testing::gpt_tensor_parallel_map(mesh), "batch");
  TinyGpt model = make_gpt(4);
  distribute_module(*model, *distribution);
  torch::optim::Adam optimizer(model->parameters(), torch::optim::AdamOptions(1e-2));
  train(model, optimizer, *distribution, 3);

  if (process_id() == 0) fs::remove_all(shared_dir()), fs::create_directories(shared_dir());
  comm::barrier(*comm::world());
  save(shared_dir() + "/gpt", *model, &optimizer);
  const auto reference = full_state(model, optimizer);
  if (process_id() == 0) write_reference(reference, shared_dir() + "/gpt-reference.pt");
  comm::barrier(*comm::world());

  // Each block once: q is sharded over model and replicated over batch, so ranks 0 and 1
  // (batch coordinate 0) wrote it; the LayerNorm only rank 0.
  const std::string metadata = [] {
    std::ifstream in(shared_dir() + "/gpt/metadata.json");
    return std::string(std::istreambuf_iterator<char>(in), {});
  }();
  EXPECT_NE(metadata.find("\"format\": \"kdist-checkpoint\""), std::string::npos);
  EXPECT_TRUE(fs::exists(shared_dir() + "/gpt/shard-0.bin"));
  EXPECT_TRUE(fs::exists(shared_dir() + "/gpt/shard-1.bin"));
  EXPECT_FALSE(fs::exists(shared_dir() + "/gpt.partial"));
  const auto total_bytes = [] {
    uintmax_t total = 0;
    for (int r = 0; r < 4; ++r)
      if (fs::exists(shared_dir() + "/gpt/shard-" + std::to_string(r) + ".bin"))
        total += fs::file_size(shared_dir() + "/gpt/shard-" + std::to_string(r) + ".bin");
    return total;
  }();
  int64_t state_bytes = 0;  // parameters + two Adam moments, each whole once
  for (const auto& p : model->named_parameters()) state_bytes += 3 * reference.at(p.key()).numel() * 4;
  EXPECT_EQ(static_cast<int64_t>(total_bytes), state_bytes) << "every element written exactly once";

  // The same 4 processes on another mesh: (batch=1, model=4), with uneven shards (the
  // vocabulary of 50 in blocks of 13, 13, 12, 12).
  auto line =
      std::make_shared<DeviceMesh>(std::vector<int64_t>{1, 4}, std::vector<std::string>{"batch", "model"});
  load_and_compare(std::make_shared<ModelParallel>(testing::gpt_tensor_parallel_map(line)));
}

// AsyncSaver: the checkpoint is the state at save(), though training changes the parameters
// and moments in place while the thread writes; polled at every step as `kdist train` does,
// then loaded onto another layout and compared bit for bit. A second save reuses the buffers.
TEST(CheckpointSave2x2, AsyncSaveIsTheStateAtSave) {
  ASSERT_EQ(num_processes(), 4);
  auto mesh = testing::mesh_2x2();
  auto distribution = std::make_shared<ModelParallel>(testing::gpt_tensor_parallel_map(mesh), "batch");
  TinyGpt model = make_gpt(5);
  distribute_module(*model, *distribution);
  torch::optim::Adam optimizer(model->parameters(), torch::optim::AdamOptions(1e-2));
  AsyncSaver saver;
  EXPECT_FALSE(saver.poll().has_value()) << "nothing in flight";
  for (const std::string name : {"async-1", "async-2"}) {
    train(model, optimizer, *distribution, 2);
    const auto reference = full_state(model, optimizer);
    if (process_id() == 0) write_reference(reference, shared_dir() + "/" + name + "-reference.pt");
    saver.save(shared_dir() + "/" + name, *model, &optimizer);
    EXPECT_TRUE(saver.in_flight());
    std::optional<std::string> published;
    for (int step = 0; step < 3 && !published; ++step) {
      train(model, optimizer, *distribution, 1);
      published = saver.poll();
    }
    if (!published) published = saver.wait();
    EXPECT_EQ(published.value_or(""), shared_dir() + "/" + name);
    EXPECT_FALSE(saver.in_flight());
    EXPECT_FALSE(saver.wait().has_value());
    comm::barrier(*comm::world());
    auto line =
        std::make_shared<DeviceMesh>(std::vector<int64_t>{1, 4}, std::vector<std::string>{"batch", "model"});
    load_and_compare(std::make_shared<ModelParallel>(testing::gpt_tensor_parallel_map(line)), name);
  }
}

// keras-hub's 2-D pattern: FSDP over "batch" and tensor parallelism over "model" (every
// parameter and moment stored in quarters), the LayerNorms in FullyShard units sharded over
// "batch". Saved, then loaded onto tensor parallelism only, data parallelism only
// (replicated), both into the model without units, and FSDP only, and by CheckpointLoad1 onto
// one process.
TEST(CheckpointSave2x2, FsdpGptLoadsOntoTpDpAndFsdp) {
  ASSERT_EQ(num_processes(), 4);
  auto mesh = testing::mesh_2x2();
  LayoutMap map = testing::gpt_gemma_map(mesh);
  map.set("ln(1|2|_f)/(gamma|beta)", {"batch"});
  auto distribution = std::make_shared<ModelParallel>(map);
  TinyGpt model = make_gpt(5, /*norms_in_units=*/true);
  distribute_module(*model, *distribution);
  EXPECT_EQ(model->q->weight.sizes().vec(), (std::vector<int64_t>{16, 16})) << "a quarter of (32, 32)";
  EXPECT_EQ(model->named_parameters()["ln1.weight"].sizes().vec(), (std::vector<int64_t>{16}))
      << "half of 32";
  torch::optim::Adam optimizer(model->parameters(), torch::optim::AdamOptions(1e-2));
  train(model, optimizer, *distribution, 3);
  save(shared_dir() + "/fsdp-gpt", *model, &optimizer);
  const auto reference = full_state(model, optimizer);
  if (process_id() == 0) write_reference(reference, shared_dir() + "/fsdp-gpt-reference.pt");
  comm::barrier(*comm::world());

  auto line = [](const std::string& axis) {
    return std::make_shared<DeviceMesh>(std::vector<int64_t>{4}, std::vector<std::string>{axis});
  };
  load_and_compare(
      std::make_shared<ModelParallel>(testing::gpt_tensor_parallel_map(std::make_shared<DeviceMesh>(
          std::vector<int64_t>{1, 4}, std::vector<std::string>{"batch", "model"}))),
      "fsdp-gpt");
  load_and_compare(std::make_shared<DataParallel>(line("batch")), "fsdp-gpt");
  LayoutMap fsdp(line("batch"));
  fsdp.set("(q|k|v|o|up|down|head)/kernel", {"batch", std::nullopt});
  fsdp.set("tok/embeddings", {"batch", std::nullopt});
  fsdp.set("ln(1|2|_f)/gamma", {"batch"});
  load_and_compare(std::make_shared<ModelParallel>(fsdp), "fsdp-gpt", /*norms_in_units=*/true);
}

// The whole parameters of a model (sharded or not) equal the reference's, bit for bit.
void expect_weights_of(TinyGpt& model, const std::string& reference_name) {
  const auto reference = read_reference(shared_dir() + "/" + reference_name + "-reference.pt");
  for (const auto& p : model->named_parameters())
    EXPECT_TRUE(at::equal(full_tensor(p.value(), p.value()), reference.at(p.key()))) << p.key() << " differs";
}

void load_safetensors_and_compare(const std::shared_ptr<Distribution>& distribution,
                                  bool norms_in_units = false) {
  TinyGpt model = make_gpt(98, norms_in_units);
  if (distribution) distribute_module(*model, *distribution);
  load_safetensors(shared_dir() + "/fsdp-gpt.safetensors", *model);
  expect_weights_of(model, "fsdp-gpt");
}

// The 2-D sharded checkpoint exported whole (by one process) loads onto 2x2 FSDP x TP, tensor
// parallelism and data parallelism, each process copying its blocks from the mapped file;
// tests/checkpoint/safetensors_test.py reads the same file in Python.
TEST(CheckpointSave2x2, SafetensorsExportLoadsOntoAnyLayout) {
  ASSERT_EQ(num_processes(), 4);
  if (process_id() == 0)
    export_safetensors(shared_dir() + "/fsdp-gpt", shared_dir() + "/fsdp-gpt.safetensors");
  comm::barrier(*comm::world());
  ASSERT_FALSE(fs::exists(shared_dir() + "/fsdp-gpt.safetensors.partial"));
  LayoutMap gemma = testing::gpt_gemma_map(testing::mesh_2x2());
  gemma.set("ln(1|2|_f)/(gamma|beta)", {"batch"});
  load_safetensors_and_compare(std::make_shared<ModelParallel>(gemma), /*norms_in_units=*/true);
  load_safetensors_and_compare(std::make_shared<ModelParallel>(testing::gpt_tensor_parallel_map(
      std::make_shared<DeviceMesh>(std::vector<int64_t>{1, 4}, std::vector<std::string>{"batch", "model"}))));
  load_safetensors_and_compare(std::make_shared<DataParallel>(
      std::make_shared<DeviceMesh>(std::vector<int64_t>{4}, std::vector<std::string>{"batch"})));
}

TEST(CheckpointLoad2, OntoTwoRanksWithOtherShards) {
  ASSERT_EQ(num_processes(), 2);
  auto mesh =
      std::make_shared<DeviceMesh>(std::vector<int64_t>{1, 2}, std::vector<std::string>{"batch", "model"});
  LayoutMap map(mesh);
  map.set("tok/embeddings", {"model", std::nullopt});  // vocab 50 over 2: 25 rows each
  map.set("up/kernel", {std::nullopt, "model"});
  map.set("down/kernel", {"model", std::nullopt});
  map.set("head/kernel", {std::nullopt, "model"});
  load_and_compare(std::make_shared<ModelParallel>(map, "batch"));
  load_safetensors_and_compare(std::make_shared<ModelParallel>(map, "batch"));
}

TEST(CheckpointLoad1, OntoOneProcess) {
  ASSERT_EQ(num_processes(), 1);
  load_and_compare(nullptr);
  load_and_compare(nullptr, "fsdp-gpt");
  load_safetensors_and_compare(nullptr);
}

// Expects `action` to throw E whose message contains every fragment.
template <typename E, typename F>
void expect_error(F action, const std::vector<std::string>& fragments) {
  try {
    action();
    ADD_FAILURE() << "nothing was thrown";
  } catch (const E& e) {
    for (const auto& fragment : fragments)
      EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos)
          << "message: " << e.what() << "\nexpected to contain: " << fragment;
  }
}

// A copy of the shared checkpoint to damage.
std::string damaged_copy(const std::string& name) {
  const std::string copy = shared_dir() + "/" + name;
  fs::remove_all(copy);
  fs::copy(shared_dir() + "/gpt", copy);
  return copy;
}

TEST(CheckpointLoad1, FlippedByteIsNamed) {
  const std::string copy = damaged_copy("flipped");
  {
    std::fstream file(copy + "/shard-1.bin", std::ios::in | std::ios::out | std::ios::binary);
    file.seekg(100);
    char byte = 0;
    file.read(&byte, 1);
    byte ^= 0x10;
    file.seekp(100);
    file.write(&byte, 1);
  }
  TinyGpt model = make_gpt(99);
  expect_error<std::runtime_error>([&] { load(copy, *model); },
                                   {"[kdist.checkpoint] checksum mismatch in tensor '", "shard-1.bin"});
}

TEST(CheckpointLoad1, TruncatedFileIsNamed) {
  const std::string copy = damaged_copy("truncated");
  fs::resize_file(copy + "/shard-0.bin", fs::file_size(copy + "/shard-0.bin") / 2);
  TinyGpt model = make_gpt(99);
  torch::optim::Adam optimizer(model->parameters());
  expect_error<std::runtime_error>([&] { load(copy, *model, &optimizer); },
                                   {"shard-0.bin' is truncated: tensor '", "but the file has"});
}

TEST(CheckpointLoad1, DifferentModelListsTheDifferences) {
  at::manual_seed(0);
  TinyGpt wider(50, 8, 64, 4);  // every width-dependent shape differs
  expect_error<std::invalid_argument>(
      [&] { load(shared_dir() + "/gpt", *wider); },
      {"[kdist.checkpoint] checkpoint '", "does not match the module; different shape or dtype: ",
       "'q.weight (32, 32) float32 in the checkpoint, (64, 64) float32 here'"});

  struct Extra : torch::nn::Module {  // the gpt as a child, plus a layer the checkpoint lacks
    Extra()
        : gpt(register_module("gpt", TinyGpt(50, 8, 32, 4))),
          probe(register_module("probe", nn::Linear(2, 2))) {}
    TinyGpt gpt;
    nn::Linear probe;
  } extra;
  expect_error<std::invalid_argument>(
      [&] { load(shared_dir() + "/gpt", extra); },
      {"missing from the checkpoint: ['gpt.tok.weight'", "'probe.weight'", "not in the module: ['down.bias'",
       "allow_missing / allow_unexpected"});

  TinyGpt model = make_gpt(99);
  nn::Linear probe(2, 2);
  model->register_module("probe", probe);
  const auto before = probe->weight.clone();
  load(shared_dir() + "/gpt", *model, nullptr, {/*allow_missing=*/true});
  EXPECT_TRUE(at::equal(probe->weight, before)) << "a missing tensor keeps its value";
  EXPECT_TRUE(at::equal(model->q->weight, read_reference(shared_dir() + "/gpt-reference.pt").at("q.weight")));
}

TEST(CheckpointLoad1, OptimizerKindMustMatch) {
  TinyGpt model = make_gpt(99);
  torch::optim::SGD sgd(model->parameters(), torch::optim::SGDOptions(0.1).momentum(0.9));
  expect_error<std::invalid_argument>([&] { load(shared_dir() + "/gpt", *model, &sgd); },
                                      {"holds adam state, the optimizer is sgd"});
}

}  // namespace
}  // namespace kdist

namespace kdist {
namespace {

// SGD's momentum and AdamW's moments survive a save and load in one process: training on
// from the loaded state gives exactly the parameters of training on without stopping.
template <typename Optimizer, typename Options>
void expect_resume_identical(const std::string& name, Options options) {
  auto step = [](TinyGpt& model, torch::optim::Optimizer& optimizer, int i) {
    at::manual_seed(200 + i);
    auto ids = at::randint(0, 50, {2, 8}, at::kLong);
    optimizer.zero_grad();
    at::cross_entropy_loss(model->forward(ids).reshape({-1, 50}), ids.reshape({-1})).backward();
    optimizer.step();
  };
  TinyGpt straight = make_gpt(5), stopped = make_gpt(5), resumed = make_gpt(77);
  Optimizer straight_opt(straight->parameters(), options), stopped_opt(stopped->parameters(), options),
      resumed_opt(resumed->parameters(), options);
  for (int i = 0; i < 3; ++i) step(straight, straight_opt, i);
  for (int i = 0; i < 2; ++i) step(stopped, stopped_opt, i);
  save(shared_dir() + "/" + name, *stopped, &stopped_opt);
  load(shared_dir() + "/" + name, *resumed, &resumed_opt);
  step(resumed, resumed_opt, 2);
  for (const auto& p : straight->named_parameters())
    EXPECT_TRUE(at::equal(resumed->named_parameters()[p.key()], p.value())) << name << " " << p.key();
}

TEST(CheckpointLoad1, SgdMomentumAndAdamWStateResumeExactly) {
  expect_resume_identical<torch::optim::SGD>("sgd", torch::optim::SGDOptions(0.1).momentum(0.9));
  expect_resume_identical<torch::optim::AdamW>("adamw", torch::optim::AdamWOptions(1e-2));
  expect_resume_identical<torch::optim::Adam>("amsgrad", torch::optim::AdamOptions(1e-2).amsgrad(true));
}

}  // namespace
}  // namespace kdist

// ---- used by tests/checkpoint/fault_test.sh, which kills ranks in the middle of a save ----

namespace kdist {
namespace {

std::shared_ptr<Distribution> fault_distribution() {  // gpt tensor parallel over 2 ranks
  auto mesh =
      std::make_shared<DeviceMesh>(std::vector<int64_t>{1, 2}, std::vector<std::string>{"batch", "model"});
  return std::make_shared<ModelParallel>(testing::gpt_tensor_parallel_map(mesh), "batch");
}

uint64_t seed_from_env() {
  const char* seed = std::getenv("KDIST_TEST_SEED");
  return seed ? std::stoull(seed) : 1;
}

// A safetensors file written here byte by byte, independently of kdist's encoder:
// {name: (dtype code, shape, data_offsets)} and the data.
void write_safetensors(const std::string& path, const std::string& header, const std::vector<float>& data,
                       int64_t cut_at = -1) {
  std::string bytes(8, '\0');
  for (int i = 0; i < 8; ++i) bytes[i] = static_cast<char>((header.size() >> (8 * i)) & 0xff);
  bytes += header;
  bytes.append(reinterpret_cast<const char*>(data.data()), data.size() * sizeof(float));
  if (cut_at >= 0) bytes.resize(cut_at);
  std::ofstream(path, std::ios::binary) << bytes;
}

TEST(CheckpointLoad1, SafetensorsWrittenByHandLoads) {
  const std::string path = shared_dir() + "/hand.safetensors";
  write_safetensors(path,
                    R"({"bias":{"dtype":"F32","shape":[2],"data_offsets":[24,32]},)"
                    R"("weight":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]}})",
                    {1, 2, 3, 4, 5, 6, 7, 8});
  torch::nn::Linear linear(3, 2);
  load_safetensors(path, *linear);
  EXPECT_TRUE(at::equal(linear->weight, at::arange(1, 7, at::kFloat).view({2, 3})));
  EXPECT_TRUE(at::equal(linear->bias, at::arange(7, 9, at::kFloat)));
}

TEST(CheckpointLoad1, BadSafetensorsFilesAreNamed) {
  const std::string path = shared_dir() + "/bad.safetensors";
  const std::string weight = R"("weight":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]})";
  const std::vector<float> six{1, 2, 3, 4, 5, 6};
  torch::nn::Linear linear(torch::nn::LinearOptions(3, 2).bias(false));
  auto load_it = [&] { load_safetensors(path, *linear); };

  write_safetensors(path, "{" + weight + "}", six, /*cut_at=*/5);
  expect_error<std::invalid_argument>(load_it,
                                      {"[kdist.checkpoint] safetensors file '" + path + "' has 5 bytes"});
  write_safetensors(path, "{" + weight + "}", six,
                    /*cut_at=*/static_cast<int64_t>(8 + weight.size() + 2 + 10));
  expect_error<std::invalid_argument>(
      load_it,
      {"its tensors' data ends at byte 24 after the header, but 10 bytes follow the header (truncated?)"});
  write_safetensors(path, "{not json at all", six);
  expect_error<std::invalid_argument>(load_it, {"has a header that is not JSON"});
  { std::ofstream(path, std::ios::binary) << std::string("\xff\xff\xff\xff\x00\x00\x00\x00{}", 10); }
  expect_error<std::invalid_argument>(
      load_it, {"declares a header of 4294967295 bytes; safetensors readers refuse more than 100000000"});
  { std::ofstream(path, std::ios::binary) << std::string("\xe8\x03\x00\x00\x00\x00\x00\x00{}", 10); }
  expect_error<std::invalid_argument>(load_it, {"declares a header of 1000 bytes, but only 2 follow"});
  write_safetensors(path, R"({"weight":{"dtype":"F32","shape":[2,3],"data_offsets":[0,20]}})", six);
  expect_error<std::invalid_argument>(
      load_it, {"tensor 'weight' has data_offsets [0, 20]: 20 bytes, its dtype and shape need 24"});
  write_safetensors(path, R"({"weight":{"dtype":"C64","shape":[2,3],"data_offsets":[0,24]}})", six);
  expect_error<std::invalid_argument>(load_it, {"tensor 'weight' has dtype 'C64'"});
  write_safetensors(path, R"({"weight":{"dtype":"F32","shape":[3,2],"data_offsets":[0,24]}})", six);
  expect_error<std::invalid_argument>(load_it,
                                      {"does not match the module; different shape or dtype: ['weight (3, 2) "
                                       "float32 in the file, (2, 3) float32 here']"});
  write_safetensors(path, R"({"other":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]}})", six);
  expect_error<std::invalid_argument>(load_it,
                                      {"missing from the file: ['weight']", "not in the module: ['other']"});
  expect_error<std::invalid_argument>(
      [&] { load_safetensors(shared_dir() + "/absent.safetensors", *linear); },
      {"cannot open safetensors file '" + shared_dir() + "/absent.safetensors'"});
}

TEST(CheckpointFault, SaveModelOfSeed) {
  TinyGpt model = make_gpt(seed_from_env());
  distribute_module(*model, *fault_distribution());
  save(shared_dir() + "/fault", *model);
}

// The same through AsyncSaver, whose thread a "writing" fault kills.
TEST(CheckpointFault, AsyncSaveModelOfSeed) {
  TinyGpt model = make_gpt(seed_from_env());
  distribute_module(*model, *fault_distribution());
  AsyncSaver saver;
  saver.save(shared_dir() + "/fault", *model);
  ASSERT_TRUE(saver.wait().has_value());
}

TEST(CheckpointFault, LoadsModelOfSeed) {
  TinyGpt expected = make_gpt(seed_from_env()), model = make_gpt(99);
  auto distribution = fault_distribution();
  distribute_module(*expected, *distribution);
  distribute_module(*model, *distribution);
  load(shared_dir() + "/fault", *model);
  for (const auto& p : expected->named_parameters())
    EXPECT_TRUE(at::equal(model->named_parameters()[p.key()], p.value())) << p.key();
}

}  // namespace
}  // namespace kdist
