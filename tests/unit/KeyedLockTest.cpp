// SPDX-License-Identifier: GPL-3.0-or-later
#include "KeyedLock.h"

#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "enhance/base/Error.h"

namespace enhance::plugin {

TEST(KeyedLock, OneHolderPerKeyAndKeysAreIndependent) {
  KeyedLock locks;
  std::atomic<int> order{0};
  int secondSaw = -1;
  bool secondWaited = false;
  std::thread second;
  {
    KeyedLockGuard first(locks, "series-a");
    EXPECT_FALSE(first.waited());
    KeyedLockGuard other(locks, "series-b");  // another key: no wait
    EXPECT_FALSE(other.waited());
    second = std::thread([&] {
      KeyedLockGuard guard(locks, "series-a");
      secondWaited = guard.waited();
      secondSaw = order.load();
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    order = 1;  // still held here: the second thread cannot have entered yet
  }
  second.join();
  EXPECT_TRUE(secondWaited);
  EXPECT_EQ(secondSaw, 1);
  EXPECT_FALSE(locks.IsHeld("series-a"));
}

TEST(KeyedLock, WaitingEndsWhenCancelled) {
  KeyedLock locks;
  KeyedLockGuard held(locks, "series-a");
  std::atomic<bool> cancel{false};
  std::thread canceller([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    cancel = true;
  });
  try {
    KeyedLockGuard waiting(locks, "series-a", &cancel);
    ADD_FAILURE() << "acquired a held key";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kCancelled);
  }
  canceller.join();
  EXPECT_TRUE(locks.IsHeld("series-a"));
}

}  // namespace enhance::plugin
