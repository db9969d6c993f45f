// SPDX-License-Identifier: GPL-3.0-or-later
#include "ThreadCache.h"

#include <gtest/gtest.h>

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

}  // namespace
}  // namespace enhance::plugin
