// SPDX-License-Identifier: GPL-3.0-or-later
#include "ThreadCache.h"

#include <gtest/gtest.h>
#include <pthread.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <set>
#include <stdexcept>
#include <thread>
#include <vector>

namespace enhance::plugin {
namespace {

TEST(ThreadCache, RunsOneAfterAnotherOnTheSameThread) {
  ThreadCache cache;
  std::set<std::thread::id> ran;
  for (int i = 0; i < 5; ++i) {
    std::thread::id id;
    cache.Run([&id] { id = std::this_thread::get_id(); }).Wait();
    ran.insert(id);
  }
  EXPECT_EQ(ran.size(), 1u);
  EXPECT_EQ(ran.count(std::this_thread::get_id()), 0u);
  EXPECT_EQ(cache.Threads(), 1u);
}

TEST(ThreadCache, StartsAThreadForEachPieceOfWorkRunningAtOnce) {
  ThreadCache cache;
  std::mutex mutex;
  std::condition_variable changed;
  int running = 0;
  bool release = false;
  auto work = [&] {
    std::unique_lock<std::mutex> lock(mutex);
    ++running;
    changed.notify_all();
    changed.wait(lock, [&] { return release; });
  };
  std::vector<ThreadCache::Task> tasks;
  for (int i = 0; i < 3; ++i) tasks.push_back(cache.Run(work));
  {
    // All three run at once: none waits for another to end.
    std::unique_lock<std::mutex> lock(mutex);
    ASSERT_TRUE(changed.wait_for(lock, std::chrono::seconds(10), [&] { return running == 3; }));
    release = true;
  }
  changed.notify_all();
  for (const auto& task : tasks) task.Wait();
  EXPECT_EQ(cache.Threads(), 3u);
  // The three are kept: three more pieces need no new thread.
  for (int i = 0; i < 3; ++i) cache.Run([] {}).Wait();
  EXPECT_EQ(cache.Threads(), 3u);
}

TEST(ThreadCache, WaitReturnsOnlyOnceTheWorkHasReturnedAndDropsWhatItThrows) {
  ThreadCache cache;
  std::atomic<bool> done{false};
  const ThreadCache::Task slow = cache.Run([&done] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    done = true;
  });
  slow.Wait();
  EXPECT_TRUE(done);
  slow.Wait();  // again, and at once
  cache.Run([] { throw std::runtime_error("dropped"); }).Wait();
  std::atomic<int> after{0};
  cache.Run([&after] { after = 1; }).Wait();  // the thread survived
  EXPECT_EQ(after, 1);
  EXPECT_EQ(cache.Threads(), 1u);
  ThreadCache::Task empty;
  EXPECT_FALSE(empty.Valid());
  empty.Wait();
}

TEST(ThreadCache, TheDestructorWaitsForTheWorkStillRunning) {
  std::atomic<bool> done{false};
  {
    ThreadCache cache;
    cache.Run([&done] {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      done = true;
    });
  }
  EXPECT_TRUE(done);
}

// With a limit, work that finds every thread busy and the limit reached is not run (an
// empty Task): the caller runs it elsewhere. A thread that is free again takes the next.
TEST(ThreadCache, AtItsLimitRunsNothingAndSaysSo) {
  ThreadCache cache(1);
  std::mutex mutex;
  std::condition_variable changed;
  bool running = false, release = false;
  const ThreadCache::Task busy = cache.Run([&] {
    std::unique_lock<std::mutex> lock(mutex);
    running = true;
    changed.notify_all();
    changed.wait(lock, [&] { return release; });
  });
  ASSERT_TRUE(busy.Valid());
  {
    std::unique_lock<std::mutex> lock(mutex);
    ASSERT_TRUE(changed.wait_for(lock, std::chrono::seconds(10), [&] { return running; }));
  }
  bool ran = false;
  const ThreadCache::Task refused = cache.Run([&ran] { ran = true; });
  EXPECT_FALSE(refused.Valid());
  {
    std::lock_guard<std::mutex> lock(mutex);
    release = true;
  }
  changed.notify_all();
  busy.Wait();
  EXPECT_FALSE(ran);
  const ThreadCache::Task next = cache.Run([&ran] { ran = true; });
  ASSERT_TRUE(next.Valid());
  next.Wait();
  EXPECT_TRUE(ran);
  EXPECT_EQ(cache.Threads(), 1u);
}

// Its threads hold a model's forward or a decode whatever the process's stack limit.
TEST(ThreadCache, ItsThreadsHaveTheWorkStack) {
  ThreadCache cache;
  size_t bytes = 0;
  cache
      .Run([&bytes] {
        pthread_attr_t attributes;
        if (pthread_getattr_np(pthread_self(), &attributes) != 0) return;
        pthread_attr_getstacksize(&attributes, &bytes);
        pthread_attr_destroy(&attributes);
      })
      .Wait();
  EXPECT_GE(bytes, kWorkStackBytes);
}

}  // namespace
}  // namespace enhance::plugin
