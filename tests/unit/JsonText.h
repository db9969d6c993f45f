// SPDX-License-Identifier: GPL-3.0-or-later
//
// JSON written inline in tests, parsed with the same reader Orthanc's configuration uses.
#pragma once

#include <gtest/gtest.h>
#include <json/reader.h>

#include <memory>
#include <string>

namespace enhance::testing {

inline Json::Value ParseJsonText(const std::string& text) {
  Json::Value value;
  Json::CharReaderBuilder builder;
  std::string errors;
  std::unique_ptr<Json::CharReader> reader(builder.newCharReader());
  EXPECT_TRUE(reader->parse(text.data(), text.data() + text.size(), &value, &errors)) << errors;
  return value;
}

}  // namespace enhance::testing
