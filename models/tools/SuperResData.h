// SPDX-License-Identifier: GPL-3.0-or-later
//
// Training and test pairs of the shipped super-resolution models.
//
// CT in-plane x2 (ct-superres-x2): slices of the randomised CT phantoms (TrainingPhantom)
// blurred by a Gaussian point-spread function of 0.7 px standard deviation, as a
// reconstruction kernel would, are the high-resolution images; their 2x2 means (an
// anti-aliased decimation to pixels twice as large, same field of view) are the inputs.
//
// CT through-plane x2 (ct-superres-z2): thin slices of the CT phantom (0.625-1.25 mm
// apart) with random 3-D lesions (spheroids of 1.5-8 mm radius: lung nodules and
// low-contrast soft-tissue lesions) are averaged four by four into thick slices, each
// as thick as the distance between two of them (2.5-5 mm). The target of the gap between
// thick slices k and k + 1 is the thick slice of the same thickness centred half-way:
// the mean of the four thin slices in the middle.
//
// Phantoms of a set come from consecutive seeds; training and test sets use disjoint
// seed ranges. Deterministic; thread-safe.
#pragma once

#include <cstdint>
#include <ostream>
#include <vector>

#include "enhance/base/Volume.h"

namespace enhance::models {

// In-plane: every phantom's slices stacked.
struct SuperResPairs {
  Volume low;   // 2x2 means
  Volume high;  // high-resolution slices
};

// Through-plane: one entry per phantom, each with its own geometry.
struct ThroughPlanePairs {
  std::vector<Volume> thick;  // thick slices, HU
  std::vector<Volume> gaps;   // thick.slices - 1 targets, one per gap, HU
};

// In-plane x2 CT pairs: `phantoms` phantoms of `slices` slices from firstSeed on.
SuperResPairs SimulateCtSuperRes(uint64_t firstSeed, int phantoms, int64_t slices,
                                 std::ostream& log);
SuperResPairs CtSuperResTrainingSet(std::ostream& log);
SuperResPairs CtSuperResTestSet(std::ostream& log);

// Through-plane x2 CT: per phantom `thickSlices` thick slices (4 thin slices each).
ThroughPlanePairs SimulateCtThroughPlane(uint64_t firstSeed, int phantoms, int64_t thickSlices,
                                         std::ostream& log);
ThroughPlanePairs CtThroughPlaneTrainingSet(std::ostream& log);
ThroughPlanePairs CtThroughPlaneTestSet(std::ostream& log);

// The engine's channel stack for through-plane gap `gap` of `thick` with `context`
// slices on each side (docs/models.md), in the volume's units: [2 * context, rows, cols].
Volume GapChannels(const Volume& thick, int64_t gap, int64_t context);

// Gaussian blur of every slice (separable, mirrored borders), sigma in pixels.
Volume BlurSlices(const Volume& volume, double sigma);

}  // namespace enhance::models
