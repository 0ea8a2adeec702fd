// `kdist export CHECKPOINT --out FILE.safetensors`: a checkpoint's weights, whole, in the
// safetensors format (kdist::export_safetensors).
#include <kdist/checkpoint.h>

#include <filesystem>
#include <iostream>
#include <stdexcept>

#include "commands.h"
#include "train/checkpoints.h"

namespace kdist::tools {

void add_export_command(CLI::App& app, int& exit_code) {
  auto* command = app.add_subcommand(
      "export",
      "Write a checkpoint's parameters and buffers, whole and under their torch names, as safetensors");
  auto checkpoint = std::make_shared<std::string>();
  auto out = std::make_shared<std::string>();
  command
      ->add_option("checkpoint", *checkpoint,
                   "A checkpoint (a step-N/ directory), or a kdist train --checkpoint-dir, whose newest "
                   "checkpoint is taken")
      ->required();
  command->add_option("--out", *out, "The safetensors file to write")->required();
  command->callback([checkpoint, out, &exit_code] {
    try {
      // A --checkpoint-dir of kdist train: its newest complete checkpoint, as --resume takes.
      std::string source = *checkpoint;
      if (!std::filesystem::exists(std::filesystem::path(source) / "metadata.json"))
        if (auto newest = latest_checkpoint(source)) source = newest->path;
      export_safetensors(source, *out);
      std::cout << "wrote " << *out << " (" << std::filesystem::file_size(*out) / 1048576.0 << " MiB) from "
                << source
                << (source != *checkpoint ? " (the newest checkpoint in " + *checkpoint + ")" : std::string())
                << "\n";
    } catch (const std::invalid_argument& e) {
      std::cerr << "kdist export: " << e.what() << "\n";
      exit_code = 2;
    } catch (const std::exception& e) {
      std::cerr << "kdist export: " << e.what() << "\n";
      exit_code = 1;
    }
  });
}

}  // namespace kdist::tools
