// SPDX-License-Identifier: GPL-3.0-or-later
//
// What enhance-evaluate's options change in every model it loads.
#pragma once

#include <string>

namespace enhance::models {

// The CPU precision the evaluated models run in (InferenceOptions::precision): "float" by
// default, so that the figures are those of the float network; "bf16" to measure what a
// model's bf16 version gives (--precision bf16). Set once, before any model is loaded.
inline std::string& EvaluationPrecision() {
  static std::string precision = "float";
  return precision;
}

}  // namespace enhance::models
