// Shared options of `kdist train` and `kdist plan`, JSON config files, and the mesh.
#include "options.h"

#include "../validators.h"

#include <nlohmann/json.hpp>

#include <unistd.h>
#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace kdist::tools {
namespace {

std::vector<std::string> split(const std::string& text, char separator) {
  std::vector<std::string> parts;
  std::stringstream in(text);
  for (std::string part; std::getline(in, part, separator);) parts.push_back(part);
  return parts;
}

// A JSON value as the strings CLI11 would have read from the command line.
std::vector<std::string> as_inputs(const std::string& key, const nlohmann::json& value) {
  if (value.is_string()) return {value.get<std::string>()};
  if (value.is_boolean()) return {value.get<bool>() ? "true" : "false"};
  if (value.is_number()) return {value.dump()};
  if (key == "layout" && value.is_object()) {
    std::vector<std::string> entries;
    for (const auto& [regex, axes] : value.items()) {
      if (!axes.is_array())
        bad_option("config key layout['" + regex + "'] must be a list of axes, got " + axes.dump());
      std::string spec;
      for (const auto& axis : axes) {
        if (!spec.empty() || &axis != &axes.front()) spec += ",";
        if (axis.is_null())
          spec += "null";
        else if (axis.is_string())
          spec += axis.get<std::string>();
        else if (axis.is_array()) {
          std::string joined;
          for (const auto& name : axis) joined += (joined.empty() ? "" : "+") + name.get<std::string>();
          spec += joined;
        } else
          bad_option("config key layout['" + regex + "'] has axis " + axis.dump() +
                     ": expected null, an axis name or a list of names");
      }
      entries.push_back(regex + "=" + spec);
    }
    return entries;
  }
  if (value.is_array()) {
    std::vector<std::string> items;
    for (const auto& item : value) items.push_back(item.is_string() ? item.get<std::string>() : item.dump());
    return items;
  }
  bad_option("config key '" + key + "' has value " + value.dump() +
             ", which is not a string, number or boolean");
}

}  // namespace

void bad_option(const std::string& message) { throw std::invalid_argument("[kdist.train] " + message); }

void add_train_options(CLI::App& c, TrainOptions& o) {
  c.add_option("--config", o.config, "JSON file of these options (the command line wins)");
  c.add_option("--model", o.model, "Built-in model: gpt or mlp")
      ->check(CLI::IsMember({"gpt", "mlp"}))
      ->capture_default_str();
  c.add_option("--width", o.width, "Model width (0: gpt 128, mlp 256)")->check(whole_number(0));
  c.add_option("--layers", o.layers, "gpt: transformer blocks")
      ->check(whole_number(1))
      ->capture_default_str();
  c.add_option("--heads", o.heads, "gpt: attention heads")->check(whole_number(1))->capture_default_str();
  c.add_option("--context", o.context, "gpt: characters per sample")
      ->check(whole_number(1))
      ->capture_default_str();
  c.add_option("--data", o.data, "gpt: a text file (default: the shipped corpus)");
  auto* mesh =
      c.add_option("--mesh", o.mesh,
                   "Mesh axes, e.g. batch=2,model=2; one size may be * (the processes left: batch=*,model=2) "
                   "(default: all processes)")
          ->check([](const std::string& text) {
            try {
              parse_mesh(text);
            } catch (const std::invalid_argument& e) {
              return std::string(e.what());
            }
            return std::string();
          });
  c.add_option("--devices", o.devices, "A 1-D 'batch' mesh of this many devices")
      ->check(whole_number(1))
      ->excludes(mesh);
  c.add_option("--distribution", o.distribution,
               "data (DataParallel) or model (ModelParallel); default: model if the mesh has a "
               "'model' axis")
      ->check(CLI::IsMember({"data", "model"}));
  c.add_option("--layout", o.layout,
               "tp (the model's tensor-parallel map, the default), fsdp (every weight over the batch "
               "axis on its larger dimension), gemma (keras-hub's 2-D pattern), or a layout map "
               "entry REGEX=AXES (Keras-style key, torch or Keras names; AXES like null,model); "
               "repeatable, entries are added to the chosen map");
  c.add_flag("--no-default-layout", o.no_default_layout, "Use only the --layout entries");
  c.add_option("--batch-size", o.batch_size, "Global batch size")
      ->check(whole_number(1))
      ->capture_default_str();
  c.add_option("--steps", o.steps, "Training steps")->check(whole_number(1))->capture_default_str();
  c.add_option("--lr", o.lr, "Learning rate")->check(real_number(/*positive=*/true))->capture_default_str();
  c.add_option("--grad-clip", o.grad_clip, "Clip the global gradient norm to this before each step (0: off)")
      ->check(real_number(/*positive=*/false))
      ->capture_default_str();
  c.add_option("--accumulate", o.accumulate,
               "Micro-batches per step: each process's rows in N pieces, gradients accumulated "
               "without communication and synchronised on the last")
      ->check(whole_number(1))
      ->capture_default_str();
  c.add_flag("--loss-parallel", o.loss_parallel,
             "gpt: the head column parallel over 'model' with its logits left sharded, the loss "
             "computed from the shards (kdist::nn::parallel_cross_entropy)");
  c.add_flag("--sequence-parallel", o.sequence_parallel,
             "gpt: the LayerNorms and the residual stream sharded over 'model' along the sequence "
             "(reduce_scatter after the row-parallel layers, all_gather before the column-parallel ones)");
  c.add_option("--precision", o.precision,
               "fp32, or bf16: fp32 master weights and optimizer state, bf16 compute and all_gathers, "
               "fp32 gradient reduction (kdist::nn::MixedPrecision)")
      ->check(CLI::IsMember({"fp32", "bf16"}))
      ->capture_default_str();
  c.add_option("--optimizer", o.optimizer, "sgd (momentum 0.9), adam or adamw")
      ->check(CLI::IsMember({"sgd", "adam", "adamw"}))
      ->capture_default_str();
  c.add_option("--seed", o.seed, "Seed of the weights and the data")->capture_default_str();
}

void apply_config_file(CLI::App& command, const TrainOptions& options) {
  if (options.config.empty()) return;
  std::ifstream in(options.config);
  if (!in) bad_option("cannot read config file '" + options.config + "'");
  nlohmann::json config;
  try {
    config = nlohmann::json::parse(in);
  } catch (const nlohmann::json::parse_error& e) {
    bad_option("config file '" + options.config + "' is not valid JSON: " + e.what());
  }
  if (!config.is_object()) bad_option("config file '" + options.config + "' must hold a JSON object");
  for (const auto& [raw_key, value] : config.items()) {
    std::string key = raw_key;
    for (auto& ch : key)
      if (ch == '_') ch = '-';
    if (key == "config") bad_option("config file '" + options.config + "' cannot name another config file");
    CLI::Option* option = nullptr;
    try {
      option = command.get_option("--" + key);
    } catch (const CLI::OptionNotFound&) {
      bad_option("config file '" + options.config + "' has unknown key '" + raw_key + "'");
    }
    if (option->count() > 0) continue;  // given on the command line
    option->clear();
    for (const auto& input : as_inputs(key, value)) option->add_result(input);
    try {
      option->run_callback();
    } catch (const CLI::Error& e) {
      bad_option("config key '" + raw_key + "': " + e.what());
    }
  }
}

// Choices and ranges are CLI11's validators (add_train_options), which also check values from a
// config file. What is left here relates options to each other or to files: CLI11's
// excludes/needs see only the command line, not a config file.
void validate(const TrainOptions& o) {
  if (!o.mesh.empty() && o.devices) bad_option("give --mesh or --devices, not both");
  if (!o.data.empty() && access(o.data.c_str(), R_OK) != 0)
    bad_option("cannot read data file '" + o.data + "': no such file or not readable");
  for (const auto& entry : o.layout)
    if (!is_layout_preset(entry)) parse_layout_entry(entry);
  if (o.resume && o.checkpoint_dir.empty()) bad_option("--resume needs --checkpoint-dir");
  if (o.checkpoint_async && o.checkpoint_dir.empty()) bad_option("--checkpoint-async needs --checkpoint-dir");
  if (o.resume && o.verify)
    bad_option("--verify cannot check a resumed run: its first steps ran in an earlier job");
  if (o.loss_parallel && o.model != "gpt")
    bad_option("--loss-parallel needs --model gpt (the mlp has no vocabulary)");
  if (o.sequence_parallel && o.model != "gpt")
    bad_option("--sequence-parallel needs --model gpt (the mlp has no sequence)");
  if (!o.init_from.empty() && access(o.init_from.c_str(), R_OK) != 0)
    bad_option("cannot read --init-from file '" + o.init_from + "': no such file or not readable");
  if (!o.init_from.empty() && o.resume)
    bad_option("give --init-from or --resume, not both: a resumed run continues from its checkpoint");
  if (o.checkpoint_every < 0)
    bad_option("--checkpoint-every must be 0 or positive, got " + std::to_string(o.checkpoint_every));
}

bool is_layout_preset(const std::string& text) { return text == "tp" || text == "fsdp" || text == "gemma"; }

std::pair<std::string, std::vector<AxisSpec>> parse_layout_entry(const std::string& entry) {
  const auto equals = entry.rfind('=');
  if (equals == std::string::npos || equals == 0 || equals + 1 == entry.size())
    bad_option("--layout '" + entry + "' is not REGEX=AXES (e.g. 'fc1/kernel=null,model')");
  std::vector<AxisSpec> axes;
  for (const auto& axis : split(entry.substr(equals + 1), ',')) {
    if (axis == "null" || axis == "None" || axis == "none" || axis == "-") {
      axes.emplace_back(std::nullopt);
    } else if (axis.find('+') != std::string::npos) {
      axes.emplace_back(split(axis, '+'));
    } else if (axis.empty()) {
      bad_option("--layout '" + entry + "' has an empty axis: write null for a replicated dimension");
    } else {
      axes.emplace_back(axis);
    }
  }
  return {entry.substr(0, equals), axes};
}

std::vector<std::pair<std::string, int64_t>> parse_mesh(const std::string& text) {
  std::vector<std::pair<std::string, int64_t>> axes;
  int filled = 0;
  for (const auto& axis : split(text, ',')) {
    const auto equals = axis.find('=');
    const std::string size_text = equals == std::string::npos ? "" : axis.substr(equals + 1);
    if (equals != 0 && size_text == "*") {
      if (++filled > 1)
        bad_option("--mesh '" + text + "' has more than one axis of size '*': give all but one");
      axes.emplace_back(axis.substr(0, equals), kFilledAxis);
      continue;
    }
    char* end = nullptr;
    errno = 0;
    const long long size = size_text.empty() ? 0 : std::strtoll(size_text.c_str(), &end, 10);
    if (equals == 0 || size_text.empty() || *end != '\0' || errno != 0 || size <= 0)
      bad_option("--mesh '" + text + "': axis '" + axis + "' is not NAME=SIZE with SIZE > 0 or '*'");
    axes.emplace_back(axis.substr(0, equals), size);
  }
  if (axes.empty()) bad_option("--mesh '" + text + "' names no axis: expected NAME=SIZE,...");
  return axes;
}

std::vector<std::pair<std::string, int64_t>> mesh_axes_for(const std::string& text, int64_t devices) {
  auto axes = parse_mesh(text);
  int64_t given = 1;
  for (const auto& axis : axes) given *= axis.second == kFilledAxis ? 1 : axis.second;
  for (auto& [name, size] : axes) {
    if (size != kFilledAxis) continue;
    if (devices % given != 0)
      bad_option("--mesh " + text + ": the job's " + std::to_string(devices) + " process" +
                 (devices == 1 ? "" : "es") + " do not divide by the other axes' " + std::to_string(given) +
                 ", so '" + name + "=*' has no size");
    size = devices / given;
  }
  return axes;
}

int64_t requested_devices(const TrainOptions& o) {
  if (o.devices) return o.devices;
  if (o.mesh.empty()) return 0;
  int64_t product = 1;
  for (const auto& [name, size] : parse_mesh(o.mesh)) {
    if (size == kFilledAxis) return 0;
    product *= size;
  }
  return product;
}

DeviceMeshPtr make_mesh(const TrainOptions& o, const std::vector<std::string>& devices) {
  const auto count = static_cast<int64_t>(devices.size());
  const int64_t wanted = requested_devices(o);
  if (wanted && wanted != count)
    bad_option((o.devices ? "--devices " + std::to_string(o.devices) : "--mesh " + o.mesh) + " has " +
               std::to_string(wanted) + " devices but the job has " + std::to_string(count) + " process" +
               (count == 1 ? "" : "es") + ": run it as `kdist launch -n " + std::to_string(wanted) +
               " -- kdist train ...`");
  std::vector<int64_t> shape;
  std::vector<std::string> names;
  if (o.mesh.empty()) {
    // A layout needs ModelParallel; with no mesh given, tensor parallelism gets (batch=1,
    // model=N), and --layout fsdp alone a 1-D batch axis over every process.
    const bool fsdp_only = !o.layout.empty() && std::all_of(o.layout.begin(), o.layout.end(),
                                                            [](const std::string& l) { return l == "fsdp"; });
    const bool model =
        !fsdp_only && (o.distribution == "model" || (o.distribution.empty() && !o.layout.empty()));
    shape = model ? std::vector<int64_t>{1, count} : std::vector<int64_t>{count};
    names = model ? std::vector<std::string>{"batch", "model"} : std::vector<std::string>{"batch"};
  } else {
    for (const auto& [name, size] : mesh_axes_for(o.mesh, count)) {
      names.push_back(name);
      shape.push_back(size);
    }
  }
  return std::make_shared<DeviceMesh>(shape, names, devices);
}

std::string distribution_kind(const TrainOptions& o, const DeviceMesh& mesh) {
  if (!o.distribution.empty()) return o.distribution;
  return mesh.has_axis("model") || !o.layout.empty() ? "model" : "data";
}

}  // namespace kdist::tools
