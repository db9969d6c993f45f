// SPDX-License-Identifier: GPL-3.0-or-later
//
// A counting semaphore (C++17 has none) bounding how many callers do something at once,
// e.g. run one model or process series. A waiter may give up when its work is cancelled.
// Thread-safe.
#pragma once

#include <atomic>
#include <condition_variable>
#include <mutex>

namespace enhance {

class Slots {
 public:
  explicit Slots(int count);
  Slots(const Slots&) = delete;
  Slots& operator=(const Slots&) = delete;

  // Waits for a free slot. With `cancel`, throws Error(kCancelled) naming `what` when it
  // becomes true while waiting.
  void Acquire(const std::atomic<bool>* cancel = nullptr, const char* what = "a slot");
  void Release();

 private:
  std::mutex mutex_;
  std::condition_variable available_;
  int free_;
};

// Holds one slot for its lifetime.
class SlotGuard {
 public:
  explicit SlotGuard(Slots& slots, const std::atomic<bool>* cancel = nullptr,
                     const char* what = "a slot")
      : slots_(slots) {
    slots_.Acquire(cancel, what);
  }
  ~SlotGuard() { slots_.Release(); }
  SlotGuard(const SlotGuard&) = delete;
  SlotGuard& operator=(const SlotGuard&) = delete;

 private:
  Slots& slots_;
};

}  // namespace enhance
