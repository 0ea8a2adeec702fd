#include "runtime/resolve_job_config.h"

#include <cerrno>
#include <cstdlib>
#include <vector>

#include "base/errors.h"

namespace kdist::detail {
namespace {

int parse_int(const std::string& text, const std::string& what) {
  errno = 0;
  char* end = nullptr;
  long value = std::strtol(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || errno != 0 || value < INT32_MIN || value > INT32_MAX)
    invalid("runtime", what, "='", text, "' is not an integer");
  return static_cast<int>(value);
}

// The first variable of `names` that is set, as (name, value).
std::optional<std::pair<std::string, std::string>> first_set(const EnvLookup& env,
                                                             std::initializer_list<const char*> names) {
  for (const char* name : names)
    if (const char* value = env(name); value != nullptr && *value != '\0')
      return std::make_pair(std::string(name), std::string(value));
  return std::nullopt;
}

std::vector<std::string> split_commas(const std::string& text) {
  std::vector<std::string> parts;
  size_t start = 0;
  while (true) {
    size_t comma = text.find(',', start);
    std::string part = text.substr(start, comma - start);
    if (!part.empty()) parts.push_back(part);
    if (comma == std::string::npos) return parts;
    start = comma + 1;
  }
}

void parse_host_port(const std::string& address, const std::string& what, JobConfig& config) {
  auto colon = address.rfind(':');
  if (colon == std::string::npos || colon == 0)
    invalid("runtime", what, " address '", address, "' is not of the form host:port");
  config.coordinator_host = address.substr(0, colon);
  config.coordinator_port = parse_int(address.substr(colon + 1), what + " port");
  if (config.coordinator_port < 1 || config.coordinator_port > 65535)
    invalid("runtime", what, " port ", config.coordinator_port, " is outside 1..65535");
}

// The coordinator: the first of the job addresses, or torchrun's MASTER_ADDR:MASTER_PORT.
// Returns every address given, and says where they came from.
std::vector<std::string> read_addresses(const std::optional<std::string>& job_addresses, const EnvLookup& env,
                                        JobConfig& config, std::string& source,
                                        std::vector<std::string>& said) {
  std::vector<std::string> addresses;
  if (job_addresses) {
    addresses = split_commas(*job_addresses);
    source = "job_addresses";
  } else if (auto v = first_set(env, {"KERAS_DISTRIBUTION_JOB_ADDRESSES"})) {
    addresses = split_commas(v->second);
    source = v->first;
  } else if (auto addr = first_set(env, {"MASTER_ADDR"})) {
    auto port = first_set(env, {"MASTER_PORT"});
    if (!port) invalid("runtime", "MASTER_ADDR is set but MASTER_PORT is not");
    addresses = {addr->second + ":" + port->second};
    source = "MASTER_ADDR/MASTER_PORT";
  }
  if (!addresses.empty()) {
    parse_host_port(addresses.front(), source, config);
    said.push_back(source);
  }
  return addresses;
}

// How many processes, which one this is and its rank on its host: arguments first, then the
// variables of Keras, torchrun, Slurm and Open MPI.
void read_identity(std::optional<int> num_processes, std::optional<int> process_id, size_t address_count,
                   const EnvLookup& env, JobConfig& config, std::vector<std::string>& said) {
  if (num_processes) {
    config.num_processes = *num_processes;
    said.push_back("num_processes");
  } else if (auto v = first_set(env, {"KERAS_DISTRIBUTION_NUM_PROCESSES", "WORLD_SIZE", "SLURM_NTASKS",
                                      "OMPI_COMM_WORLD_SIZE"})) {
    config.num_processes = parse_int(v->second, v->first);
    said.push_back(v->first);
  } else if (address_count > 1) {
    config.num_processes = static_cast<int>(address_count);
  }
  if (process_id) {
    config.process_id = *process_id;
    said.push_back("process_id");
  } else if (auto v = first_set(
                 env, {"KERAS_DISTRIBUTION_PROCESS_ID", "RANK", "SLURM_PROCID", "OMPI_COMM_WORLD_RANK"})) {
    config.process_id = parse_int(v->second, v->first);
    said.push_back(v->first);
  }
  if (auto v = first_set(env, {"LOCAL_RANK", "SLURM_LOCALID", "OMPI_COMM_WORLD_LOCAL_RANK"}))
    config.local_rank = parse_int(v->second, v->first);
  else
    config.local_rank = config.process_id;
}

// What the transports are told: the launcher's store, the socket interface, kdist's own choices.
void read_transport_settings(const EnvLookup& env, JobConfig& config) {
  if (const char* agent = env("TORCHELASTIC_USE_AGENT_STORE"))
    config.store_served_by_launcher = std::string(agent) == "True" || std::string(agent) == "1";
  if (auto v = first_set(env, {"GLOO_SOCKET_IFNAME"})) {
    const auto names = split_commas(v->second);
    if (!names.empty()) config.socket_interface = names.front();
  }
  if (auto v = first_set(env, {"KDIST_TRANSPORT"})) {
    if (v->second != "auto" && v->second != "gloo" && v->second != "shm")
      invalid("runtime", "KDIST_TRANSPORT='", v->second, "' is not one of auto, gloo, shm");
    config.transport = v->second;
  }
  if (auto v = first_set(env, {"KDIST_HOST"})) config.host_label = v->second;
  if (auto v = first_set(env, {"KDIST_SHM_DIR"}); v && !v->second.empty())
    config.shared_memory_dir = v->second;
}

// The store's keys of this job and attempt (JobConfig::store_scope).
void read_store_scope(const EnvLookup& env, JobConfig& config) {
  const auto token = first_set(env, {"KDIST_JOB_TOKEN"});
  const auto attempt = first_set(env, {"KDIST_RESTART_COUNT", "TORCHELASTIC_RESTART_COUNT"});
  if (token && token->second.find_first_of("/\n") != std::string::npos)
    invalid("runtime",
            "KDIST_JOB_TOKEN holds a '/' or a newline; expected a token without either (letters and digits, "
            "say)");
  const int count = attempt ? parse_int(attempt->second, attempt->first) : 0;
  if (count < 0) invalid("runtime", attempt->first, "=", count, " is negative");
  if (token || attempt)
    config.store_scope = (token ? token->second + "/" : "") + "attempt-" + std::to_string(count) + "/";
}

void check_job_config(const JobConfig& config, size_t address_count, const std::string& address_source) {
  if (address_count > 1 && static_cast<int>(address_count) != config.num_processes)
    invalid("runtime", address_source, " lists ", address_count, " addresses but num_processes is ",
            config.num_processes, "; give one address per process or only the coordinator's");
  if (config.num_processes < 1 || config.process_id < 0 || config.process_id >= config.num_processes)
    invalid("runtime", "initialize(num_processes=", config.num_processes, ", process_id=", config.process_id,
            "): expected num_processes >= 1 and 0 <= process_id < num_processes (from ", config.source, ")");
  if (config.num_processes > 1 && config.coordinator_host.empty())
    invalid("runtime", config.num_processes,
            " processes need a coordinator address: pass job_addresses or set "
            "KERAS_DISTRIBUTION_JOB_ADDRESSES or MASTER_ADDR and MASTER_PORT (from ",
            config.source, ")");
}

}  // namespace

JobConfig resolve_job_config(const std::optional<std::string>& job_addresses,
                             std::optional<int> num_processes, std::optional<int> process_id,
                             const EnvLookup& env) {
  JobConfig config;
  std::vector<std::string> said;  // what set the configuration, for error messages
  std::string address_source;
  const auto addresses = read_addresses(job_addresses, env, config, address_source, said);
  read_identity(num_processes, process_id, addresses.size(), env, config, said);
  read_transport_settings(env, config);
  read_store_scope(env, config);
  for (size_t i = 0; i < said.size(); ++i) config.source += (i ? ", " : "") + said[i];
  if (config.source.empty()) config.source = "defaults";
  check_job_config(config, addresses.size(), address_source);
  return config;
}

double timeout_seconds(const EnvLookup& env) {
  const char* text = env("KDIST_TIMEOUT_S");
  if (text == nullptr || *text == '\0') return 300.0;
  char* end = nullptr;
  double value = std::strtod(text, &end);
  if (*end != '\0' || !(value > 0))
    invalid("runtime", "KDIST_TIMEOUT_S='", text, "' is not a positive number of seconds");
  return value;
}

}  // namespace kdist::detail
