// SPDX-License-Identifier: GPL-3.0-or-later
//
// Full-dose / low-dose CT pairs simulated in the projection domain from randomised
// phantoms: each phantom slice is projected once, then acquired twice with independent
// noise (full dose and low dose) and reconstructed by filtered back-projection, so the
// two images differ only by their noise, as two scans of a patient who did not move.
// The phantoms of a set are drawn from consecutive seeds; training and test sets use
// disjoint seed ranges. Deterministic; thread-safe.
#pragma once

#include <cstdint>
#include <ostream>

#include "CtSimulator.h"
#include "TrainingPhantom.h"
#include "enhance/base/Volume.h"

namespace enhance::models {

struct CtDoseOptions {
  double fullDosePhotons = 1e6;  // incident photons per ray at full dose
  double doseFraction = 0.25;    // low dose = this fraction of the full dose
  CtScanner scanner;
};

struct CtPairs {
  Volume fullDose;   // HU; every phantom's slices one after the other
  Volume lowDose;    // same geometry
  Volume noiseFree;  // the same reconstruction without noise (only when asked for)
};

// Seeds firstSeed ... firstSeed + phantoms - 1. Progress goes to `log`.
CtPairs SimulateCtPairs(uint64_t firstSeed, int phantoms, const TrainingPhantomOptions& phantom,
                        const CtDoseOptions& dose, std::ostream& log, bool withNoiseFree = false);

// The sets the ct-denoise model is trained and evaluated on (seeds never shared).
CtPairs CtDenoiseTrainingSet(std::ostream& log);
CtPairs CtDenoiseTestSet(std::ostream& log);
// A few training phantoms to tune the classical baselines on.
CtPairs CtDenoiseTuningSet(std::ostream& log);
// Phantoms to choose training options on (e.g. ct-denoise-gan's adversarial weight), used
// neither for training nor for the test (seeds 800000-800001, with the noise-free images).
CtPairs CtDenoiseValidationSet(std::ostream& log);

}  // namespace enhance::models
