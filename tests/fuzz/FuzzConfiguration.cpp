// SPDX-License-Identifier: GPL-3.0-or-later
//
// libFuzzer target: a hostile Orthanc configuration through ParseConfiguration(), as the
// plugin parses it at start-up, and, when it is accepted, routing of a series described
// by the same input. The optional top-level members FuzzSeries, FuzzInstanceTags and
// FuzzInstanceMetadata stand for Orthanc's /series/{id} answer, the simplified tags and
// the metadata of one instance; Orthanc itself ignores unknown top-level keys, and so
// does the plugin.
#include <json/reader.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "FuzzCheck.h"
#include "PluginConfiguration.h"
#include "SeriesRouting.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const char* text = reinterpret_cast<const char*>(data);
  Json::CharReaderBuilder builder;  // the settings the plugin reads its configuration with
  const std::unique_ptr<Json::CharReader> reader(builder.newCharReader());
  Json::Value root;
  std::string errors;
  if (!reader->parse(text, text + size, &root, &errors)) return 0;  // jsoncpp's rejection

  enhance::fuzz::ExpectCleanOutcome("configuration Enhance", [&] {
    const enhance::plugin::PluginConfiguration config = enhance::plugin::ParseConfiguration(root);
    if (!root.isObject()) return;
    using enhance::plugin::SeriesFacts;
    // Orthanc's answers are objects; what a hostile sender controls is their values.
    const Json::Value series = root["FuzzSeries"].isObject() ? root["FuzzSeries"] : Json::Value();
    const SeriesFacts facts = enhance::plugin::ExtractSeriesFacts(series, root["FuzzInstanceTags"],
                                                                  root["FuzzInstanceMetadata"]);
    const auto decision = enhance::plugin::Route(config, facts);
    enhance::fuzz::Require(!decision.reason.empty(), "a routing decision has a reason");
    for (const auto& rule : config.rules) {
      std::string why;
      if (!enhance::plugin::RuleMatches(rule, facts, &why)) {
        enhance::fuzz::Require(!why.empty(), "a failed rule says why");
      }
    }
  });
  return 0;
}
