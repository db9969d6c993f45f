// SPDX-License-Identifier: GPL-3.0-or-later
#include "OrthancApi.h"

#include <json/reader.h>
#include <json/writer.h>

#include <functional>
#include <memory>

namespace enhance::plugin {
namespace {

// Owns a buffer the SDK allocated; frees it on every path.
class MemoryBuffer {
 public:
  explicit MemoryBuffer(OrthancPluginContext* context) : context_(context) {
    buffer_.data = nullptr;
    buffer_.size = 0;
  }
  ~MemoryBuffer() {
    if (buffer_.data != nullptr) OrthancPluginFreeMemoryBuffer(context_, &buffer_);
  }
  MemoryBuffer(const MemoryBuffer&) = delete;
  MemoryBuffer& operator=(const MemoryBuffer&) = delete;

  OrthancPluginMemoryBuffer* get() { return &buffer_; }
  std::string ToString() const {
    return buffer_.data == nullptr
               ? std::string()
               : std::string(static_cast<const char*>(buffer_.data), buffer_.size);
  }

 private:
  OrthancPluginContext* context_;
  OrthancPluginMemoryBuffer buffer_;
};

[[noreturn]] void Throw(OrthancPluginContext* context, OrthancPluginErrorCode code,
                        const std::string& what) {
  throw OrthancApiError(code, what + ": " + OrthancPluginGetErrorDescription(context, code));
}

}  // namespace

std::string OrthancApi::Get(const std::string& uri) const {
  MemoryBuffer buffer(context_);
  const OrthancPluginErrorCode code = OrthancPluginRestApiGet(context_, buffer.get(), uri.c_str());
  if (code != OrthancPluginErrorCode_Success) Throw(context_, code, "GET " + uri);
  std::string answer = buffer.ToString();
  if (heap_ != nullptr) heap_->Passed(answer.size());
  return answer;
}

Json::Value OrthancApi::GetJson(const std::string& uri) const {
  return ParseJson(Get(uri), "GET " + uri);
}

std::string OrthancApi::Post(const std::string& uri, const std::string& body) const {
  MemoryBuffer buffer(context_);
  const OrthancPluginErrorCode code =
      OrthancPluginRestApiPost(context_, buffer.get(), uri.c_str(), body.data(), body.size());
  if (code != OrthancPluginErrorCode_Success) Throw(context_, code, "POST " + uri);
  if (heap_ != nullptr) heap_->Passed(body.size());
  return buffer.ToString();
}

Json::Value OrthancApi::PostJson(const std::string& uri, const std::string& body) const {
  return ParseJson(Post(uri, body), "POST " + uri);
}

void OrthancApi::Delete(const std::string& uri) const {
  const OrthancPluginErrorCode code = OrthancPluginRestApiDelete(context_, uri.c_str());
  if (code != OrthancPluginErrorCode_Success) Throw(context_, code, "DELETE " + uri);
}

Json::Value OrthancApi::Configuration() const {
  std::unique_ptr<char, std::function<void(char*)>> text(OrthancPluginGetConfiguration(context_),
                                                         [this](char* p) {
                                                           if (p != nullptr)
                                                             OrthancPluginFreeString(context_, p);
                                                         });
  if (!text)
    throw OrthancApiError(OrthancPluginErrorCode_InternalError,
                          "cannot read the Orthanc configuration");
  return ParseJson(text.get(), "the Orthanc configuration");
}

void OrthancApi::LogInfo(const std::string& message) const {
  OrthancPluginLogInfo(context_, ("Enhance: " + message).c_str());
}

void OrthancApi::LogWarning(const std::string& message) const {
  OrthancPluginLogWarning(context_, ("Enhance: " + message).c_str());
}

void OrthancApi::LogError(const std::string& message) const {
  OrthancPluginLogError(context_, ("Enhance: " + message).c_str());
}

Json::Value ParseJson(const std::string& text, const std::string& what) {
  Json::CharReaderBuilder builder;
  std::unique_ptr<Json::CharReader> reader(builder.newCharReader());
  Json::Value value;
  std::string errors;
  if (!reader->parse(text.data(), text.data() + text.size(), &value, &errors)) {
    throw OrthancApiError(OrthancPluginErrorCode_BadJson, what + " is not valid JSON: " + errors);
  }
  return value;
}

std::string WriteJson(const Json::Value& value) {
  Json::StreamWriterBuilder builder;
  builder["indentation"] = "  ";
  return Json::writeString(builder, value);
}

}  // namespace enhance::plugin
