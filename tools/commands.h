#pragma once
// Each subcommand of the kdist command registers itself on the CLI11 app. Its callback runs
// the command and leaves main's exit code in `exit_code` (no std::exit: destructors run).
#include <CLI/CLI.hpp>

namespace kdist::tools {

void add_info_command(CLI::App& app, int& exit_code);
void add_launch_command(CLI::App& app, int& exit_code);
void add_train_command(CLI::App& app, int& exit_code);
void add_plan_command(CLI::App& app, int& exit_code);
void add_export_command(CLI::App& app, int& exit_code);

}  // namespace kdist::tools
