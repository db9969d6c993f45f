// SPDX-License-Identifier: GPL-3.0-or-later
#include "WorkQueue.h"

namespace enhance::plugin {

WorkQueue::WorkQueue(size_t workers, Handler handler)
    : workerCount_(workers == 0 ? 1 : workers), handler_(std::move(handler)) {}

WorkQueue::~WorkQueue() { Stop(); }

void WorkQueue::Start() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (started_ || stopping_) return;
  started_ = true;
  for (size_t i = 0; i < workerCount_; ++i) workers_.emplace_back([this] { Work(); });
}

bool WorkQueue::Push(const std::string& id) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (stopping_ || !waiting_.insert(id).second) return false;
    queue_.push_back(id);
  }
  wake_.notify_one();
  return true;
}

void WorkQueue::Stop() {
  std::vector<std::thread> workers;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
    queue_.clear();
    waiting_.clear();
    workers.swap(workers_);
  }
  wake_.notify_all();
  for (auto& worker : workers) {
    if (worker.joinable()) worker.join();
  }
}

size_t WorkQueue::Pending() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return queue_.size();
}

size_t WorkQueue::Running() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return running_.size();
}

void WorkQueue::Work() {
  while (true) {
    std::string id;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      // The same series is never processed by two workers at once: skip it while it runs.
      auto next = queue_.end();
      wake_.wait(lock, [&] {
        if (stopping_) return true;
        for (next = queue_.begin(); next != queue_.end(); ++next) {
          if (running_.count(*next) == 0) return true;
        }
        return false;
      });
      if (stopping_) return;
      id = *next;
      queue_.erase(next);
      waiting_.erase(id);
      running_.insert(id);
    }
    try {
      handler_(id, stopping_);
    } catch (...) {
      // The handler reports its own failures; nothing may escape a worker thread.
    }
    {
      std::lock_guard<std::mutex> lock(mutex_);
      running_.erase(running_.find(id));
    }
    wake_.notify_all();
  }
}

}  // namespace enhance::plugin
