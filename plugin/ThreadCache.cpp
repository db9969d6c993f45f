// SPDX-License-Identifier: GPL-3.0-or-later
#include "ThreadCache.h"

#include <utility>

namespace enhance::plugin {

struct ThreadCache::Task::State {
  std::mutex mutex;
  std::condition_variable done;
  bool finished = false;
};

void ThreadCache::Task::Wait() const {
  if (!state_) return;
  std::unique_lock<std::mutex> lock(state_->mutex);
  state_->done.wait(lock, [this] { return state_->finished; });
}

ThreadCache::~ThreadCache() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  // Each runs what is queued first; what they run throws nothing (Loop() drops it).
  for (const std::unique_ptr<StackThread>& thread : threads_) thread->Join();
}

ThreadCache::Task ThreadCache::Run(std::function<void()> work) {
  Task task;
  std::lock_guard<std::mutex> lock(mutex_);
  // An idle thread for each piece of work waiting, or one more thread, or none.
  const bool idle = idle_ > queue_.size();
  if (!idle && maxThreads_ > 0 && threads_.size() >= maxThreads_) return task;
  task.state_ = std::make_shared<Task::State>();
  queue_.emplace_back(std::move(work), task.state_);
  if (idle) {
    wake_.notify_one();
  } else {
    try {
      threads_.push_back(std::make_unique<StackThread>(kWorkStackBytes, [this] { Loop(); }));
    } catch (...) {
      queue_.pop_back();
      throw;
    }
  }
  return task;
}

size_t ThreadCache::Threads() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return threads_.size();
}

void ThreadCache::Loop() {
  std::unique_lock<std::mutex> lock(mutex_);
  ++idle_;
  while (true) {
    wake_.wait(lock, [this] { return !queue_.empty() || stopping_; });
    --idle_;
    if (queue_.empty()) return;  // stopping, nothing left to run
    auto [work, state] = std::move(queue_.front());
    queue_.pop_front();
    lock.unlock();
    try {
      work();
    } catch (...) {
      // Dropped, as documented: the work reports its own failures.
    }
    work = nullptr;  // what the work holds goes before its waiters are told it is done
    lock.lock();
    // Idle again before the waiters hear of it, so that work they hand over next finds
    // this thread rather than starting another.
    ++idle_;
    {
      std::lock_guard<std::mutex> finished(state->mutex);
      state->finished = true;
    }
    state->done.notify_all();
  }
}

}  // namespace enhance::plugin
