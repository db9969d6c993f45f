// SPDX-License-Identifier: GPL-3.0-or-later
//
// Process-wide LibTorch and DCMTK settings. Call Configure() once at start-up, before
// any model runs; the getters are thread-safe.
#pragma once

#include <string>

namespace enhance {

struct RuntimeOptions {
  int threads = 0;  // intra-op threads for LibTorch; 0 = number of hardware threads
};

void ConfigureRuntime(const RuntimeOptions& options);

// Registers DCMTK's decoders for compressed transfer syntaxes (JPEG, JPEG-LS, RLE).
// Idempotent and safe to call from any thread; never unregisters them, because a host
// process (Orthanc) may share the same DCMTK libraries.
void RegisterDicomCodecs();

std::string TorchVersion();
int TorchThreads();

}  // namespace enhance
