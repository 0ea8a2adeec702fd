#pragma once
// Shared helpers for kdist's tests.
#include <gtest/gtest.h>
#include <kdist/mesh.h>

#include <memory>
#include <string>
#include <vector>

// Expects `statement` to throw `exception_type` whose what() contains `fragment`.
#define EXPECT_THROW_WITH(statement, exception_type, fragment)                    \
  do {                                                                            \
    try {                                                                         \
      statement;                                                                  \
      ADD_FAILURE() << "expected " #exception_type " containing \"" << (fragment) \
                    << "\", nothing was thrown";                                  \
    } catch (const exception_type& e) {                                           \
      EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos)          \
          << "message: " << e.what() << "\nexpected to contain: " << (fragment);  \
    }                                                                             \
  } while (0)

namespace kdist::testing {

// "cpu:0".."cpu:n-1": devices of a job that these single-process tests only pretend to run.
inline std::vector<std::string> fake_devices(int n) {
  std::vector<std::string> devices;
  for (int i = 0; i < n; ++i) devices.push_back("cpu:" + std::to_string(i));
  return devices;
}

inline DeviceMeshPtr mesh(std::vector<int64_t> shape, std::vector<std::string> names) {
  int64_t n = 1;
  for (auto s : shape) n *= s;
  return std::make_shared<DeviceMesh>(std::move(shape), std::move(names), fake_devices(static_cast<int>(n)));
}

}  // namespace kdist::testing
