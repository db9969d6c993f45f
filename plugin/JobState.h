// SPDX-License-Identifier: GPL-3.0-or-later
//
// The progress and the public content of one job, written by the job's worker thread and
// read by Orthanc's threads (GET /jobs/{id}). Thread-safe: every method locks.
#pragma once

#include <json/value.h>

#include <mutex>
#include <string>

namespace enhance::plugin {

class JobState {
 public:
  void Reset(const Json::Value& initialContent);
  void SetProgress(double fraction);
  double Progress() const;
  void Set(const std::string& key, const Json::Value& value);
  void Append(const std::string& key, const Json::Value& value);
  Json::Value Get(const std::string& key) const;
  Json::Value Content() const;

 private:
  mutable std::mutex mutex_;
  Json::Value content_ = Json::objectValue;
  double progress_ = 0.0;
};

}  // namespace enhance::plugin
