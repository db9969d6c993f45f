// SPDX-License-Identifier: GPL-3.0-or-later
//
// Markdown tables of the noise power spectrum (core's ComputeNoisePowerSpectrum) of
// denoisers' residuals, for enhance-evaluate: for each output, output - reference inside the
// reference's body mask (as the other figures), its area (the residual's variance), RMS,
// peak and mean radial frequency in cycles per pixel, and the radially averaged NPS at a few
// frequencies. Stateless; thread-safe.
#pragma once

#include <ostream>
#include <string>
#include <vector>

#include "enhance/base/Volume.h"

namespace enhance::models {

struct NpsRow {
  std::string label;
  const Volume* output = nullptr;  // same size as the reference
};

// `unit` names the residual's unit after multiplication by `scale` (e.g. "HU", 1; or
// "% of the maximum", 100 for MR intensities scaled to [0, 1]).
void PrintNpsTables(const Volume& reference, const std::vector<NpsRow>& rows,
                    const std::string& unit, double scale, std::ostream& out);

}  // namespace enhance::models
