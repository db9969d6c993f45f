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

// Gives the calling thread the thread count ConfigureRuntime set. OpenMP keeps that count
// per thread: a thread that LibTorch did not start (a job's, a REST request's) has OpenMP's
// default (every core) until its first LibTorch parallel loop, and oneDNN's convolutions
// read it at once. Called where a model or domain check starts to run or load; cheap after
// the first call on a thread. Thread-safe.
void UseConfiguredThreadsHere();

std::string TorchVersion();
int TorchThreads();

}  // namespace enhance
