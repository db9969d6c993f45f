// SPDX-License-Identifier: GPL-3.0-or-later
//
// Runs work on threads that are kept, once the work returns, for the next work, instead of
// a new thread each time.
//
// Why: the plugin's jobs each ran on a thread of their own, and a thread's first model run
// pays for set-up that LibTorch and oneDNN keep per thread. In a node, on the shipped
// domain checks (tests/benchmark/domain_benchmark.py, docs/models.md, "In a node"), that
// was about half of each job's check time. A job on a kept thread pays it once per
// thread; the plugin loads its models on one, so that even the first job finds it set up.
//
// The plugin keeps two: one for its jobs, and one for its REST routes, whose work started a
// thread per request and paid that set-up each time (GET /enhance/series/{id}/domain on an MR
// slice: 12.5-13.1 ms so, 1.3-1.7 ms on a kept thread; docs/rest.md).
//
// Threads are started as needed (one per piece of work running at once, never more, and at
// most a stated number), each with a stack that holds a model's forward or a DCMTK decode
// whatever the process's stack limit (kWorkStackBytes, LargeStack.h), and kept until the
// cache is destroyed. The destructor waits for the work still running.
//
// Thread-safe: Run() may be called from any thread; a Task may be waited for from any
// thread, by several at once.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include "enhance/base/LargeStack.h"

namespace enhance::plugin {

class ThreadCache {
 public:
  // At most `maxThreads` threads (0: as many as work runs at once).
  explicit ThreadCache(size_t maxThreads = 0) : maxThreads_(maxThreads) {}
  ~ThreadCache();
  ThreadCache(const ThreadCache&) = delete;
  ThreadCache& operator=(const ThreadCache&) = delete;

  // A piece of work handed to Run(). An empty Task (default-constructed) has nothing to
  // wait for.
  class Task {
   public:
    Task() = default;
    // Blocks until the work has returned.
    void Wait() const;
    bool Valid() const { return state_ != nullptr; }

   private:
    friend class ThreadCache;
    struct State;
    std::shared_ptr<State> state_;
  };

  // Runs `work` on an idle kept thread, or on a new one when every kept thread is busy.
  // When every thread is busy and there are already maxThreads, runs nothing and returns an
  // empty Task: the caller runs the work elsewhere. What `work` throws is dropped (work
  // should catch what it can fail with). Throws std::system_error, as std::thread does,
  // when a new thread is needed and cannot be started.
  Task Run(std::function<void()> work);

  // Threads started so far.
  size_t Threads() const;

 private:
  void Loop();

  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<std::pair<std::function<void()>, std::shared_ptr<Task::State>>> queue_;
  size_t idle_ = 0;  // threads waiting for work
  bool stopping_ = false;
  const size_t maxThreads_;
  std::vector<std::unique_ptr<StackThread>> threads_;
};

}  // namespace enhance::plugin
