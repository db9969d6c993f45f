// SPDX-License-Identifier: GPL-3.0-or-later
#include "enhance/base/LargeStack.h"

#include <pthread.h>

#include <algorithm>
#include <climits>
#include <cstring>
#include <exception>
#include <string>
#include <utility>

#include "enhance/base/Error.h"

namespace enhance {
namespace {

// The thread's entry: runs the work, keeping what it throws for Join().
template <typename Call>
void* RunCall(void* argument) {
  Call& call = *static_cast<Call*>(argument);
  try {
    call.work();
  } catch (...) {
    call.error = std::current_exception();
  }
  return nullptr;
}

// Owns a pthread attribute object.
class ThreadAttributes {
 public:
  ThreadAttributes() {
    const int code = pthread_attr_init(&attributes_);
    if (code != 0) Fail("pthread_attr_init", code);
  }
  ~ThreadAttributes() { pthread_attr_destroy(&attributes_); }
  ThreadAttributes(const ThreadAttributes&) = delete;
  ThreadAttributes& operator=(const ThreadAttributes&) = delete;

  pthread_attr_t* get() { return &attributes_; }

  [[noreturn]] static void Fail(const char* what, int code) {
    throw Error(ErrorKind::kInternal, std::string("cannot start a worker thread (") + what + ": " +
                                          std::strerror(code) +
                                          "); the server is out of memory or of threads");
  }

 private:
  pthread_attr_t attributes_;
};

}  // namespace

StackThread::StackThread(size_t stackBytes, std::function<void()> work)
    : call_(std::make_unique<Call>()) {
  call_->work = std::move(work);
  ThreadAttributes attributes;
  const size_t bytes = std::max<size_t>(stackBytes, PTHREAD_STACK_MIN);
  int code = pthread_attr_setstacksize(attributes.get(), bytes);
  if (code != 0) ThreadAttributes::Fail("pthread_attr_setstacksize", code);
  code = pthread_create(&thread_, attributes.get(), RunCall<Call>, call_.get());
  if (code != 0) ThreadAttributes::Fail("pthread_create", code);
}

StackThread::~StackThread() {
  if (!joined_) pthread_join(thread_, nullptr);
}

void StackThread::Join() {
  if (joined_) return;
  joined_ = true;
  const int code = pthread_join(thread_, nullptr);
  if (code != 0) ThreadAttributes::Fail("pthread_join", code);
  if (call_->error) std::rethrow_exception(call_->error);
}

void RunWithStack(size_t stackBytes, const std::function<void()>& work) {
  StackThread thread(stackBytes, [&work] { work(); });
  thread.Join();
}

}  // namespace enhance
