// SPDX-License-Identifier: GPL-3.0-or-later
//
// The models this node can run, by name: the built-in classical models, always present,
// and the models found in the configured folders (one sub-folder per model with a
// manifest.json and a TorchScript archive).
//
// Thread-safety: all methods may be called concurrently. Find() returns a shared pointer,
// so a model stays alive while a job uses it even when LoadDirectories() replaces it.
#pragma once

#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "enhance/inference/Model.h"
#include "enhance/inference/TorchModel.h"

namespace enhance {

struct ModelLoadProblem {
  std::string folder;   // the model's folder
  std::string name;     // the model's name when its manifest could be read, else the folder's
  std::string message;  // what is wrong and what to do
};

struct ModelLoadReport {
  std::vector<std::string> loaded;  // names of the models loaded from folders
  std::vector<ModelLoadProblem> problems;
};

class ModelRegistry {
 public:
  // A registry holding the built-in models.
  ModelRegistry();

  // Scans every folder (each sub-folder holding a manifest.json is a model), loads and
  // validates each model, and atomically replaces the previously loaded folder models
  // with the good ones. A bad model is reported and skipped; the others stay usable.
  // Built-in models are never replaced.
  ModelLoadReport LoadDirectories(const std::vector<std::filesystem::path>& directories,
                                  const InferenceOptions& options);

  // Puts `model` in place of the built-in model of the same name (e.g. one configured
  // otherwise than by default); Error(kNotFound) when there is none.
  void ReplaceBuiltin(std::shared_ptr<const Model> model);

  // The model with this name, or nullptr.
  std::shared_ptr<const Model> Find(const std::string& name) const;

  // Like Find(), but throws Error(kNotFound): for a model that failed to load, with the
  // reason (which names its folder and file); otherwise listing the available models.
  std::shared_ptr<const Model> Get(const std::string& name) const;

  std::vector<std::shared_ptr<const Model>> List() const;

  // The problems found by the last LoadDirectories().
  std::vector<ModelLoadProblem> Problems() const;

 private:
  mutable std::mutex mutex_;
  std::vector<std::shared_ptr<const Model>> builtin_;
  std::vector<std::shared_ptr<const Model>> loaded_;
  std::vector<ModelLoadProblem> problems_;
};

}  // namespace enhance
