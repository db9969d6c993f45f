// SPDX-License-Identifier: GPL-3.0-or-later
//
// A Model whose computation is a slice function run by the slice engine: the common
// shape of TorchScript networks and the tensor-based classical baselines. Internal to
// core/. Thread-safe: Run() only reads members; the function must be reentrant.
#pragma once

#include "SliceEngine.h"
#include "enhance/inference/Model.h"

namespace enhance {

class EngineModel : public Model {
 public:
  EngineModel(ModelSpec spec, std::string parameters, SliceFunction function, EngineOptions options)
      : spec_(std::move(spec)),
        parameters_(std::move(parameters)),
        function_(std::move(function)),
        options_(options) {}

  const ModelInfo& Info() const override { return spec_; }
  std::string Parameters() const override { return parameters_; }
  Volume Run(const Volume& input, const RunContext& context) const override {
    return RunSliceEngine(input, spec_, function_, options_, context);
  }
  Volume RunReusing(Volume& input, const RunContext& context) const override {
    if (!CanRunInPlace(spec_)) return Run(input, context);
    EngineResume resume;
    RunSliceEngineInPlace(input, spec_, function_, options_, context, resume);
    return std::move(input);
  }
  bool TakesPrecomputedSlices() const override { return SlicesAreIndependent(spec_); }

 private:
  ModelSpec spec_;
  std::string parameters_;
  SliceFunction function_;
  EngineOptions options_;
};

}  // namespace enhance
