// Multi-process tests of comm's send and recv (src/comm/collectives.cpp, transports/gloo.cpp):
// real ranks over 127.0.0.1, on 2 and 4 ranks (CommPointToPoint.*), on shared memory's groups
// too, whose point-to-point goes through their Gloo.
#include <ATen/ATen.h>
#include <kdist/comm.h>
#include <kdist/runtime.h>

#include <stdexcept>
#include <string>

#include "../mp_util.h"
#include "../test_util.h"

namespace kdist::comm {
namespace {

at::Tensor of_rank(int rank, int64_t n) { return at::arange(n, at::kFloat) + 1000.0 * rank; }

// Around a ring, even ranks sending first and odd ones receiving first, as a pipeline pairs them.
TEST(CommPointToPoint, ARingPassesEachRanksTensorOn) {
  auto w = world();
  const int r = w->rank(), k = w->size(), next = (r + 1) % k, previous = (r + k - 1) % k;
  CollectiveCounter counter;
  at::Tensor got = at::empty({4096});
  if (r % 2 == 0) {
    send(of_rank(r, 4096), next, *w);
    recv(got, previous, *w);
  } else {
    recv(got, previous, *w);
    send(of_rank(r, 4096), next, *w);
  }
  EXPECT_TRUE(at::equal(got, of_rank(previous, 4096)));
  EXPECT_EQ(counter.count("send"), 1);
  EXPECT_EQ(counter.bytes("send"), 4096 * 4);
  EXPECT_EQ(counter.count("recv"), 1);
}

// Messages between two ranks arrive in the order sent, whatever their sizes; a non-contiguous
// tensor receives through a copy.
TEST(CommPointToPoint, MessagesKeepTheirOrder) {
  auto w = world();
  if (w->rank() == 0) {
    for (int i = 0; i < 3; ++i) send(at::full({2 + i, 3}, static_cast<float>(i)), 1, *w);
    send(at::arange(6, at::kFloat).view({2, 3}), 1, *w);
  } else if (w->rank() == 1) {
    for (int i = 0; i < 3; ++i) {
      at::Tensor got = at::empty({2 + i, 3});
      recv(got, 0, *w);
      EXPECT_TRUE(at::equal(got, at::full({2 + i, 3}, static_cast<float>(i)))) << "message " << i;
    }
    at::Tensor transposed = at::empty({3, 2}).t();  // (2, 3), not contiguous
    recv(transposed, 0, *w);
    EXPECT_TRUE(at::equal(transposed, at::arange(6, at::kFloat).view({2, 3})));
  }
  barrier(*w);
}

TEST(CommPointToPoint, APeerMustBeAnotherRankOfTheGroup) {
  auto w = world();
  const std::string self = std::to_string(w->rank());
  EXPECT_THROW_WITH(send(at::ones({2}), w->rank(), *w), std::invalid_argument,
                    "[kdist.comm] send on " + w->name() + ": peer " + self +
                        " is not another rank of the group (" + std::to_string(w->size()) +
                        " ranks, this one " + self + ")");
  at::Tensor t = at::empty({2});
  EXPECT_THROW_WITH(recv(t, w->size(), *w), std::invalid_argument,
                    "recv on " + w->name() + ": peer " + std::to_string(w->size()) + " is not another rank");
}

}  // namespace
}  // namespace kdist::comm
