// SPDX-License-Identifier: GPL-3.0-or-later
//
// Measurements of a series' noise on its slices, for the self-supervised denoiser: which
// pixels carry noise, its deviation from the neighbouring slices and within the slice, and
// the pixels a risk estimate scores. Internal to core/inference. Stateless functions of
// their arguments; thread-safe.
#pragma once

#include <cstdint>
#include <vector>

#include "enhance/base/Volume.h"

namespace enhance {

// Whether the series is a magnitude image (MR): no value below 0.
bool IsMagnitude(const Volume& volume);

// The pixels of slice k that carry noise: all but those equal in slice k and both its
// neighbours (padding, clipped air).
std::vector<uint8_t> NoisyPixels(const Volume& volume, int64_t k);

// d = slice k - (slice k-1 + slice k+1) / 2 over the counted pixels. Where the anatomy
// does not change, d is noise alone, of variance 1.5 sigma^2 (the slices' noise is
// independent, white or not): the median of |d| gives sigma, which an anatomy change on
// fewer than half of the pixels does not move. Where it changes, d grows: its mean
// square is the noise's 1.5 sigma^2 plus the anatomy's change.
struct NeighbourDifference {
  double sigma = 0;
  double meanSquare = 0;
  int64_t pixels = 0;  // 0: none counted, the figures are 0
};

NeighbourDifference MeasureNeighbourDifference(const Volume& volume, int64_t k,
                                               const std::vector<uint8_t>& counted);

// Immerkaer's in-plane estimate of white noise's deviation (EstimateNoiseSigmaAtSpacing with
// adjacent taps) over the pixels whose 3x3 neighbourhood is counted: the median of the
// Laplacian-difference response, whose deviation is 6 sigma for white noise; -1 (unknown)
// when fewer than 16 such pixels.
double MaskedInPlaneSigma(const float* x, int64_t rows, int64_t columns,
                          const std::vector<uint8_t>& counted);

// The pixels of slice k the risk estimate counts, and the noise's deviation there. Pixels
// equal in the three slices (padding) carry no noise. Both the in-plane estimate
// (EstimateNoiseSigma) and MeasureNeighbourDifference's can only be raised by the anatomy (its
// structure, its change), and the risk estimate needs the noise's variance itself: the
// lower of the two. Magnitude images (no value below 0: MR) have Rician noise, which is
// near Gaussian only where the signal is well above it (at least 3 times its deviation,
// Gudbjartsson and Patz 1995); below, in the background, its spread is smaller and its
// mean is not the signal's, which would bias the estimate. There, only the pixels whose
// mean over 3x3x3 neighbours is above 3 deviations count, and the deviation is the lower
// of the two estimates measured on them alone (MaskedInPlaneSigma and the neighbours'
// difference).
struct CountedPixels {
  std::vector<uint8_t> counted;
  double sigma = 0;
};

CountedPixels PixelsToScore(const Volume& volume, int64_t k, bool magnitude);

}  // namespace enhance
