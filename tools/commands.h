#pragma once
// Each subcommand of the kdist command registers itself on the CLI11 app.
#include <CLI/CLI.hpp>

namespace kdist::tools {

void add_info_command(CLI::App& app);
void add_launch_command(CLI::App& app);
void add_train_command(CLI::App& app);
void add_plan_command(CLI::App& app);

}  // namespace kdist::tools
