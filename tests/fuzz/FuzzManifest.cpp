// SPDX-License-Identifier: GPL-3.0-or-later
//
// libFuzzer target: hostile manifest.json text through ParseManifestText(), the function
// LoadManifest() uses when the model registry scans a models folder. A successful parse
// must give a model the rest of core/ can rely on.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>

#include "FuzzCheck.h"
#include "enhance/inference/ModelSpec.h"

namespace {

const std::filesystem::path kFolder = "/nonexistent/enhance-fuzz/model";

void CheckSpec(const enhance::ModelSpec& s) {
  using enhance::fuzz::Require;
  Require(!s.name.empty() && !s.version.empty() && !s.modalities.empty(), "required fields");
  Require(s.task == "denoise" || s.task == "superres" || s.task == "mr2ct", "a known task");
  Require(s.inPlaneScale == 1 || s.inPlaneScale == 2 || s.inPlaneScale == 4, "in-plane scale");
  Require(s.throughPlaneScale == 1 || s.throughPlaneScale == 2, "through-plane scale");
  Require(s.InputChannels() >= 1 && s.InputChannels() <= 17, "input channels");
  Require(s.tileSize == 0 || (s.tileSize >= 16 && 2 * s.tileOverlap < s.tileSize), "tiles");
  Require(s.maxBatch >= 1, "batch");
  Require(!s.hasOutputRange || s.outputMax > s.outputMin, "output range");
  const auto archive = s.archive.lexically_normal();
  if (archive.string().rfind(kFolder.string() + "/", 0) != 0) {
    enhance::fuzz::Bug("the archive lies outside the model's folder: " + archive.string());
  }
  for (const auto* n : {&s.input, &s.output}) {
    Require(std::isfinite(n->low) && std::isfinite(n->high), "finite normalisation bounds");
  }
  if (s.hasDomainCheck) {
    const enhance::DomainCheckSpec& d = s.domainCheck;
    const auto check = d.archive.lexically_normal();
    if (check.string().rfind(kFolder.string() + "/", 0) != 0 || check == archive) {
      enhance::fuzz::Bug(
          "the domain check's archive is not a file of its own in the model's "
          "folder: " +
          check.string());
    }
    Require(d.threshold > 0 && std::isfinite(d.threshold), "a positive threshold");
    Require(d.reconstructionSd > 0 && d.klSd > 0 && std::isfinite(d.reconstructionMean) &&
                std::isfinite(d.klMean) && std::isfinite(d.reconstructionSd) &&
                std::isfinite(d.klSd),
            "finite reference statistics");
    Require(d.sizeMultiple >= 1 && d.maxSlices >= 1, "a size multiple and a slice count");
    Require(d.downsample >= 1 && d.downsample <= 8, "a block size from 1 to 8");
    Require(std::isfinite(d.input.low) && std::isfinite(d.input.high), "finite bounds");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  enhance::fuzz::ExpectCleanOutcome((kFolder / "manifest.json").string() + ": ",
                                    [&] { CheckSpec(enhance::ParseManifestText(text, kFolder)); });
  return 0;
}
