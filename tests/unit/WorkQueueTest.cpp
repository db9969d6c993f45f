// SPDX-License-Identifier: GPL-3.0-or-later
#include "WorkQueue.h"

#include <gtest/gtest.h>

#include <chrono>
#include <map>

namespace enhance::plugin {
namespace {

using namespace std::chrono_literals;

// Waits (bounded) until the predicate holds.
template <typename Predicate>
bool Eventually(Predicate predicate) {
  for (int i = 0; i < 2000; ++i) {
    if (predicate()) return true;
    std::this_thread::sleep_for(5ms);
  }
  return predicate();
}

}  // namespace

TEST(WorkQueue, ProcessesEveryItemOnce) {
  std::mutex mutex;
  std::map<std::string, int> seen;
  WorkQueue queue(2, [&](const std::string& id, const std::atomic<bool>&) {
    std::lock_guard<std::mutex> lock(mutex);
    seen[id]++;
  });
  queue.Start();
  for (int i = 0; i < 50; ++i) queue.Push("s" + std::to_string(i));
  ASSERT_TRUE(Eventually([&] {
    std::lock_guard<std::mutex> lock(mutex);
    return seen.size() == 50;
  }));
  ASSERT_TRUE(Eventually([&] { return queue.Running() == 0 && queue.Pending() == 0; }));
  for (const auto& [id, count] : seen) EXPECT_EQ(count, 1) << id;
}

TEST(WorkQueue, AWaitingItemIsNotQueuedTwice) {
  WorkQueue queue(1, [](const std::string&, const std::atomic<bool>&) {});
  EXPECT_TRUE(queue.Push("a"));
  EXPECT_FALSE(queue.Push("a"));
  EXPECT_TRUE(queue.Push("b"));
  EXPECT_EQ(queue.Pending(), 2u);
}

TEST(WorkQueue, ARunningItemCanBeQueuedAgainAndRunsAfterwardsNotConcurrently) {
  std::atomic<int> running{0};
  std::atomic<int> maxRunning{0};
  std::atomic<int> runs{0};
  std::atomic<bool> release{false};
  WorkQueue queue(2, [&](const std::string&, const std::atomic<bool>&) {
    const int now = ++running;
    maxRunning = std::max(maxRunning.load(), now);
    while (!release) std::this_thread::sleep_for(1ms);
    --running;
    ++runs;
  });
  queue.Start();
  queue.Push("a");
  ASSERT_TRUE(Eventually([&] { return queue.Running() == 1; }));
  EXPECT_TRUE(queue.Push("a"));  // new instances arrived while it ran
  std::this_thread::sleep_for(50ms);
  EXPECT_EQ(queue.Running(), 1u);  // the second worker did not take the same series
  release = true;
  ASSERT_TRUE(Eventually([&] { return runs == 2; }));
  EXPECT_EQ(maxRunning, 1);
}

TEST(WorkQueue, StopInterruptsHandlersAndRefusesNewWork) {
  std::atomic<bool> sawStop{false};
  WorkQueue queue(1, [&](const std::string&, const std::atomic<bool>& stopping) {
    while (!stopping) std::this_thread::sleep_for(1ms);
    sawStop = true;
  });
  queue.Start();
  queue.Push("long");
  ASSERT_TRUE(Eventually([&] { return queue.Running() == 1; }));
  queue.Stop();
  EXPECT_TRUE(sawStop);
  EXPECT_FALSE(queue.Push("late"));
}

TEST(WorkQueue, AThrowingHandlerDoesNotKillTheWorker) {
  std::atomic<int> calls{0};
  WorkQueue queue(1, [&](const std::string&, const std::atomic<bool>&) {
    ++calls;
    throw std::runtime_error("boom");
  });
  queue.Start();
  queue.Push("a");
  queue.Push("b");
  EXPECT_TRUE(Eventually([&] { return calls == 2; }));
}

}  // namespace enhance::plugin
