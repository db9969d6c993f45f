// SPDX-License-Identifier: GPL-3.0-or-later
#include "enhance/inference/Runtime.h"

#include <gtest/gtest.h>
#include <omp.h>

#include <thread>

namespace enhance {
namespace {

// A thread the process starts itself (a job's) runs with the configured count from its
// first model run, not with OpenMP's default of every core.
TEST(Runtime, AThreadOfOursUsesTheConfiguredThreadCount) {
  const int before = TorchThreads();
  ConfigureRuntime({1});
  int unset = 0, set = 0;
  std::thread job([&] {
    unset = omp_get_max_threads();
    UseConfiguredThreadsHere();
    set = omp_get_max_threads();
  });
  job.join();
  ConfigureRuntime({before});  // for the tests that follow in this process
  if (unset == 1) GTEST_SKIP() << "OpenMP's default is already one thread here";
  EXPECT_EQ(set, 1) << "a new thread kept OpenMP's default of " << unset;
}

}  // namespace
}  // namespace enhance
