// The kdist command: info, launch, train, plan and export.
#include <c10/util/Exception.h>

#include <iostream>

#include "commands.h"

int main(int argc, char** argv) {
  CLI::App app{"kdist: Keras-style distributed training for LibTorch"};
  app.require_subcommand(1);
  int exit_code = 0;
  kdist::tools::add_info_command(app, exit_code);
  kdist::tools::add_launch_command(app, exit_code);
  kdist::tools::add_train_command(app, exit_code);
  kdist::tools::add_plan_command(app, exit_code);
  kdist::tools::add_export_command(app, exit_code);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const c10::Error& e) {  // LibTorch's what() carries a C++ backtrace
    std::cerr << "kdist: " << e.what_without_backtrace() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "kdist: " << e.what() << "\n";
    return 1;
  }
  return exit_code;
}
