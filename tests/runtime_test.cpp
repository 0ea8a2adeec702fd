#include <kdist/runtime.h>
#include <torch/cuda.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>

#include "test_util.h"

namespace kdist {
namespace {

TEST(Runtime, SingleProcessBeforeAndAfterInitialize) {
  EXPECT_EQ(num_processes(), 1);
  EXPECT_EQ(process_id(), 0);
  EXPECT_EQ(list_devices(), std::vector<std::string>{"cpu:0"});
  EXPECT_EQ(list_devices("cpu"), std::vector<std::string>{"cpu:0"});
  EXPECT_EQ(get_device_count(), 1);
  initialize(std::nullopt, 1, 0);
  EXPECT_TRUE(is_initialized());
  EXPECT_EQ(num_processes(), 1);
  EXPECT_EQ(list_devices(), std::vector<std::string>{"cpu:0"});
  shutdown();
  EXPECT_FALSE(is_initialized());
}

TEST(Runtime, CudaDevicesOnlyWhereThereAreGpus) {
  // "gpu" is an alias of "cuda"; the default type follows what LibTorch sees.
  const bool cuda = torch::cuda::is_available();
  const std::vector<std::string> one_cuda_device{"cuda:0"};
  EXPECT_EQ(list_devices("gpu"), cuda ? one_cuda_device : std::vector<std::string>{});
  EXPECT_EQ(list_devices("cuda"), cuda ? one_cuda_device : std::vector<std::string>{});
  EXPECT_EQ(get_device_count("cuda"), cuda ? 1 : 0);
  EXPECT_EQ(list_devices(), (std::vector<std::string>{cuda ? "cuda:0" : "cpu:0"}));
  EXPECT_EQ(list_devices("cpu"), (std::vector<std::string>{"cpu:0"}));
}

// A free TCP port on 127.0.0.1 (a tiny race with other programs is acceptable in tests).
int free_port() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

TEST(Runtime, APeerThatNeverArrivesIsATimeoutError) {
  setenv("KDIST_TIMEOUT_S", "2", 1);
  std::string address = "127.0.0.1:" + std::to_string(free_port());
  auto start = std::chrono::steady_clock::now();
  EXPECT_THROW_WITH(initialize(address, 2, 0), std::runtime_error,
                    "[kdist.runtime] rank 0: rank 1 of 2 did not arrive at the coordinator " + address +
                        " within 2 s (KDIST_TIMEOUT_S)");
  EXPECT_FALSE(is_initialized());
  EXPECT_EQ(num_processes(), 1);
  // A worker whose coordinator never comes up says it could not reach it.
  EXPECT_THROW_WITH(initialize(address, 2, 1), std::runtime_error,
                    "[kdist.runtime] rank 1 could not reach the coordinator of 2 processes at " + address +
                        " within 2 s (KDIST_TIMEOUT_S)");
  unsetenv("KDIST_TIMEOUT_S");
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(30));
}

TEST(Runtime, AGlooInterfaceThatDoesNotExistIsNamed) {
  setenv("GLOO_SOCKET_IFNAME", "kdist-nosuch0", 1);
  EXPECT_THROW_WITH(
      initialize("127.0.0.1:" + std::to_string(free_port()), 2, 0), std::runtime_error,
      "[kdist.runtime] GLOO_SOCKET_IFNAME='kdist-nosuch0' names no interface with an address here");
  unsetenv("GLOO_SOCKET_IFNAME");
  EXPECT_FALSE(is_initialized());
}

TEST(Runtime, InitializeTwiceIsAnError) {
  initialize(std::nullopt, 1, 0);
  EXPECT_THROW_WITH(initialize(std::nullopt, 1, 0), std::invalid_argument, "initialize() was already called");
  shutdown();
}

TEST(Runtime, BadArguments) {
  EXPECT_THROW_WITH(list_devices("tpu"), std::invalid_argument,
                    "[kdist.runtime] device_type 'tpu' is not one of cpu, cuda, gpu");
  EXPECT_THROW_WITH(initialize(std::nullopt, 2, 5), std::invalid_argument,
                    "initialize(num_processes=2, process_id=5)");
  EXPECT_FALSE(is_initialized());
}

}  // namespace
}  // namespace kdist
