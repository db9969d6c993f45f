// SPDX-License-Identifier: GPL-3.0-or-later
#include "HeapTrimmer.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

namespace enhance::plugin {
namespace {

#if defined(__SANITIZE_ADDRESS__)
constexpr bool kGlibcHeap = false;  // AddressSanitizer has a heap of its own
#elif defined(__GLIBC__)
constexpr bool kGlibcHeap = true;
#else
constexpr bool kGlibcHeap = false;
#endif

// This process's resident memory, in bytes.
size_t ResidentBytes() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stoul(line.substr(6)) * 1024;
  }
  ADD_FAILURE() << "no VmRSS in /proc/self/status";
  return 0;
}

TEST(HeapTrimmer, TrimsOncePerMultipleOfItsStep) {
  HeapTrimmer trimmer(100);
  trimmer.Passed(60);
  EXPECT_EQ(trimmer.trims(), 0u);
  trimmer.Passed(40);  // 100
  EXPECT_EQ(trimmer.trims(), 1u);
  trimmer.Passed(0);
  trimmer.Passed(99);  // 199
  EXPECT_EQ(trimmer.trims(), 1u);
  trimmer.Passed(301);  // 500: one call, one trim, however many steps it spans
  EXPECT_EQ(trimmer.trims(), 2u);

  HeapTrimmer never(0);
  never.Passed(size_t{1} << 30);
  EXPECT_EQ(never.trims(), 0u);
}

TEST(HeapTrimmer, CountsEveryStepOnceAcrossThreads) {
  HeapTrimmer trimmer(1000);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&trimmer] {
      for (int i = 0; i < 2500; ++i) trimmer.Passed(10);
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(trimmer.trims(), 100u);  // 4 x 2500 x 10 bytes, a trim per 1000
}

// What happens to Orthanc's storage cache: blocks allocated by one thread and freed
// between blocks still in use stay resident until the heap is trimmed.
TEST(HeapTrimmer, GivesFreedHeapMemoryBackToTheSystem) {
  if (!kGlibcHeap) GTEST_SKIP() << "malloc_trim is glibc's";
  constexpr size_t kBlock = 64 * 1024;  // below glibc's smallest mmap threshold
  constexpr size_t kBlocks = 512;       // 32 MiB
  std::vector<void*> blocks;
  std::vector<void*> pins;
  // A thread of its own, with a heap of its own, as Orthanc's DICOM threads have.
  std::thread filler([&] {
    for (size_t i = 0; i < kBlocks; ++i) {
      blocks.push_back(std::malloc(kBlock));
      std::memset(blocks.back(), 1, kBlock);
      pins.push_back(std::malloc(64));  // still in use: the heap cannot shrink from its top
    }
  });
  filler.join();
  for (void* block : blocks) std::free(block);
  const size_t before = ResidentBytes();
  HeapTrimmer trimmer(0);
  EXPECT_TRUE(trimmer.Trim());
  const size_t after = ResidentBytes();
  for (void* pin : pins) std::free(pin);
  EXPECT_GE(before, after + kBlock * kBlocks / 2)
      << "resident before the trim " << before << " bytes, after " << after;
  EXPECT_EQ(trimmer.trims(), 1u);
}

}  // namespace
}  // namespace enhance::plugin
