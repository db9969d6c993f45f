// SPDX-License-Identifier: GPL-3.0-or-later
#include "NpsTable.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "enhance/quality/Metrics.h"
#include "enhance/quality/NoisePowerSpectrum.h"

namespace enhance::models {
namespace {

// Radial frequencies of the second table, cycles per pixel.
const std::vector<double> kFrequencies{0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.45};

std::string Format(const char* format, double value) {
  char text[32];
  std::snprintf(text, sizeof(text), format, value);
  return text;
}

// As CompareVolumes' body mask: -500 HU for CT, else 10% of the 99th percentile.
std::vector<uint8_t> Body(const Volume& reference) {
  if (reference.units == "HU") return BodyMask(reference, -500.0);
  std::vector<float> copy(reference.voxels);
  const size_t index = static_cast<size_t>(0.99 * static_cast<double>(copy.size() - 1));
  std::nth_element(copy.begin(), copy.begin() + static_cast<long>(index), copy.end());
  return BodyMask(reference, 0.1 * copy[index]);
}

}  // namespace

void PrintNpsTables(const Volume& reference, const std::vector<NpsRow>& rows,
                    const std::string& unit, double scale, std::ostream& out) {
  const std::vector<uint8_t> mask = Body(reference);
  std::vector<NoisePowerSpectrum> spectra;
  for (const NpsRow& row : rows) {
    Volume residual = Difference(*row.output, reference);
    for (float& x : residual.voxels) x = static_cast<float>(x * scale);
    spectra.push_back(ComputeNoisePowerSpectrum(residual, mask));
  }
  out << "\n| method | NPS area = variance (" << unit << "^2) | RMS (" << unit
      << ") | peak frequency (cycles/pixel) | mean frequency (cycles/pixel) |\n"
      << "|---|---|---|---|---|\n";
  for (size_t i = 0; i < rows.size(); ++i) {
    const NoisePowerSpectrum& s = spectra[i];
    out << "| " << rows[i].label << " | " << Format("%.1f", s.area) << " | "
        << Format("%.2f", std::sqrt(s.area)) << " | " << Format("%.3f", s.peakFrequency) << " | "
        << Format("%.3f", s.meanFrequency) << " |\n";
  }
  out << "\nradially averaged NPS (" << unit << "^2 pixel^2) at f cycles/pixel:\n\n| method |";
  for (double f : kFrequencies) out << " f = " << Format("%.2f", f) << " |";
  out << "\n|---|";
  for (size_t k = 0; k < kFrequencies.size(); ++k) out << "---|";
  out << "\n";
  for (size_t i = 0; i < rows.size(); ++i) {
    out << "| " << rows[i].label << " |";
    for (double f : kFrequencies) out << " " << Format("%.1f", PowerAt(spectra[i], f)) << " |";
    out << "\n";
  }
  out << "\n" << std::flush;
}

}  // namespace enhance::models
