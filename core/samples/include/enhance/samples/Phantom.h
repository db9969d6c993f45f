// SPDX-License-Identifier: GPL-3.0-or-later
//
// Procedural anthropomorphic CT phantom: a thorax-to-abdomen cross-section in
// Hounsfield units (air, lungs with vessels, fat, muscle, liver, kidneys, spine,
// ribs, contrast-filled aorta) whose anatomy changes smoothly along the body axis,
// with optional Gaussian noise. Deterministic for a given seed. Thread-safe.
//
// Used for sample data and tests; the training-data simulator builds on it.
#pragma once

#include <cstdint>

#include "enhance/base/Volume.h"

namespace enhance {

struct PhantomOptions {
  int64_t rows = 512;
  int64_t columns = 512;
  int64_t slices = 32;
  double pixelSpacing = 0.8;  // mm, square pixels
  double sliceSpacing = 2.5;  // mm
  double noiseSigmaHu = 0.0;  // standard deviation of additive Gaussian noise
  uint64_t seed = 1;
};

// Axial slices, feet-to-head order, patient lying supine (standard axial orientation
// 1\0\0\0\1\0); geometry and units ("HU") filled in.
Volume MakeCtPhantom(const PhantomOptions& options);

}  // namespace enhance
