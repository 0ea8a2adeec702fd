#include <kdist/runtime.h>

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
  // This CPU-only LibTorch has no CUDA devices; "gpu" is an alias of "cuda".
  EXPECT_EQ(list_devices("gpu"), list_devices("cuda"));
  EXPECT_EQ(get_device_count("cuda"), static_cast<int64_t>(list_devices("cuda").size()));
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
