#include "runtime/resolve_job_config.h"

#include <map>

#include "test_util.h"

namespace kdist::detail {
namespace {

// An environment made of a map, so each case states exactly what is set.
EnvLookup env_of(std::map<std::string, std::string> vars) {
  auto shared = std::make_shared<std::map<std::string, std::string>>(std::move(vars));
  return [shared](const char* name) -> const char* {
    auto it = shared->find(name);
    return it == shared->end() ? nullptr : it->second.c_str();
  };
}

TEST(JobConfig, SingleProcessWhenNothingIsSet) {
  auto c = resolve_job_config(std::nullopt, std::nullopt, std::nullopt, env_of({}));
  EXPECT_EQ(c.num_processes, 1);
  EXPECT_EQ(c.process_id, 0);
  EXPECT_EQ(c.coordinator_host, "");
  EXPECT_EQ(c.source, "defaults");
}

TEST(JobConfig, KerasVariables) {
  auto c = resolve_job_config(std::nullopt, std::nullopt, std::nullopt,
                              env_of({{"KERAS_DISTRIBUTION_JOB_ADDRESSES", "10.0.0.1:1234,10.0.0.2:1234"},
                                      {"KERAS_DISTRIBUTION_NUM_PROCESSES", "2"},
                                      {"KERAS_DISTRIBUTION_PROCESS_ID", "1"},
                                      {"RANK", "0"}}));  // Keras's variables win over torchrun's
  EXPECT_EQ(c.coordinator_host, "10.0.0.1");
  EXPECT_EQ(c.coordinator_port, 1234);
  EXPECT_EQ(c.num_processes, 2);
  EXPECT_EQ(c.process_id, 1);
  EXPECT_EQ(c.local_rank, 1);
}

TEST(JobConfig, AddressListAloneGivesTheProcessCount) {
  auto c = resolve_job_config("a:1,b:1,c:1", std::nullopt, 2, env_of({}));
  EXPECT_EQ(c.num_processes, 3);
  EXPECT_EQ(c.process_id, 2);
  EXPECT_EQ(c.coordinator_host, "a");
}

TEST(JobConfig, TorchrunVariables) {
  auto c = resolve_job_config(std::nullopt, std::nullopt, std::nullopt,
                              env_of({{"MASTER_ADDR", "127.0.0.1"},
                                      {"MASTER_PORT", "29400"},
                                      {"WORLD_SIZE", "4"},
                                      {"RANK", "3"},
                                      {"LOCAL_RANK", "1"}}));
  EXPECT_EQ(c.coordinator_host, "127.0.0.1");
  EXPECT_EQ(c.coordinator_port, 29400);
  EXPECT_EQ(c.num_processes, 4);
  EXPECT_EQ(c.process_id, 3);
  EXPECT_EQ(c.local_rank, 1);
  EXPECT_EQ(c.source, "MASTER_ADDR/MASTER_PORT, WORLD_SIZE, RANK");
  EXPECT_FALSE(c.store_served_by_launcher);
  auto elastic = resolve_job_config(std::nullopt, std::nullopt, std::nullopt,
                                    env_of({{"MASTER_ADDR", "localhost"},
                                            {"MASTER_PORT", "29400"},
                                            {"WORLD_SIZE", "2"},
                                            {"RANK", "0"},
                                            {"TORCHELASTIC_USE_AGENT_STORE", "True"}}));
  EXPECT_TRUE(elastic.store_served_by_launcher) << "torchrun's agent serves the store";
}

TEST(JobConfig, SlurmAndOpenMpiRanks) {
  auto slurm = resolve_job_config(std::nullopt, std::nullopt, std::nullopt,
                                  env_of({{"MASTER_ADDR", "node1"},
                                          {"MASTER_PORT", "5000"},
                                          {"SLURM_NTASKS", "8"},
                                          {"SLURM_PROCID", "5"},
                                          {"SLURM_LOCALID", "1"}}));
  EXPECT_EQ(slurm.num_processes, 8);
  EXPECT_EQ(slurm.process_id, 5);
  EXPECT_EQ(slurm.local_rank, 1);
  auto mpi = resolve_job_config(std::nullopt, std::nullopt, std::nullopt,
                                env_of({{"KERAS_DISTRIBUTION_JOB_ADDRESSES", "node1:5000"},
                                        {"OMPI_COMM_WORLD_SIZE", "2"},
                                        {"OMPI_COMM_WORLD_RANK", "1"}}));
  EXPECT_EQ(mpi.num_processes, 2);
  EXPECT_EQ(mpi.process_id, 1);
}

TEST(JobConfig, ArgumentsWinOverTheEnvironment) {
  auto c = resolve_job_config("h:7", 2, 0, env_of({{"WORLD_SIZE", "4"}, {"RANK", "3"}}));
  EXPECT_EQ(c.num_processes, 2);
  EXPECT_EQ(c.process_id, 0);
  EXPECT_EQ(c.coordinator_port, 7);
}

TEST(JobConfig, Errors) {
  auto none = env_of({});
  EXPECT_THROW_WITH(resolve_job_config("a:1,b:1,c:1", 2, 0, none), std::invalid_argument,
                    "[kdist.runtime] job_addresses lists 3 addresses but num_processes is 2");
  EXPECT_THROW_WITH(resolve_job_config(std::nullopt, 2, 0, none), std::invalid_argument,
                    "2 processes need a coordinator address");
  EXPECT_THROW_WITH(resolve_job_config("h:7", 2, 2, none), std::invalid_argument,
                    "initialize(num_processes=2, process_id=2)");
  EXPECT_THROW_WITH(resolve_job_config("nohost", 2, 0, none), std::invalid_argument,
                    "job_addresses address 'nohost' is not of the form host:port");
  EXPECT_THROW_WITH(resolve_job_config("h:99999", 2, 0, none), std::invalid_argument,
                    "port 99999 is outside 1..65535");
  EXPECT_THROW_WITH(
      resolve_job_config(std::nullopt, std::nullopt, std::nullopt, env_of({{"WORLD_SIZE", "two"}})),
      std::invalid_argument, "WORLD_SIZE='two' is not an integer");
  EXPECT_THROW_WITH(
      resolve_job_config(std::nullopt, std::nullopt, std::nullopt, env_of({{"MASTER_ADDR", "h"}})),
      std::invalid_argument, "MASTER_ADDR is set but MASTER_PORT is not");
}

// comm's settings come from the environment here, once, and travel in the config.
TEST(JobConfig, CommSettings) {
  auto defaults = resolve_job_config(std::nullopt, std::nullopt, std::nullopt, env_of({}));
  EXPECT_EQ(defaults.transport, "auto");
  EXPECT_EQ(defaults.shared_memory_dir, "/dev/shm");
  EXPECT_EQ(defaults.host_label, "");
  auto c = resolve_job_config(
      std::nullopt, std::nullopt, std::nullopt,
      env_of({{"KDIST_TRANSPORT", "gloo"}, {"KDIST_SHM_DIR", "/run/big-tmpfs"}, {"KDIST_HOST", "a"}}));
  EXPECT_EQ(c.transport, "gloo");
  EXPECT_EQ(c.shared_memory_dir, "/run/big-tmpfs");
  EXPECT_EQ(c.host_label, "a");
  EXPECT_EQ(resolve_job_config(std::nullopt, std::nullopt, std::nullopt, env_of({{"KDIST_SHM_DIR", ""}}))
                .shared_memory_dir,
            "/dev/shm");
}

// Each attempt of a job has its own keys, under the job's token where it has one.
TEST(JobConfig, StoreScope) {
  const auto scope = [](std::map<std::string, std::string> vars) {
    return resolve_job_config(std::nullopt, std::nullopt, std::nullopt, env_of(std::move(vars))).store_scope;
  };
  EXPECT_EQ(scope({}), "");
  EXPECT_EQ(scope({{"TORCHELASTIC_RESTART_COUNT", "2"}}), "attempt-2/");
  EXPECT_EQ(scope({{"KDIST_JOB_TOKEN", "9f2c"}, {"KDIST_RESTART_COUNT", "1"}}), "9f2c/attempt-1/");
  EXPECT_EQ(scope({{"KDIST_JOB_TOKEN", "9f2c"}}), "9f2c/attempt-0/");
  EXPECT_THROW_WITH(scope({{"KDIST_JOB_TOKEN", "a/b"}}), std::invalid_argument,
                    "KDIST_JOB_TOKEN holds a '/' or a newline");
  EXPECT_THROW_WITH(scope({{"KDIST_RESTART_COUNT", "x"}}), std::invalid_argument,
                    "KDIST_RESTART_COUNT='x' is not an integer");
}

TEST(JobConfig, Timeout) {
  EXPECT_EQ(timeout_seconds(env_of({})), 300.0);
  EXPECT_EQ(timeout_seconds(env_of({{"KDIST_TIMEOUT_S", "2.5"}})), 2.5);
  EXPECT_THROW_WITH(timeout_seconds(env_of({{"KDIST_TIMEOUT_S", "-1"}})), std::invalid_argument,
                    "KDIST_TIMEOUT_S='-1' is not a positive number of seconds");
}

}  // namespace
}  // namespace kdist::detail
