// SPDX-License-Identifier: GPL-3.0-or-later
//
// A FIFO of series IDs served by a fixed pool of worker threads, so that Orthanc's
// change callback only enqueues and returns at once.
//
// Guarantees: an ID waiting in the queue is never queued twice; an ID being processed
// may be queued once more (new instances may have arrived) and is then processed again
// after the current run. Stop() stops accepting work, sets the flag handlers poll to
// finish early, drops what is still waiting, and joins the workers.
//
// Thread-safety: all public methods may be called from any thread. The handler runs on
// worker threads and must not throw (exceptions are caught and counted as failures).
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace enhance::plugin {

class WorkQueue {
 public:
  // `stopping` becomes true when the queue is being stopped.
  using Handler = std::function<void(const std::string& id, const std::atomic<bool>& stopping)>;

  WorkQueue(size_t workers, Handler handler);
  ~WorkQueue();
  WorkQueue(const WorkQueue&) = delete;
  WorkQueue& operator=(const WorkQueue&) = delete;

  void Start();
  // Returns false when the ID was already waiting or the queue is stopped.
  bool Push(const std::string& id);
  void Stop();

  size_t Pending() const;
  size_t Running() const;

 private:
  void Work();

  const size_t workerCount_;
  const Handler handler_;
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<std::string> queue_;
  std::set<std::string> waiting_;
  std::multiset<std::string> running_;
  std::vector<std::thread> workers_;
  std::atomic<bool> stopping_{false};
  bool started_ = false;
};

}  // namespace enhance::plugin
