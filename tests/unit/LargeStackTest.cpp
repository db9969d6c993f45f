// SPDX-License-Identifier: GPL-3.0-or-later
#include "enhance/base/LargeStack.h"

#include <gtest/gtest.h>
#include <pthread.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <thread>

#include "enhance/base/Error.h"

namespace enhance {
namespace {

// About `depth` KiB of stack: each frame holds a 1 KiB buffer the compiler cannot drop.
int Deep(int depth) {
  volatile char buffer[1024];
  buffer[0] = static_cast<char>(depth);
  if (depth == 0) return buffer[0];
  return Deep(depth - 1) + buffer[0];
}

size_t ThisThreadsStack() {
  pthread_attr_t attributes;
  if (pthread_getattr_np(pthread_self(), &attributes) != 0) return 0;
  size_t bytes = 0;
  pthread_attr_getstacksize(&attributes, &bytes);
  pthread_attr_destroy(&attributes);
  return bytes;
}

// Runs `body` on a thread of `stackBytes`, like a web server's request thread.
template <typename Body>
void OnSmallStack(size_t stackBytes, Body body) {
  struct Argument {
    Body* body;
  } argument{&body};
  pthread_attr_t attributes;
  ASSERT_EQ(pthread_attr_init(&attributes), 0);
  ASSERT_EQ(pthread_attr_setstacksize(&attributes, stackBytes), 0);
  pthread_t thread;
  const int code = pthread_create(
      &thread, &attributes,
      [](void* a) -> void* {
        (*static_cast<Argument*>(a)->body)();
        return nullptr;
      },
      &argument);
  pthread_attr_destroy(&attributes);
  ASSERT_EQ(code, 0);
  pthread_join(thread, nullptr);
}

constexpr size_t kSmall = 512 * 1024;

}  // namespace

TEST(LargeStack, WorkTooDeepForTheCallersStackRuns) {
  int result = 0;
  size_t stack = 0;
  OnSmallStack(kSmall, [&] {
    RunWithStack(kWorkStackBytes, [&] {
      stack = ThisThreadsStack();
      result = Deep(2048);  // about 2 MiB
    });
  });
  EXPECT_GE(stack, kWorkStackBytes);
  EXPECT_NE(result, 0);
}

// The same work run directly on the small stack overflows it: the case RunWithStack is for.
TEST(LargeStackDeathTest, TheSameWorkOverflowsTheSmallStack) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(OnSmallStack(kSmall,
                            [] {
                              const int result = Deep(2048);
                              std::fprintf(stderr, "returned %d\n", result);
                              std::exit(0);
                            }),
               "");
}

TEST(LargeStack, RethrowsWhatTheWorkThrewUnchanged) {
  try {
    RunWithStack(kWorkStackBytes,
                 [] { throw Error(ErrorKind::kBadInput, "series 1.2.3: no instances"); });
    FAIL() << "nothing thrown";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kBadInput);
    EXPECT_STREQ(e.what(), "series 1.2.3: no instances");
  }
  EXPECT_THROW(RunWithStack(kWorkStackBytes, [] { throw std::out_of_range("index"); }),
               std::out_of_range);
  EXPECT_THROW(RunWithStack(kWorkStackBytes, [] { throw 7; }), int);
}

TEST(LargeStack, CallsFromManyThreadsAtOnceEachRunTheirOwnWork) {
  constexpr int kThreads = 8;
  int results[kThreads] = {};
  pthread_t threads[kThreads];
  struct Slot {
    int* result;
    int index;
  } slots[kThreads];
  for (int i = 0; i < kThreads; ++i) {
    slots[i] = {&results[i], i};
    ASSERT_EQ(pthread_create(
                  &threads[i], nullptr,
                  [](void* a) -> void* {
                    auto* slot = static_cast<Slot*>(a);
                    RunWithStack(kWorkStackBytes, [slot] { *slot->result = slot->index + 1; });
                    return nullptr;
                  },
                  &slots[i]),
              0);
  }
  for (auto& thread : threads) pthread_join(thread, nullptr);
  for (int i = 0; i < kThreads; ++i) EXPECT_EQ(results[i], i + 1);
}

// A StackThread has its stated stack; its destructor waits for the work, and Join() returns
// what the work threw.
TEST(LargeStack, AStackThreadHasItsStackAndIsJoined) {
  std::atomic<bool> done{false};
  size_t stack = 0;
  {
    StackThread thread(kWorkStackBytes, [&] {
      stack = ThisThreadsStack();
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      done = Deep(2048) != 0;
    });
  }  // joined here
  EXPECT_TRUE(done);
  EXPECT_GE(stack, kWorkStackBytes);
  StackThread failing(kWorkStackBytes, [] { throw Error(ErrorKind::kNotFound, "gone"); });
  try {
    failing.Join();
    FAIL() << "nothing thrown";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kNotFound);
  }
  failing.Join();  // once only: nothing more to wait for or to throw
  // Dropped, unjoined: the destructor joins and drops what the work threw.
  StackThread dropped(kWorkStackBytes, [] { throw std::runtime_error("dropped"); });
}

}  // namespace enhance
