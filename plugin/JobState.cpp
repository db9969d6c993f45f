// SPDX-License-Identifier: GPL-3.0-or-later
#include "JobState.h"

#include <algorithm>

namespace enhance::plugin {

void JobState::Reset(const Json::Value& initialContent) {
  std::lock_guard<std::mutex> lock(mutex_);
  content_ = initialContent;
  progress_ = 0.0;
}

void JobState::SetProgress(double fraction) {
  std::lock_guard<std::mutex> lock(mutex_);
  progress_ = std::clamp(fraction, 0.0, 1.0);
}

double JobState::Progress() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return progress_;
}

void JobState::Set(const std::string& key, const Json::Value& value) {
  std::lock_guard<std::mutex> lock(mutex_);
  content_[key] = value;
}

void JobState::Append(const std::string& key, const Json::Value& value) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (!content_[key].isArray()) content_[key] = Json::arrayValue;
  content_[key].append(value);
}

Json::Value JobState::Get(const std::string& key) const {
  std::lock_guard<std::mutex> lock(mutex_);
  return content_.isMember(key) ? content_[key] : Json::Value();
}

Json::Value JobState::Content() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return content_;
}

}  // namespace enhance::plugin
