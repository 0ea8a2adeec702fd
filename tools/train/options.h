#pragma once
// The options `kdist train` and `kdist plan` share, from the command line or a JSON config
// file, and what they turn into: a mesh, a distribution and a built-in workload.
#include <kdist/distribution.h>
#include <CLI/CLI.hpp>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace kdist::tools {

struct TrainOptions {
  std::string config;  // JSON file of options; the command line wins over it
  // Model and task.
  std::string model = "gpt";  // gpt | mlp
  int64_t width = 0;          // 0: the model's default (gpt 128, mlp 256)
  int64_t layers = 3;         // gpt blocks
  int64_t heads = 4;          // gpt attention heads
  int64_t context = 64;       // gpt characters per sample
  std::string data;           // gpt text file; empty: the shipped corpus
  // Distribution.
  std::string mesh;                 // "batch=2,model=2"
  int64_t devices = 0;              // a 1-D "batch" mesh of this many devices
  std::string distribution;         // data | model; empty: model if the mesh has a "model" axis
  std::vector<std::string> layout;  // "REGEX=AXES", AXES like "null,model"
  bool no_default_layout = false;   // only --layout entries (no built-in layout map)
  // Training.
  int64_t batch_size = 32;  // global
  int64_t steps = 400;
  double lr = 3e-3;
  double grad_clip = 0;            // clip the global gradient norm to this; 0: off
  int64_t accumulate = 1;          // micro-batches per step; gradients synchronised on the last
  bool loss_parallel = false;      // gpt: head column parallel, loss from the vocabulary shards
  bool sequence_parallel = false;  // gpt: LayerNorms and residual stream on sequence pieces
  std::string precision = "fp32";  // fp32 | bf16 (mixed: fp32 master weights, bf16 compute)
  std::string optimizer = "adam";  // sgd | adam | adamw
  uint64_t seed = 0;
  // Output.
  std::string metrics;            // JSON lines, one per step
  std::string plot;               // SVG loss curve
  int64_t log_every = 0;          // plain progress lines every N steps; 0: about 20 per run
  std::string checkpoint_dir;     // step-N/ checkpoints go here
  int64_t checkpoint_every = 0;   // 0: only after the last step
  bool checkpoint_async = false;  // write checkpoints in the background
  bool resume = false;            // continue from the newest complete checkpoint
  std::string init_from;          // a safetensors file of whole weights to start from
  bool verify = false;
  bool count_collectives = false;  // print each step's collectives on every rank
  double verify_tolerance = 0;     // 0: 1e-4, or 2e-3 under --precision bf16
  int64_t sample_length = 300;
};

// Throws std::invalid_argument("[kdist.train] " + message): every bad option's error.
[[noreturn]] void bad_option(const std::string& message);

// Registers the shared options on a subcommand.
void add_train_options(CLI::App& command, TrainOptions& options);

// Fills every option not given on the command line from the JSON file named by --config
// (keys are the long option names, with - or _; "layout" is an object {"REGEX": [axes]}),
// through CLI11, so into the variables add_train_options bound: `options` must be those.
// Throws std::invalid_argument for a missing file, bad JSON or an unknown key.
void apply_config_file(CLI::App& command, const TrainOptions& options);

// Checks what CLI11's validators cannot (options against each other, files); throws
// std::invalid_argument with a tagged one-line message.
void validate(const TrainOptions& options);

// The mesh the options describe; `devices` gives it its devices ("cpu:0", ...). Throws when
// the options describe no mesh of that many devices.
DeviceMeshPtr make_mesh(const TrainOptions& options, const std::vector<std::string>& devices);
// "batch=2,model=2" as (name, size) pairs, an axis given as '*' (at most one) with size
// kFilledAxis; throws std::invalid_argument ("[kdist.train] ...") for anything else. The one
// parser of --mesh: its validator and the mesh both use it.
inline constexpr int64_t kFilledAxis = -1;
std::vector<std::pair<std::string, int64_t>> parse_mesh(const std::string& text);
// The same with the '*' axis sized to fill `devices` (a job that lost a host runs on a
// smaller mesh); throws when the other axes do not divide `devices`.
std::vector<std::pair<std::string, int64_t>> mesh_axes_for(const std::string& text, int64_t devices);
// The number of devices the options' mesh has, or 0 if they leave it to the job's size.
int64_t requested_devices(const TrainOptions& options);

// "data" or "model", resolved from the options and the mesh.
std::string distribution_kind(const TrainOptions& options, const DeviceMesh& mesh);

// "REGEX=AXES" -> (REGEX, axes); AXES: comma-separated, null/none/- for a replicated dim,
// "a+b" for a dim sharded over two axes.
std::pair<std::string, std::vector<AxisSpec>> parse_layout_entry(const std::string& entry);
// "tp", "fsdp" or "gemma": --layout's names of whole layout maps.
bool is_layout_preset(const std::string& text);

}  // namespace kdist::tools
