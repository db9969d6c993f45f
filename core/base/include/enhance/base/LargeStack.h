// SPDX-License-Identifier: GPL-3.0-or-later
//
// Deep work on a stack that can hold it. Orthanc's web server (CivetWeb as Debian builds it)
// calls REST callbacks on threads of 100 KB of stack, and one TorchScript forward, a model
// load or a DCMTK decode can take several hundred KB: run there, they overflow it and take
// Orthanc down. RunWithStack runs the work on a new thread of a stated stack and waits.
// Thread-safe: any number of threads may call it at once; each call has its own thread.
#pragma once

#include <cstddef>
#include <functional>

namespace enhance {

// The stack of the threads the plugin starts for REST callbacks: that of a main thread.
inline constexpr size_t kWorkStackBytes = size_t{8} << 20;

// Runs `work` on a new thread whose stack holds `stackBytes` (at least the system's
// minimum), blocks until it returns, and rethrows in the caller what it threw, unchanged.
// Throws Error(kInternal) when no thread can be started (out of memory or of threads).
void RunWithStack(size_t stackBytes, const std::function<void()>& work);

}  // namespace enhance
