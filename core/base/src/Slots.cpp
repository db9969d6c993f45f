// SPDX-License-Identifier: GPL-3.0-or-later
#include "enhance/base/Slots.h"

#include <algorithm>
#include <chrono>
#include <string>

#include "enhance/base/Error.h"

namespace enhance {

Slots::Slots(int count) : free_(std::max(1, count)) {}

void Slots::Acquire(const std::atomic<bool>* cancel, const char* what) {
  std::unique_lock<std::mutex> lock(mutex_);
  while (free_ <= 0) {
    if (cancel != nullptr && cancel->load()) {
      throw Error(ErrorKind::kCancelled, std::string("cancelled while waiting for ") + what);
    }
    // Polls so that a cancelled waiter notices without being woken.
    available_.wait_for(lock, std::chrono::milliseconds(100));
  }
  --free_;
}

void Slots::Release() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    ++free_;
  }
  available_.notify_one();
}

}  // namespace enhance
