// `kdist plan`: the sharding and the per-step collectives of a training configuration,
// computed without launching processes, for meshes of any size.
#include <kdist/kdist.h>

#include <cstdlib>
#include <iostream>
#include <limits>

#include "commands.h"
#include "train/job.h"
#include "train/plan.h"
#include "validators.h"

namespace kdist::tools {

void add_plan_command(CLI::App& app, int& exit_code) {
  auto options = std::make_shared<TrainOptions>();
  auto* plan_cmd =
      app.add_subcommand("plan",
                         "Print the sharding plan and per-step collectives of a `kdist train` configuration "
                         "(no processes are started)");
  add_train_options(*plan_cmd, *options);
  auto rank = std::make_shared<int>(0);
  plan_cmd
      ->add_option("--rank", *rank,
                   "Plan as the process of this global rank sees it (its shards, its pieces)")
      ->check(whole_number(0, std::numeric_limits<int>::max()))
      ->capture_default_str();
  plan_cmd->callback([options, rank, plan_cmd, &exit_code] {
    try {
      apply_config_file(*plan_cmd, *options);  // sets the options bound to *options
      const TrainOptions o = *options;
      const int64_t devices = requested_devices(o);
      if (devices == 0)
        throw std::invalid_argument(
            "[kdist.plan] give the mesh to plan for, every axis sized: --mesh batch=2,model=4 or --devices "
            "N" +
            (o.mesh.find('*') != std::string::npos ? " ('" + o.mesh + "' leaves an axis to the job's size)"
                                                   : std::string()));
      auto job = prepare_job(o, cpu_devices(devices));
      auto model = job.workload->build();
      if (*rank < 0 || *rank >= devices)
        throw std::invalid_argument("[kdist.plan] --rank " + std::to_string(*rank) +
                                    " is outside the mesh's " + std::to_string(devices) + " devices");
      auto summary = plan_module(*model, *job.distribution, *rank, distribute_options(o));
      check_plan(job, summary);
      std::cout << sharding_report(job, summary) << "\n"
                << collectives_report(job, plan_step(job, summary, *model), *rank);
    } catch (const std::invalid_argument& e) {
      std::cerr << "kdist plan: " << e.what() << "\n";
      exit_code = 2;
    }
  });
}

}  // namespace kdist::tools
