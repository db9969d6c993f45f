// SPDX-License-Identifier: GPL-3.0-or-later
//
// enhance-fixture-model: writes a tiny TorchScript test model with its manifest, for the
// integration tests.  Usage: enhance-fixture-model KIND PARENT_FOLDER MANIFEST_JSON
// (KIND as in ModelFixtures.h; MANIFEST_JSON is the manifest's text).
#include <json/reader.h>

#include <iostream>
#include <memory>

#include "ModelFixtures.h"

int main(int argc, char** argv) {
  if (argc != 4) {
    std::cerr << "usage: enhance-fixture-model KIND PARENT_FOLDER MANIFEST_JSON\n";
    return 2;
  }
  try {
    Json::CharReaderBuilder builder;
    std::unique_ptr<Json::CharReader> reader(builder.newCharReader());
    Json::Value manifest;
    std::string errors;
    const std::string text = argv[3];
    if (!reader->parse(text.data(), text.data() + text.size(), &manifest, &errors)) {
      std::cerr << "enhance-fixture-model: bad manifest JSON: " << errors << "\n";
      return 2;
    }
    std::cout << enhance::testing::WriteFixtureModel(argv[2], argv[1], manifest).string() << "\n";
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "enhance-fixture-model: " << e.what() << "\n";
    return 1;
  }
}
