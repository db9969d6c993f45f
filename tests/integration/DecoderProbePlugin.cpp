// SPDX-License-Identifier: GPL-3.0-or-later
//
// Test-only Orthanc plugin: POST a DICOM file to /enhance-test/decode and get back, as
// JSON, what the product's OrthancFrameDecoder makes of it inside a real Orthanc. Lets the
// integration tests check what Orthanc's decoders return (stored values, not rescaled).
// Never installed; built only for tests/integration.
#include <orthanc/OrthancCPlugin.h>

#include <algorithm>
#include <exception>
#include <sstream>
#include <string>

#include "OrthancFrameDecoder.h"

namespace {

OrthancPluginContext* g_context = nullptr;

std::string Escape(const std::string& text) {
  std::string out;
  for (char c : text) {
    if (c == '"' || c == '\\') out += '\\';
    out += (static_cast<unsigned char>(c) < 0x20) ? ' ' : c;
  }
  return out;
}

OrthancPluginErrorCode Decode(OrthancPluginRestOutput* output, const char*,
                              const OrthancPluginHttpRequest* request) {
  std::ostringstream json;
  try {
    if (request->method != OrthancPluginHttpMethod_Post) {
      OrthancPluginSendMethodNotAllowed(g_context, output, "POST");
      return OrthancPluginErrorCode_Success;
    }
    const std::string body(static_cast<const char*>(request->body), request->bodySize);
    const enhance::plugin::OrthancFrameDecoder decoder(g_context);
    const enhance::DecodedFrame frame = decoder.DecodeFirstFrame(body, "probe");
    json << "{\"Rows\":" << frame.rows << ",\"Columns\":" << frame.columns
         << ",\"IsSigned\":" << (frame.isSigned ? "true" : "false")
         << ",\"BitsPerSample\":" << frame.bitsPerSample << ",\"Values\":[";
    for (size_t i = 0; i < frame.values.size(); ++i) json << (i ? "," : "") << frame.values[i];
    json << "]}";
  } catch (const std::exception& e) {
    json.str("");
    json << "{\"Error\":\"" << Escape(e.what()) << "\"}";
  }
  const std::string text = json.str();
  OrthancPluginAnswerBuffer(g_context, output, text.data(), static_cast<uint32_t>(text.size()),
                            "application/json");
  return OrthancPluginErrorCode_Success;
}

}  // namespace

extern "C" {

ORTHANC_PLUGINS_API int32_t OrthancPluginInitialize(OrthancPluginContext* context) {
  g_context = context;
  OrthancPluginRegisterRestCallback(context, "/enhance-test/decode", Decode);
  return 0;
}

ORTHANC_PLUGINS_API void OrthancPluginFinalize() {}

ORTHANC_PLUGINS_API const char* OrthancPluginGetName() { return "enhance-decoder-probe"; }

ORTHANC_PLUGINS_API const char* OrthancPluginGetVersion() { return "0"; }
}
