#pragma once
// Sharded checkpoints: every process writes only the shards it owns, and a checkpoint loads
// onto any mesh and layout (the resharding rule of torch.distributed.checkpoint).
//
//   kdist::distribute_module(*model, *distribution);
//   torch::optim::Adam optimizer(model->parameters());
//   ... train ...
//   kdist::save("ckpt/step-100", *model, &optimizer);   // collective
//   // later, on any number of processes and any layout map:
//   kdist::distribute_module(*model, *other_distribution);
//   torch::optim::Adam optimizer(model->parameters());
//   kdist::load("ckpt/step-100", *model, &optimizer);   // collective
//
// What is saved: every parameter and buffer of the module by its torch name, and with an
// optimizer (SGD, Adam, AdamW) its per-parameter state (momentum buffer; exp_avg,
// exp_avg_sq, max_exp_avg_sq; step counts), sharded like its parameter. A tensor made by
// distribute_module / distribute_variable is saved by its DTensor spec: each distinct block
// once, by the lowest rank holding it; any other tensor is taken as replicated on every
// process and written by process 0.
//
// On disk, a directory:
//   metadata.json   {"format": "kdist-checkpoint", "version": 1, "processes": N,
//                    "tensors": {name: {"dtype", "shape", "chunks": [{"offsets", "sizes",
//                    "file", "byte_offset", "byte_length", "crc32"}]}},
//                    "optimizer": {"kind": "adam", "steps": {param name: step}}}
//   shard-R.bin     process R's chunks, each row-major, native byte order, back to back
// The optimizer's tensors are named "optimizer/<param name>/<field>".
//
// Crash safety: save writes into "<path>.partial" and, once every process has written and
// synced its file and process 0 the metadata, process 0 publishes it as <path> in one atomic
// rename (replacing an existing <path> with renameat2(RENAME_EXCHANGE)). A crash at any point
// leaves the previous <path> complete and loadable. <path> must be on a filesystem every
// process sees.
//
// Load reads, on each process, every saved chunk that overlaps its own block of each tensor,
// checks the chunk's CRC-32 and copies the overlap. It is collective: if it fails on one
// process it throws on all.
//
// Throws std::invalid_argument (bad path, a checkpoint that does not match the module or
// optimizer, listing the differences) and std::runtime_error (I/O errors; a checksum
// mismatch or a truncated file, naming the tensor and the file).
#include <torch/nn/module.h>
#include <torch/optim/optimizer.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace kdist {

struct LoadOptions {
  bool allow_missing = false;     // tensors of the module absent from the checkpoint keep their values
  bool allow_unexpected = false;  // tensors of the checkpoint absent from the module are skipped
};

void save(const std::string& path, torch::nn::Module& module, torch::optim::Optimizer* optimizer = nullptr);

void load(const std::string& path, torch::nn::Module& module, torch::optim::Optimizer* optimizer = nullptr,
          LoadOptions options = {});

// Saves that do not stall training: save() copies this process's blocks into host memory
// the saver keeps and reuses, and returns; a thread writes and syncs them while training goes
// on; poll() at a later step boundary publishes the checkpoint once every process has written
// its file. Publishing is save's: atomic, so a crash before it leaves the previous checkpoint.
//
//   kdist::AsyncSaver saver;
//   for (int step = 1; step <= steps; ++step) {
//     train_step();
//     if (auto published = saver.poll()) prune_older_than(*published);   // collective, cheap
//     if (step % 5 == 0) saver.save("ckpt/step-" + std::to_string(step), *model, &optimizer);
//   }
//   saver.wait();                                                       // collective
//
// Contracts. save, poll and wait are collective: every process calls them at the same steps.
// save first waits for (and publishes) the previous save, so at most one is in flight; it
// holds no reference to the module or optimizer after it returns, so training may change
// them at once. poll costs one one-element all-reduce while a save is in flight and nothing
// otherwise; it returns the path it published, or nullopt. wait blocks until the save in flight
// is published and returns its path (nullopt when there was none). The background thread only
// writes files: every collective runs on the caller's thread. The host copy costs as much
// memory as this process's blocks. A save that fails (disk full) throws, on every process,
// from the poll or wait that would have published it. The destructor waits for the thread but
// publishes nothing: call wait() before shutdown() to keep the last save.
class AsyncSaver {
 public:
  AsyncSaver();
  ~AsyncSaver();
  AsyncSaver(const AsyncSaver&) = delete;
  AsyncSaver& operator=(const AsyncSaver&) = delete;

  void save(const std::string& path, torch::nn::Module& module, torch::optim::Optimizer* optimizer = nullptr);
  std::optional<std::string> poll();
  std::optional<std::string> wait();
  bool in_flight() const { return pending_ != nullptr; }

 private:
  struct Pending;
  std::optional<std::string> publish_pending();
  std::unique_ptr<Pending> pending_;
  std::vector<at::Tensor> buffers_;  // the host copies, reused from save to save
};

// Weights in and out as safetensors, Hugging Face's format, which Python's `safetensors` and
// `transformers` read: an 8-byte little-endian header length, a JSON header
// {name: {"dtype", "shape", "data_offsets"}, "__metadata__": {"format": "pt"}}, then the raw
// tensors, row-major and little-endian.
//
//   kdist::export_safetensors("ckpt/step-100", "model.safetensors");   // one process
//   // any job, any mesh and layout:
//   kdist::distribute_module(*model, *distribution);
//   kdist::load_safetensors("model.safetensors", *model);              // collective
//
// export_safetensors writes the checkpoint's module tensors (parameters and buffers, not the
// optimizer's), whole, under their torch names, holding one tensor in memory at a time; it
// writes "<out>.partial" and renames it to `out` once complete. Run it on one process.
// load_safetensors fills every parameter and buffer of the module from the tensor of the same
// torch name: each process maps the file and copies only its own block of each tensor, so no
// process reads the whole file. Collective like load (a failure on one process throws on all).
// Throws std::invalid_argument for a file that is not safetensors (too short, a header length
// past its end, a header that is not JSON, an entry whose bytes do not match its dtype and
// shape or lie past the end), and for tensors missing, unexpected or of another shape or
// dtype (LoadOptions relaxes the first two), each named; std::runtime_error for I/O errors
// and a damaged checkpoint.
void export_safetensors(const std::string& checkpoint, const std::string& out);
void load_safetensors(const std::string& path, torch::nn::Module& module, LoadOptions options = {});

}  // namespace kdist
