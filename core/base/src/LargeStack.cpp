// SPDX-License-Identifier: GPL-3.0-or-later
#include "enhance/base/LargeStack.h"

#include <pthread.h>

#include <algorithm>
#include <climits>
#include <exception>
#include <optional>
#include <string>
#include <system_error>
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
    if (code != 0) Fail(code);
  }
  ~ThreadAttributes() { pthread_attr_destroy(&attributes_); }
  ThreadAttributes(const ThreadAttributes&) = delete;
  ThreadAttributes& operator=(const ThreadAttributes&) = delete;

  pthread_attr_t* get() { return &attributes_; }

  // As std::thread fails: its what() is the system's message for `code` alone.
  [[noreturn]] static void Fail(int code) {
    throw std::system_error(code, std::generic_category());
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
  if (code != 0) ThreadAttributes::Fail(code);
  code = pthread_create(&thread_, attributes.get(), RunCall<Call>, call_.get());
  if (code != 0) ThreadAttributes::Fail(code);
}

StackThread::~StackThread() {
  if (!joined_) pthread_join(thread_, nullptr);
}

void StackThread::Join() {
  if (joined_) return;
  joined_ = true;
  const int code = pthread_join(thread_, nullptr);
  if (code != 0) ThreadAttributes::Fail(code);
  if (call_->error) std::rethrow_exception(call_->error);
}

void RunWithStack(size_t stackBytes, const std::function<void()>& work) {
  std::optional<StackThread> thread;
  try {
    thread.emplace(stackBytes, [&work] { work(); });
  } catch (const std::system_error& e) {
    throw Error(ErrorKind::kInternal, std::string("cannot start a worker thread (") + e.what() +
                                          "); the server is out of memory or of threads");
  }
  thread->Join();
}

}  // namespace enhance
