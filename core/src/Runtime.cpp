// SPDX-License-Identifier: GPL-3.0-or-later
#include "enhance/Runtime.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <dcmtk/dcmdata/dcrledrg.h>
#include <dcmtk/dcmjpeg/djdecode.h>
#include <dcmtk/dcmjpls/djdecode.h>
#include <torch/version.h>

#include <mutex>
#include <thread>

namespace enhance {

void ConfigureRuntime(const RuntimeOptions& options) {
  int threads = options.threads;
  if (threads <= 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  at::set_num_threads(threads);
}

void RegisterDicomCodecs() {
  static std::once_flag once;
  std::call_once(once, [] {
    // Each registerCodecs() is a no-op when the host process registered them already.
    DJDecoderRegistration::registerCodecs();
    DJLSDecoderRegistration::registerCodecs();
    DcmRLEDecoderRegistration::registerCodecs();
  });
}

std::string TorchVersion() { return TORCH_VERSION; }

int TorchThreads() { return at::get_num_threads(); }

}  // namespace enhance
