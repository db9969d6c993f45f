// SPDX-License-Identifier: GPL-3.0-or-later
#include "RestSupport.h"

#include <algorithm>
#include <functional>
#include <system_error>

#include "enhance/base/Error.h"
#include "enhance/base/LargeStack.h"

namespace enhance::plugin::rest {
namespace {

PluginContext* g_plugin = nullptr;

int HttpStatusFor(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::kBadInput:
    case ErrorKind::kUnsupported:
      return 400;
    case ErrorKind::kNotFound:
      return 404;
    case ErrorKind::kCancelled:
      return 409;
    case ErrorKind::kInternal:
      return 500;
  }
  return 500;
}

}  // namespace

PluginContext& Plugin() { return *g_plugin; }
void SetPlugin(PluginContext& plugin) { g_plugin = &plugin; }

void SendJson(OrthancPluginRestOutput* output, const Json::Value& body) {
  const std::string text = WriteJson(body);
  OrthancPluginAnswerBuffer(g_plugin->api.context(), output, text.data(),
                            static_cast<uint32_t>(text.size()), "application/json");
}

void SendError(OrthancPluginRestOutput* output, const char* url, int status,
               const std::string& kind, const std::string& message) {
  Json::Value body;
  body["HttpStatus"] = status;
  body["Kind"] = kind;
  body["Message"] = message;
  body["Uri"] = url;
  const std::string text = WriteJson(body);
  OrthancPluginSendHttpStatus(g_plugin->api.context(), output, static_cast<uint16_t>(status),
                              text.data(), static_cast<uint32_t>(text.size()));
}

bool AllowOnly(OrthancPluginRestOutput* output, const OrthancPluginHttpRequest* request,
               OrthancPluginHttpMethod method, const char* allowed) {
  if (request->method == method) return true;
  OrthancPluginSendMethodNotAllowed(g_plugin->api.context(), output, allowed);
  return false;
}

Json::Value RequestBody(const OrthancPluginHttpRequest* request) {
  const std::string text(static_cast<const char*>(request->body), request->bodySize);
  Json::Value body;
  try {
    body = ParseJson(text.empty() ? "{}" : text, "the request body");
  } catch (const std::exception& e) {
    throw Error(ErrorKind::kBadInput, e.what());
  }
  if (!body.isObject()) throw Error(ErrorKind::kBadInput, "the request body must be a JSON object");
  return body;
}

void CheckKeys(const Json::Value& body, const std::vector<std::string>& known) {
  for (const auto& key : body.getMemberNames()) {
    if (std::find(known.begin(), known.end(), key) == known.end()) {
      std::string list;
      for (const auto& k : known) list += (list.empty() ? "" : ", ") + k;
      throw Error(ErrorKind::kBadInput, "unknown key \"" + key + "\"; known keys are " + list);
    }
  }
}

Json::Value Strings(const std::vector<std::string>& items) {
  Json::Value list(Json::arrayValue);
  for (const auto& item : items) list.append(item);
  return list;
}

namespace {

// The handler, with every exception turned into an HTTP error answer.
OrthancPluginErrorCode Answer(Handler handler, OrthancPluginRestOutput* output, const char* url,
                              const OrthancPluginHttpRequest* request) {
  try {
    handler(output, url, request);
    return OrthancPluginErrorCode_Success;
  } catch (const Error& e) {
    try {
      SendError(output, url, HttpStatusFor(e.kind()), ToString(e.kind()), e.what());
      return OrthancPluginErrorCode_Success;
    } catch (...) {
    }
  } catch (const std::exception& e) {
    try {
      g_plugin->api.LogError(std::string(url) + ": " + e.what());
      SendError(output, url, 500, ToString(ErrorKind::kInternal), e.what());
      return OrthancPluginErrorCode_Success;
    } catch (...) {
    }
  } catch (...) {
  }
  return OrthancPluginErrorCode_Plugin;
}

}  // namespace

OrthancPluginErrorCode Guard(Handler handler, OrthancPluginRestOutput* output, const char* url,
                             const OrthancPluginHttpRequest* request) {
  // The web server's thread has too small a stack for a model load, a forward or a decode
  // (see LargeStack.h): the handler runs on one of the plugin's kept REST threads, or on a
  // thread of its own when all of them are busy, this one waiting. A kept thread has LibTorch
  // and oneDNN set up from its earlier requests: on a new thread each request paid for that
  // (tests/benchmark/domain_benchmark.py --rest).
  OrthancPluginErrorCode code = OrthancPluginErrorCode_Plugin;
  try {
    const std::function<void()> answer = [&] { code = Answer(handler, output, url, request); };
    ThreadCache::Task kept;
    try {
      kept = g_plugin->restThreads.Run(answer);
    } catch (const std::system_error&) {
      // No new kept thread: a thread of its own below, or the error saying why there is none.
    }
    if (kept.Valid()) {
      kept.Wait();
    } else {
      RunWithStack(kWorkStackBytes, answer);
    }
  } catch (const std::exception& e) {
    try {
      g_plugin->api.LogError(std::string(url) + ": " + e.what());
      SendError(output, url, 503, ToString(ErrorKind::kInternal), e.what());
      return OrthancPluginErrorCode_Success;
    } catch (...) {
    }
  } catch (...) {
  }
  return code;
}

}  // namespace enhance::plugin::rest
