// SPDX-License-Identifier: GPL-3.0-or-later
//
// What enhance-evaluate's options change in every model it loads.
#pragma once

#include <string>
#include <vector>

namespace enhance::models {

// The CPU precisions the learned models are evaluated in (InferenceOptions::precision):
// "float" by default, so that the figures are those of the float network; with
// --precision float,bf16 each learned model is measured in both, side by side (and the
// classical baselines, whose tuning takes most of the time, are left out). Set once, before
// any model is loaded.
inline std::vector<std::string>& EvaluationPrecisions() {
  static std::vector<std::string> precisions{"float"};
  return precisions;
}

inline bool ComparingPrecisions() { return EvaluationPrecisions().size() > 1; }

}  // namespace enhance::models
