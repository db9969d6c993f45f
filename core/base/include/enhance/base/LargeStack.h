// SPDX-License-Identifier: GPL-3.0-or-later
//
// Deep work on a stack that can hold it. Orthanc's web server (CivetWeb as Debian builds it)
// calls REST callbacks on threads of 100 KB of stack, and one TorchScript forward, a model
// load or a DCMTK decode can take several hundred KB: run there, they overflow it and take
// Orthanc down. StackThread is a thread of a stated stack, whatever the process's limit;
// RunWithStack runs the work on a new one and waits.
// Thread-safety: any number of threads may call RunWithStack at once, each call has its own
// thread; a StackThread is joined by one thread (its owner).
#pragma once

#include <pthread.h>

#include <cstddef>
#include <exception>
#include <functional>
#include <memory>

namespace enhance {

// The stack of the threads the plugin starts for its work (REST routes, jobs): that of a
// main thread.
inline constexpr size_t kWorkStackBytes = size_t{8} << 20;

// A thread whose stack holds `stackBytes` (at least the system's minimum), running `work`;
// the destructor joins it.
class StackThread {
 public:
  // Starts the thread. Throws std::system_error, as std::thread does, when no thread can be
  // started (out of memory or of threads).
  StackThread(size_t stackBytes, std::function<void()> work);
  // Joins the thread if Join() has not (what the work threw is then dropped).
  ~StackThread();
  StackThread(const StackThread&) = delete;
  StackThread& operator=(const StackThread&) = delete;

  // Blocks until the work has returned, then rethrows what it threw, unchanged. Once only.
  // Throws std::system_error when the thread cannot be joined.
  void Join();

 private:
  struct Call {
    std::function<void()> work;
    std::exception_ptr error;
  };
  std::unique_ptr<Call> call_;  // where the thread finds its work, at a fixed address
  pthread_t thread_{};
  bool joined_ = false;
};

// Runs `work` on a new StackThread of `stackBytes`, blocks until it returns, and rethrows
// in the caller what it threw, unchanged. Throws Error(kInternal) when no thread can be
// started (out of memory or of threads).
void RunWithStack(size_t stackBytes, const std::function<void()>& work);

}  // namespace enhance
