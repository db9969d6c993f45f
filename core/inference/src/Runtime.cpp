// SPDX-License-Identifier: GPL-3.0-or-later
#include "enhance/inference/Runtime.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/version.h>

#include <algorithm>
#include <thread>

namespace enhance {

void ConfigureRuntime(const RuntimeOptions& options) {
  int threads = options.threads;
  if (threads <= 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  at::set_num_threads(threads);
}

void UseConfiguredThreadsHere() { at::internal::lazy_init_num_threads(); }

std::string TorchVersion() { return TORCH_VERSION; }

int TorchThreads() { return at::get_num_threads(); }

}  // namespace enhance
