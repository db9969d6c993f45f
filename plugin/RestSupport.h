// SPDX-License-Identifier: GPL-3.0-or-later
//
// What every REST route shares: the plugin's context, JSON answers, and the one wrapper
// that turns an exception into an HTTP error with a JSON body
// {"HttpStatus", "Kind", "Message", "Uri"} so that nothing crosses the C ABI.
#pragma once

#include <orthanc/OrthancCPlugin.h>

#include <string>
#include <vector>

#include "PluginContext.h"

namespace enhance::plugin::rest {

// The context the routes serve; set by RegisterRestRoutes before any route is registered.
PluginContext& Plugin();
void SetPlugin(PluginContext& plugin);

void SendJson(OrthancPluginRestOutput* output, const Json::Value& body);
void SendError(OrthancPluginRestOutput* output, const char* url, int status,
               const std::string& kind, const std::string& message);

// False (and a 405 answer sent) when the request's method is not `method`.
bool AllowOnly(OrthancPluginRestOutput* output, const OrthancPluginHttpRequest* request,
               OrthancPluginHttpMethod method, const char* allowed);

// The request body as a JSON object ({} when empty); Error(kBadInput) otherwise.
Json::Value RequestBody(const OrthancPluginHttpRequest* request);
// Error(kBadInput) naming the first key of `body` that is not in `known`.
void CheckKeys(const Json::Value& body, const std::vector<std::string>& known);
Json::Value Strings(const std::vector<std::string>& items);

using Handler = void (*)(OrthancPluginRestOutput*, const char*, const OrthancPluginHttpRequest*);
// Runs `handler` on a thread of a main thread's stack (kWorkStackBytes; the web server's
// own threads have 100 KB) and answers what it throws as an HTTP error: nothing crosses
// into Orthanc.
OrthancPluginErrorCode Guard(Handler handler, OrthancPluginRestOutput* output, const char* url,
                             const OrthancPluginHttpRequest* request);

template <Handler handler>
OrthancPluginErrorCode Protected(OrthancPluginRestOutput* output, const char* url,
                                 const OrthancPluginHttpRequest* request) {
  return Guard(handler, output, url, request);
}

}  // namespace enhance::plugin::rest
