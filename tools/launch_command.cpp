// `kdist launch -n N [--nnodes M|MIN:MAX --node-rank R --master-addr A --master-port P] [--max-restarts K]
//  [--job-token T] -- PROGRAM ARGS...`
#include <cstdlib>

#include "commands.h"
#include "launch/launcher.h"
#include "validators.h"

namespace kdist::tools {
namespace {

// "4" (min_nnodes 0: not elastic) or "2:4"; false for anything else.
bool parse_nnodes(const std::string& text, LaunchOptions& options) {
  const auto colon = text.find(':');
  auto number = [](const std::string& digits, int& out) {
    if (digits.empty() || digits.size() > 5 || digits.find_first_not_of("0123456789") != std::string::npos)
      return false;
    out = std::stoi(digits);
    return out >= 1;
  };
  if (colon == std::string::npos) return options.min_nnodes = 0, number(text, options.nnodes);
  return number(text.substr(0, colon), options.min_nnodes) &&
         number(text.substr(colon + 1), options.nnodes) && options.min_nnodes <= options.nnodes;
}

}  // namespace

void add_launch_command(CLI::App& app, int& exit_code) {
  auto options = std::make_shared<LaunchOptions>();
  auto* launch_cmd = app.add_subcommand(
      "launch", "Run PROGRAM as N ranks with torchrun's environment; fail if any rank fails");
  launch_cmd->add_option("-n,--nproc-per-node", options->nproc_per_node, "Processes on this node")
      ->required()
      ->check(whole_number(1, 1 << 16));
  auto nnodes_text = std::make_shared<std::string>("1");
  auto* nnodes = launch_cmd
                     ->add_option("--nnodes", *nnodes_text,
                                  "Nodes in the job: N, or MIN:MAX to go on with at least MIN after losing "
                                  "hosts (each restart runs on the nodes that join)")
                     ->check([](const std::string& text) {
                       LaunchOptions parsed;
                       return parse_nnodes(text, parsed)
                                  ? std::string()
                                  : "expected N or MIN:MAX with 1 <= MIN <= MAX, got '" + text + "'";
                     });
  launch_cmd->add_option("--node-rank", options->node_rank, "This node's index (0: serves the job's store)")
      ->check(whole_number(0, 1 << 16))
      ->needs(nnodes);
  launch_cmd->add_option("--master-addr", options->master_addr, "Coordinator address (rank 0's host)");
  launch_cmd
      ->add_option("--master-port", options->master_port,
                   "Coordinator port (default: a free port; required with --nnodes > 1)")
      ->check(whole_number(0, 65535));
  launch_cmd
      ->add_option("--grace", options->grace_seconds,
                   "Seconds between SIGTERM and SIGKILL when stopping ranks")
      ->check(real_number(/*positive=*/false));
  launch_cmd
      ->add_option(
          "--heartbeat-timeout", options->heartbeat_timeout_seconds,
          "Seconds without a heartbeat after which a kdist rank has stopped responding (0: not watched)")
      ->check(real_number(/*positive=*/false))
      ->capture_default_str();
  launch_cmd
      ->add_option("--max-restarts", options->max_restarts,
                   "Start the job again after a failure, at most this many times")
      ->check(whole_number(0, 1 << 20))
      ->capture_default_str();
  launch_cmd
      ->add_option("--join-timeout", options->join_timeout_seconds,
                   "--nnodes MIN:MAX: once MIN nodes have joined an attempt, seconds to wait for the others")
      ->check(real_number(/*positive=*/false))
      ->capture_default_str();
  launch_cmd->add_option(
      "--job-token", options->job_token,
      "The job's secret, the same on every node (default: KDIST_JOB_TOKEN; one node: random)");
  launch_cmd->add_option("command", options->command, "PROGRAM ARGS... (after --)")->required();
  launch_cmd->callback([options, nnodes_text, &exit_code] {
    parse_nnodes(*nnodes_text, *options);
    if (const char* timeout = std::getenv("KDIST_TIMEOUT_S"); timeout && std::atof(timeout) > 0)
      options->connect_timeout_seconds = std::atof(timeout);
    if (const char* token = std::getenv("KDIST_JOB_TOKEN"); token && options->job_token.empty())
      options->job_token = token;
    exit_code = launch(*options);
  });
}

}  // namespace kdist::tools
