// SPDX-License-Identifier: GPL-3.0-or-later
#include "enhance/inference/ModelRegistry.h"

#include <algorithm>
#include <set>

#include "enhance/base/Error.h"
#include "enhance/inference/ClassicalModels.h"

namespace enhance {

ModelRegistry::ModelRegistry() : builtin_(BuiltinModels()) {}

void ModelRegistry::ReplaceBuiltin(std::shared_ptr<const Model> model) {
  std::lock_guard<std::mutex> lock(mutex_);
  for (auto& builtin : builtin_) {
    if (builtin->Info().name == model->Info().name) {
      builtin = std::move(model);
      return;
    }
  }
  throw Error(ErrorKind::kNotFound, "no built-in model is named '" + model->Info().name + "'");
}

ModelLoadReport ModelRegistry::LoadDirectories(
    const std::vector<std::filesystem::path>& directories, const InferenceOptions& options) {
  ModelLoadReport report;
  std::vector<std::shared_ptr<const Model>> models;
  std::set<std::string> names;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    for (const auto& model : builtin_) names.insert(model->Info().name);
  }

  for (const auto& directory : directories) {
    std::error_code ec;
    if (!std::filesystem::is_directory(directory, ec)) {
      report.problems.push_back({directory.string(), "", "is not a readable folder"});
      continue;
    }
    std::vector<std::filesystem::path> folders;
    const auto root = std::filesystem::weakly_canonical(directory, ec);
    for (const auto& entry : std::filesystem::directory_iterator(directory, ec)) {
      if (!entry.is_directory() || !std::filesystem::exists(entry.path() / "manifest.json"))
        continue;
      // A model folder reached through a symbolic link must still lie inside the directory.
      const auto resolved = std::filesystem::weakly_canonical(entry.path(), ec);
      const auto [rootEnd, unused] =
          std::mismatch(root.begin(), root.end(), resolved.begin(), resolved.end());
      (void)unused;
      if (rootEnd != root.end()) {
        report.problems.push_back({entry.path().string(), entry.path().filename().string(),
                                   "resolves outside " + directory.string() + " and is ignored"});
        continue;
      }
      folders.push_back(entry.path());
    }
    std::sort(folders.begin(), folders.end());  // deterministic: the first of two names wins
    for (const auto& folder : folders) {
      std::string name = folder.filename().string();
      try {
        name = LoadManifest(folder).name;
        auto model = TorchModel::Load(folder, options);
        if (!names.insert(name).second) {
          throw Error(ErrorKind::kBadInput,
                      folder.string() + ": the name '" + name +
                          "' is already used by another model; give this one another name");
        }
        report.loaded.push_back(name);
        models.push_back(std::move(model));
      } catch (const std::exception& e) {
        report.problems.push_back({folder.string(), name, e.what()});
      }
    }
  }

  std::lock_guard<std::mutex> lock(mutex_);
  loaded_ = std::move(models);
  problems_ = report.problems;
  return report;
}

std::shared_ptr<const Model> ModelRegistry::Find(const std::string& name) const {
  std::lock_guard<std::mutex> lock(mutex_);
  for (const auto* list : {&builtin_, &loaded_}) {
    for (const auto& model : *list) {
      if (model->Info().name == name) return model;
    }
  }
  return nullptr;
}

std::shared_ptr<const Model> ModelRegistry::Get(const std::string& name) const {
  if (auto model = Find(name)) return model;
  for (const auto& problem : Problems()) {
    if (problem.name == name) {
      throw Error(ErrorKind::kNotFound,
                  "model '" + name + "' is not available: it did not load at the last (re)load: " +
                      problem.message + "; repair it and POST /enhance/models/reload");
    }
  }
  std::string available;
  for (const auto& model : List()) {
    available += (available.empty() ? "" : ", ") + model->Info().name;
  }
  throw Error(ErrorKind::kNotFound, "unknown model '" + name + "'; available models: " + available);
}

std::vector<std::shared_ptr<const Model>> ModelRegistry::List() const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::vector<std::shared_ptr<const Model>> all = builtin_;
  all.insert(all.end(), loaded_.begin(), loaded_.end());
  return all;
}

std::vector<ModelLoadProblem> ModelRegistry::Problems() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return problems_;
}

}  // namespace enhance
