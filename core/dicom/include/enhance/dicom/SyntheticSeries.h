// SPDX-License-Identifier: GPL-3.0-or-later
//
// Encodes a CT volume in HU as an original CT Image Storage series (one Part 10 file
// per slice, explicit VR little endian, 12 bits stored, intercept -1024), as a scanner
// would. Sample data for the demo, the tests and the benchmarks. Stateless; thread-safe.
#pragma once

#include <string>
#include <vector>

#include "enhance/base/Volume.h"

namespace enhance {

struct SyntheticSeriesOptions {
  std::string patientId = "ENH-PHANTOM-001";
  std::string patientName = "PHANTOM^CT";
  std::string studyDescription = "Phantom CT chest-abdomen";
  std::string seriesDescription = "Phantom low-dose chest-abdomen";
  std::string studyInstanceUid;   // generated when empty
  std::string seriesInstanceUid;  // generated when empty
  int seriesNumber = 2;
};

// Values are clamped to the scanner range [-1024, 3071] HU.
std::vector<std::string> WriteSyntheticCtSeries(const Volume& volume,
                                                const SyntheticSeriesOptions& options);

}  // namespace enhance
