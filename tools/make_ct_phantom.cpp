// SPDX-License-Identifier: GPL-3.0-or-later
//
// enhance-make-phantom: writes a synthetic but realistic CT series (one DICOM file per
// slice, CT Image Storage) from the procedural phantom in core/. The demo, the tests
// and the benchmarks use it so that sample data never has to be downloaded.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>

#include "enhance/dicom/SyntheticSeries.h"
#include "enhance/samples/Phantom.h"

namespace {

constexpr const char* kUsage =
    "usage: enhance-make-phantom --out DIR [--rows N] [--columns N] [--slices N]\n"
    "         [--pixel-spacing MM] [--slice-spacing MM] [--noise HU] [--seed N]\n"
    "         [--patient-id ID] [--patient-name NAME] [--description TEXT]\n"
    "Writes DIR/CT0001.dcm ... one CT Image Storage file per slice.\n"
    "Defaults: 512x512, 32 slices, 0.8 mm pixels, 2.5 mm slices, noise 25 HU, seed 1.\n";

}  // namespace

int main(int argc, char** argv) {
  std::string out;
  enhance::PhantomOptions phantom;
  phantom.noiseSigmaHu = 25.0;
  enhance::SyntheticSeriesOptions series;
  try {
    for (int i = 1; i < argc; ++i) {
      const std::string arg = argv[i];
      if (arg == "--help" || arg == "-h") {
        std::cout << kUsage;
        return 0;
      }
      if (i + 1 >= argc) throw std::invalid_argument("missing value after " + arg);
      const std::string value = argv[++i];
      if (arg == "--out")
        out = value;
      else if (arg == "--rows")
        phantom.rows = std::stoll(value);
      else if (arg == "--columns")
        phantom.columns = std::stoll(value);
      else if (arg == "--slices")
        phantom.slices = std::stoll(value);
      else if (arg == "--pixel-spacing")
        phantom.pixelSpacing = std::stod(value);
      else if (arg == "--slice-spacing")
        phantom.sliceSpacing = std::stod(value);
      else if (arg == "--noise")
        phantom.noiseSigmaHu = std::stod(value);
      else if (arg == "--seed")
        phantom.seed = std::stoull(value);
      else if (arg == "--patient-id")
        series.patientId = value;
      else if (arg == "--patient-name")
        series.patientName = value;
      else if (arg == "--description")
        series.seriesDescription = value;
      else
        throw std::invalid_argument("unknown option " + arg);
    }
    if (out.empty()) throw std::invalid_argument("--out DIR is required");
  } catch (const std::exception& e) {
    std::cerr << "enhance-make-phantom: " << e.what() << "\n" << kUsage;
    return 2;
  }

  try {
    std::filesystem::create_directories(out);
    const enhance::Volume volume = enhance::MakeCtPhantom(phantom);
    const auto files = enhance::WriteSyntheticCtSeries(volume, series);
    for (size_t k = 0; k < files.size(); ++k) {
      char name[32];
      std::snprintf(name, sizeof(name), "CT%04zu.dcm", k + 1);
      const auto path = std::filesystem::path(out) / name;
      std::ofstream stream(path, std::ios::binary);
      stream.write(files[k].data(), static_cast<std::streamsize>(files[k].size()));
      if (!stream) throw std::runtime_error("cannot write " + path.string());
    }
    std::cout << "wrote " << files.size() << " slices of " << volume.rows << "x" << volume.columns
              << " to " << out << "\n";
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "enhance-make-phantom: " << e.what() << "\n";
    return 1;
  }
}
