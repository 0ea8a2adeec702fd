// The kdist command: `kdist info` and `kdist launch`; train and plan join as they are built.
#include <iostream>

#include "commands.h"

int main(int argc, char** argv) {
  CLI::App app{"kdist: Keras-style distributed training for LibTorch"};
  app.require_subcommand(1);
  kdist::tools::add_info_command(app);
  kdist::tools::add_launch_command(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const std::exception& e) {
    std::cerr << "kdist: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
