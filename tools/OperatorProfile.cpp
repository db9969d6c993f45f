// SPDX-License-Identifier: GPL-3.0-or-later
#include "OperatorProfile.h"

#include <ATen/record_function.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>

namespace enhance::tools {
namespace {

using Clock = std::chrono::steady_clock;

struct Frame {
  Clock::time_point start;
  double children = 0;  // seconds spent in operators this one called
};

std::mutex totalsMutex;
std::unique_ptr<std::map<std::string, OperatorTime>> totals;  // while a profile is alive
thread_local std::vector<Frame> stack;

std::unique_ptr<at::ObserverContext> Enter(const at::RecordFunction&) {
  stack.push_back({Clock::now(), 0});
  return nullptr;
}

void Leave(const at::RecordFunction& function, at::ObserverContext*) {
  if (stack.empty()) return;  // entered before the profile began
  const Frame frame = stack.back();
  stack.pop_back();
  const double seconds = std::chrono::duration<double>(Clock::now() - frame.start).count();
  if (!stack.empty()) stack.back().children += seconds;
  std::lock_guard<std::mutex> lock(totalsMutex);
  if (!totals) return;
  OperatorTime& entry = (*totals)[function.name()];
  entry.selfSeconds += seconds - frame.children;
  ++entry.calls;
}

}  // namespace

OperatorProfile::OperatorProfile() {
  {
    std::lock_guard<std::mutex> lock(totalsMutex);
    if (totals) throw std::logic_error("OperatorProfile: one at a time");
    totals = std::make_unique<std::map<std::string, OperatorTime>>();
  }
  handle_ = at::addGlobalCallback(
      at::RecordFunctionCallback(Enter, Leave).scopes({at::RecordScope::FUNCTION}));
}

OperatorProfile::~OperatorProfile() {
  at::removeCallback(handle_);
  std::lock_guard<std::mutex> lock(totalsMutex);
  totals.reset();
}

std::vector<OperatorTime> OperatorProfile::Totals() const {
  std::vector<OperatorTime> result;
  {
    std::lock_guard<std::mutex> lock(totalsMutex);
    for (const auto& [name, time] : *totals) {
      result.push_back(time);
      result.back().name = name;
    }
  }
  std::sort(result.begin(), result.end(), [](const OperatorTime& a, const OperatorTime& b) {
    return a.selfSeconds > b.selfSeconds;
  });
  return result;
}

}  // namespace enhance::tools
