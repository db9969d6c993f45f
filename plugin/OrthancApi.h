// SPDX-License-Identifier: GPL-3.0-or-later
//
// A small C++ face on the Orthanc plugin SDK: REST calls into Orthanc's own API with
// RAII buffers, logging, and the global configuration. Every failure becomes an
// OrthancApiError carrying the SDK error code and the URI.
//
// Thread-safety: the SDK functions used here may be called from any thread. Do not call
// the REST functions from Orthanc's change or stored-instance callbacks (the SDK warns
// that this can deadlock): call them from worker threads.
#pragma once

#include <json/value.h>
#include <orthanc/OrthancCPlugin.h>

#include <stdexcept>
#include <string>

#include "HeapTrimmer.h"

namespace enhance::plugin {

class OrthancApiError : public std::runtime_error {
 public:
  OrthancApiError(OrthancPluginErrorCode code, const std::string& message)
      : std::runtime_error(message), code_(code) {}
  OrthancPluginErrorCode code() const { return code_; }

 private:
  OrthancPluginErrorCode code_;
};

class OrthancApi {
 public:
  // `heap`, when given, counts the bytes of every answer and body that passes (it must
  // outlive this object).
  explicit OrthancApi(OrthancPluginContext* context, HeapTrimmer* heap = nullptr)
      : context_(context), heap_(heap) {}

  OrthancPluginContext* context() const { return context_; }

  std::string Get(const std::string& uri) const;
  Json::Value GetJson(const std::string& uri) const;
  std::string Post(const std::string& uri, const std::string& body) const;
  Json::Value PostJson(const std::string& uri, const std::string& body) const;
  void Delete(const std::string& uri) const;

  // The whole Orthanc configuration as JSON.
  Json::Value Configuration() const;

  void LogInfo(const std::string& message) const;
  void LogWarning(const std::string& message) const;
  void LogError(const std::string& message) const;

 private:
  OrthancPluginContext* context_;
  HeapTrimmer* heap_;
};

Json::Value ParseJson(const std::string& text, const std::string& what);
std::string WriteJson(const Json::Value& value);

}  // namespace enhance::plugin
