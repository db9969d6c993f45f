// SPDX-License-Identifier: GPL-3.0-or-later
//
// Process-wide LibTorch settings. Call ConfigureRuntime() once at start-up, before any
// model runs; the getters are thread-safe. DCMTK's are in enhance/dicom/DicomCodecs.h.
#pragma once

#include <string>

namespace enhance {

struct RuntimeOptions {
  int threads = 0;  // intra-op threads for LibTorch; 0 = number of hardware threads
};

void ConfigureRuntime(const RuntimeOptions& options);

std::string TorchVersion();
int TorchThreads();

}  // namespace enhance
