// SPDX-License-Identifier: GPL-3.0-or-later
//
// Gives the memory the C library holds free back to the system as files pass between
// the plugin and Orthanc.
//
// Why: Orthanc keeps the files it receives, reads and stores in its storage cache
// (MaximumStorageCacheSize, 128 MB by default). When a job reads a series and stores its
// derived series, the cache turns over: entries allocated by the threads that received
// the series are freed and new ones are allocated by the job's thread. glibc returns a
// freed block to the heap of the thread that allocated it and gives a heap's memory back
// to the system only from its top, so the evicted entries stay resident in heaps that
// nothing refills. Measured on a 256-slice 512x512 CT series (docs/performance.md): 205-
// 231 MiB free but resident by the end of inference, over a third of Orthanc's peak
// above idle.
// malloc_trim() hands such free pages back; it takes about 1 ms, so it runs once per
// `everyBytes` of files (the plugin's 8 MiB: sixteen 512x512 CT slices), not per file.
//
// Thread-safe: Passed() and Trim() may be called from any thread at once.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace enhance::plugin {

class HeapTrimmer {
 public:
  // everyBytes 0: never trims.
  explicit HeapTrimmer(size_t everyBytes) : every_(everyBytes) {}

  // Counts the bytes of a file read from or handed to Orthanc; trims each time another
  // `everyBytes` have passed.
  void Passed(size_t bytes);

  // Gives free heap memory back to the system now. Returns whether any was given back
  // (always false where the C library has no malloc_trim).
  bool Trim();

  uint64_t trims() const { return trims_.load(); }

 private:
  const size_t every_;
  std::atomic<size_t> passed_{0};
  std::atomic<uint64_t> trims_{0};
};

}  // namespace enhance::plugin
