// SPDX-License-Identifier: GPL-3.0-or-later
#include "HeapTrimmer.h"

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace enhance::plugin {

void HeapTrimmer::Passed(size_t bytes) {
  if (every_ == 0 || bytes == 0) return;
  const size_t before = passed_.fetch_add(bytes);
  // One caller per crossed multiple of every_ trims; the others go on.
  if (before / every_ != (before + bytes) / every_) Trim();
}

bool HeapTrimmer::Trim() {
  ++trims_;
#if defined(__GLIBC__)
  return malloc_trim(0) != 0;
#else
  return false;
#endif
}

}  // namespace enhance::plugin
