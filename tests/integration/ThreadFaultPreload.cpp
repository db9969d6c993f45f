// SPDX-License-Identifier: GPL-3.0-or-later
//
// Test-only library, loaded into Orthanc with LD_PRELOAD: while the file named by the
// environment variable ENHANCE_THREAD_FAULT exists, pthread_create fails with EAGAIN, as it
// does when a process is at its limit of threads, for the threads started without
// attributes (std::thread's, such as the plugin's kept job threads, ThreadCache.h). Threads
// started with attributes (LibTorch's, the plugin's large-stack REST threads) are left alone.
// Never installed; built only for tests/integration.
#include <dlfcn.h>
#include <pthread.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>

extern "C" int pthread_create(pthread_t* thread, const pthread_attr_t* attributes,
                              void* (*start)(void*), void* argument) {
  using Create = int (*)(pthread_t*, const pthread_attr_t*, void* (*)(void*), void*);
  static const auto real = reinterpret_cast<Create>(dlsym(RTLD_NEXT, "pthread_create"));
  const char* armed = std::getenv("ENHANCE_THREAD_FAULT");
  if (attributes == nullptr && armed != nullptr && access(armed, F_OK) == 0) return EAGAIN;
  return real(thread, attributes, start, argument);
}
