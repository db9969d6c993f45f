// SPDX-License-Identifier: GPL-3.0-or-later
//
// Randomised CT phantoms for training and testing learned models: core's procedural
// phantom (MakeCtPhantom) with a random pixel spacing and slice spacing (so each slice
// sits at a different level between abdomen and thorax), random left-right and
// anterior-posterior flips, and random low-contrast lesions (ellipses of -100 to +100 HU
// relative to the surrounding soft tissue) that the base phantom does not have.
// Deterministic for a seed; thread-safe.
#pragma once

#include <cstdint>

#include "enhance/base/Volume.h"

namespace enhance::models {

struct TrainingPhantomOptions {
  int64_t size = 512;  // rows and columns
  int64_t slices = 4;
  double minPixelSpacing = 0.65;  // mm
  double maxPixelSpacing = 0.95;
  int maxLesions = 8;  // per slice
};

Volume MakeTrainingCtPhantom(uint64_t seed, const TrainingPhantomOptions& options);

}  // namespace enhance::models
