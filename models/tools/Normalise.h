// SPDX-License-Identifier: GPL-3.0-or-later
//
// Volumes to network tensors and back, with the window normalisation of the manifests:
// [low, high] in physical units -> [0, 1]. Stateless; thread-safe.
#pragma once

#include <ATen/ATen.h>

#include <vector>

#include "enhance/base/Volume.h"

namespace enhance::models {

struct Window {
  double low = 0.0;
  double high = 1.0;
};

constexpr Window kCtWindow{-1024.0, 3071.0};

// [S, 1, rows, columns] float32, a copy.
at::Tensor ToNetwork(const Volume& volume, const Window& window);

// The value at `percent` of `values` (0-100), the lower of the two ranks around it; 0 for no
// values.
double Percentile(std::vector<float> values, double percent);

}  // namespace enhance::models
