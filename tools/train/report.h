#pragma once
// What `kdist train` shows and writes: the live progress line, the per-step metrics file and
// the SVG loss curve.
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "trainer.h"

namespace kdist::tools {

// Progress of a run on stdout: one line rewritten in place on a terminal, plain lines every
// `every` steps otherwise.
class Progress {
 public:
  // Steps first_step..last_step (a resumed run starts after 1).
  Progress(int64_t first_step, int64_t last_step, double units_per_step, std::string unit, int64_t every,
           bool terminal);
  void update(const StepRecord& record);
  void finish();             // ends the in-place line
  double mean_rate() const;  // units per second over the run, first step excluded when possible

 private:
  std::string line(const StepRecord& record) const;
  int64_t first_step_, last_step_, every_;
  double units_per_step_;
  std::string unit_;
  bool terminal_;
  double elapsed_ = 0, first_seconds_ = 0;
};

// One JSON object per line and step: {"step", "loss", "seconds", "<unit>_per_s"}.
class MetricsFile {
 public:
  MetricsFile(const std::string& path, double units_per_step, std::string unit);  // throws if unwritable
  void write(const StepRecord& record);

 private:
  std::ofstream out_;
  double units_per_step_;
  std::string unit_;
};

// The loss against the step as a standalone SVG (a browser shows it). Throws
// std::invalid_argument if the file cannot be written.
void write_loss_plot(const std::string& path, const std::vector<StepRecord>& records,
                     const std::string& title);

}  // namespace kdist::tools
