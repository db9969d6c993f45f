// SPDX-License-Identifier: GPL-3.0-or-later
#include "enhance/base/LruCache.h"

#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace enhance {
namespace {

// A cache of strings whose builds are counted.
struct Counted {
  LruCache<int, const std::string> cache;
  int builds = 0;
  explicit Counted(size_t capacity) : cache(capacity) {}
  std::shared_ptr<const std::string> Get(int key) {
    return cache.Get(key, [&] {
      ++builds;
      return std::make_shared<const std::string>("value " + std::to_string(key));
    });
  }
};

TEST(LruCache, BuildsEachKeyOnceAndSharesItsValue) {
  Counted c(4);
  const auto first = c.Get(1);
  const auto again = c.Get(1);
  EXPECT_EQ(*first, "value 1");
  EXPECT_EQ(first.get(), again.get());
  EXPECT_EQ(c.builds, 1);
  EXPECT_EQ(*c.Get(2), "value 2");
  EXPECT_EQ(c.builds, 2);
  EXPECT_EQ(c.cache.Size(), 2u);
  EXPECT_EQ(c.cache.Capacity(), 4u);
}

TEST(LruCache, ForgetsTheLeastRecentlyUsedWhenFull) {
  Counted c(3);
  c.Get(1);
  c.Get(2);
  c.Get(3);
  c.Get(1);  // 2 is now the least recently used
  c.Get(4);  // and goes
  EXPECT_EQ(c.cache.Size(), 3u);
  EXPECT_EQ(c.builds, 4);
  c.Get(1);
  c.Get(3);
  c.Get(4);
  EXPECT_EQ(c.builds, 4) << "the entries used since were kept";
  c.Get(2);
  EXPECT_EQ(c.builds, 5) << "the forgotten entry is built again";
  EXPECT_EQ(c.cache.Size(), 3u);
}

TEST(LruCache, KeepsTheEntriesInUseWhileOthersComeAndGo) {
  // A node's hot convolutions against a stream of one-off shapes: a cache that emptied
  // itself when full would build the hot ones again each time.
  Counted c(8);
  for (int hot = 0; hot < 4; ++hot) c.Get(hot);
  for (int once = 100; once < 200; ++once) {
    for (int hot = 0; hot < 4; ++hot) c.Get(hot);
    c.Get(once);
    EXPECT_LE(c.cache.Size(), 8u);
  }
  EXPECT_EQ(c.builds, 4 + 100);
}

TEST(LruCache, AForgottenValueStaysValidWhileHeld) {
  Counted c(1);
  const auto held = c.Get(1);
  c.Get(2);
  EXPECT_EQ(c.cache.Size(), 1u);
  EXPECT_EQ(*held, "value 1");
}

TEST(LruCache, AFailedBuildLeavesTheCacheAsItWas) {
  Counted c(2);
  c.Get(1);
  EXPECT_THROW(c.cache.Get(2,
                           []() -> std::shared_ptr<const std::string> {
                             throw std::runtime_error("no memory for the primitive");
                           }),
               std::runtime_error);
  EXPECT_EQ(c.cache.Size(), 1u);
  EXPECT_EQ(*c.Get(2), "value 2");
  c.Get(1);
  EXPECT_EQ(c.builds, 2) << "entry 1 was neither forgotten nor built again";
}

TEST(LruCache, RefusesACapacityOfZero) {
  EXPECT_THROW((LruCache<int, int>(0)), std::invalid_argument);
}

TEST(LruCache, ThreadsSharingItGetOneValuePerKey) {
  LruCache<int, const int> cache(16);
  std::atomic<int> builds{0};
  constexpr int kThreads = 8, kRounds = 2000;
  std::vector<std::thread> threads;
  std::atomic<bool> mismatch{false};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kRounds; ++i) {
        const int key = (i * 7 + t) % 24;  // more keys than the capacity: entries come and go
        const auto value = cache.Get(key, [&] {
          ++builds;
          return std::make_shared<const int>(key * 10);
        });
        if (*value != key * 10) mismatch = true;
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_FALSE(mismatch);
  EXPECT_LE(cache.Size(), 16u);
  EXPECT_GE(builds.load(), 24);
}

}  // namespace
}  // namespace enhance
