// SPDX-License-Identifier: GPL-3.0-or-later
#include "KeyedLock.h"

#include <chrono>

#include "enhance/base/Error.h"

namespace enhance::plugin {

bool KeyedLock::Acquire(const std::string& key, const std::atomic<bool>* cancel) {
  std::unique_lock<std::mutex> lock(mutex_);
  bool waited = false;
  while (held_.count(key) > 0) {
    waited = true;
    if (cancel && cancel->load()) {
      throw Error(ErrorKind::kCancelled, "cancelled while waiting for another job");
    }
    released_.wait_for(lock, std::chrono::milliseconds(250));
  }
  held_.insert(key);
  return waited;
}

void KeyedLock::Release(const std::string& key) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    held_.erase(key);
  }
  released_.notify_all();
}

bool KeyedLock::IsHeld(const std::string& key) const {
  std::lock_guard<std::mutex> lock(mutex_);
  return held_.count(key) > 0;
}

}  // namespace enhance::plugin
