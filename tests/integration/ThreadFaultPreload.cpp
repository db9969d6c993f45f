// SPDX-License-Identifier: GPL-3.0-or-later
//
// Test-only library, loaded into Orthanc with LD_PRELOAD: while the file named by the
// environment variable ENHANCE_THREAD_FAULT exists, pthread_create fails with EAGAIN, as it
// does when a process is at its limit of threads, for the threads started without
// attributes (std::thread's, such as the plugin's writers) and for those the plugin starts
// with a stack of its own (StackThread, LargeStack.h: its kept job and REST threads,
// ThreadCache.h), told by their start routine's library. Other threads started with
// attributes (LibTorch's team of threads, which cannot do without them) are left alone.
// Never installed; built only for tests/integration.
#include <dlfcn.h>
#include <pthread.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace {

// Whether `start` is code of the plugin's library.
bool StartsInThePlugin(void* (*start)(void*)) {
  Dl_info info{};
  return dladdr(reinterpret_cast<void*>(start), &info) != 0 && info.dli_fname != nullptr &&
         std::strstr(info.dli_fname, "libOrthancEnhance") != nullptr;
}

}  // namespace

extern "C" int pthread_create(pthread_t* thread, const pthread_attr_t* attributes,
                              void* (*start)(void*), void* argument) {
  using Create = int (*)(pthread_t*, const pthread_attr_t*, void* (*)(void*), void*);
  static const auto real = reinterpret_cast<Create>(dlsym(RTLD_NEXT, "pthread_create"));
  const char* armed = std::getenv("ENHANCE_THREAD_FAULT");
  if (armed != nullptr && access(armed, F_OK) == 0 &&
      (attributes == nullptr || StartsInThePlugin(start))) {
    return EAGAIN;
  }
  return real(thread, attributes, start, argument);
}
