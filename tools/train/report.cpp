#include "report.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <iostream>
#include <sstream>
#include <stdexcept>

namespace kdist::tools {
namespace {

std::string format(const char* pattern, double value) {
  char text[64];
  std::snprintf(text, sizeof(text), pattern, value);
  return text;
}

std::string duration(double seconds) {
  const auto s = static_cast<int64_t>(std::lround(seconds));
  return s >= 60 ? std::to_string(s / 60) + "m" + format("%02.0f", double(s % 60)) + "s"
                 : std::to_string(s) + "s";
}

}  // namespace

Progress::Progress(int64_t first_step, int64_t last_step, double units_per_step, std::string unit,
                   int64_t every, bool terminal)
    : first_step_(first_step),
      last_step_(last_step),
      every_(every > 0 ? every : std::max<int64_t>(1, (last_step - first_step + 1) / 20)),
      units_per_step_(units_per_step),
      unit_(std::move(unit)),
      terminal_(terminal) {}

double Progress::mean_rate() const {
  // The first step pays one-time costs (allocations, Gloo connections): leave it out.
  const int64_t run = last_step_ - first_step_ + 1;
  const bool skip_first = run > 1;
  const double seconds = skip_first ? elapsed_ - first_seconds_ : elapsed_;
  const int64_t steps = skip_first ? run - 1 : run;
  return seconds > 0 ? double(steps) * units_per_step_ / seconds : 0;
}

std::string Progress::line(const StepRecord& r) const {
  const double rate = units_per_step_ / std::max(r.seconds, 1e-9);
  const double done = static_cast<double>(r.step - first_step_ + 1);
  const double eta = elapsed_ / done * static_cast<double>(last_step_ - r.step);
  std::ostringstream out;
  out << "step " << r.step << "/" << last_step_ << "  loss " << format("%.4f", r.loss) << "  "
      << format("%.0f", rate) << " " << unit_ << "/s  elapsed " << duration(elapsed_) << "  ETA "
      << duration(eta);
  return out.str();
}

void Progress::update(const StepRecord& r) {
  elapsed_ += r.seconds;
  if (r.step == first_step_) first_seconds_ = r.seconds;
  if (terminal_) {
    std::cout << "\r\033[K" << line(r) << std::flush;
  } else if (r.step == first_step_ || r.step % every_ == 0 || r.step == last_step_) {
    std::cout << line(r) << "\n" << std::flush;
  }
}

void Progress::finish() {
  if (terminal_) std::cout << "\n" << std::flush;
}

MetricsFile::MetricsFile(const std::string& path, double units_per_step, std::string unit)
    : out_(path), units_per_step_(units_per_step), unit_(std::move(unit)) {
  if (!out_) bad_option("cannot write metrics file '" + path + "'");
}

void MetricsFile::write(const StepRecord& r) {
  nlohmann::json line{{"step", r.step},
                      {"loss", r.loss},
                      {"seconds", r.seconds},
                      {unit_ + "_per_s", units_per_step_ / std::max(r.seconds, 1e-9)}};
  out_ << line.dump() << "\n" << std::flush;
}

void write_loss_plot(const std::string& path, const std::vector<StepRecord>& records,
                     const std::string& title) {
  std::ofstream out(path);
  if (!out) bad_option("cannot write plot file '" + path + "'");
  const double width = 640, height = 400, left = 60, right = 20, top = 40, bottom = 50;
  double low = records.empty() ? 0 : records.front().loss, high = low;
  for (const auto& r : records) low = std::min(low, r.loss), high = std::max(high, r.loss);
  if (high - low < 1e-12) high = low + 1;
  const double last = records.empty() ? 1 : std::max<double>(2, double(records.back().step));
  auto x = [&](double step) { return left + (step - 1) / (last - 1) * (width - left - right); };
  auto y = [&](double loss) { return top + (high - loss) / (high - low) * (height - top - bottom); };
  out << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << width << "\" height=\"" << height
      << "\" font-family=\"sans-serif\" font-size=\"12\">\n"
      << "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
      << "<text x=\"" << width / 2 << "\" y=\"24\" text-anchor=\"middle\" font-size=\"14\">" << title
      << "</text>\n";
  for (int i = 0; i <= 4; ++i) {  // horizontal grid lines with loss labels
    const double loss = low + (high - low) * i / 4, py = y(loss);
    out << "<line x1=\"" << left << "\" y1=\"" << py << "\" x2=\"" << width - right << "\" y2=\"" << py
        << "\" stroke=\"#ddd\"/>\n<text x=\"" << left - 6 << "\" y=\"" << py + 4 << "\" text-anchor=\"end\">"
        << format("%.3g", loss) << "</text>\n";
  }
  for (int i = 0; i <= 4; ++i) {  // step labels
    const double step = 1 + (last - 1) * i / 4;
    out << "<text x=\"" << x(step) << "\" y=\"" << height - bottom + 18 << "\" text-anchor=\"middle\">"
        << format("%.0f", step) << "</text>\n";
  }
  out << "<text x=\"" << (left + width - right) / 2 << "\" y=\"" << height - 10
      << "\" text-anchor=\"middle\">step</text>\n"
      << "<text x=\"16\" y=\"" << (top + height - bottom) / 2
      << "\" text-anchor=\"middle\" transform=\"rotate(-90 16 " << (top + height - bottom) / 2
      << ")\">loss</text>\n"
      << "<polyline fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"1.5\" points=\"";
  for (const auto& r : records)
    out << format("%.1f", x(double(r.step))) << "," << format("%.1f", y(r.loss)) << " ";
  out << "\"/>\n</svg>\n";
}

}  // namespace kdist::tools
