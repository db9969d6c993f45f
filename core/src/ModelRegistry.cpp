// SPDX-License-Identifier: GPL-3.0-or-later
#include "enhance/ModelRegistry.h"

#include <algorithm>

#include "enhance/BilateralDenoiser.h"
#include "enhance/Error.h"

namespace enhance {

ModelRegistry::ModelRegistry() { Add(std::make_shared<BilateralDenoiser>()); }

void ModelRegistry::Add(std::shared_ptr<const Model> model) {
  if (!model) throw Error(ErrorKind::kInternal, "null model added to the registry");
  std::lock_guard<std::mutex> lock(mutex_);
  const std::string& name = model->Info().name;
  auto existing = std::find_if(models_.begin(), models_.end(),
                               [&](const auto& m) { return m->Info().name == name; });
  if (existing != models_.end()) {
    *existing = std::move(model);
  } else {
    models_.push_back(std::move(model));
  }
}

std::shared_ptr<const Model> ModelRegistry::Find(const std::string& name) const {
  std::lock_guard<std::mutex> lock(mutex_);
  for (const auto& model : models_) {
    if (model->Info().name == name) return model;
  }
  return nullptr;
}

std::shared_ptr<const Model> ModelRegistry::Get(const std::string& name) const {
  if (auto model = Find(name)) return model;
  std::string available;
  for (const auto& model : List()) {
    available += (available.empty() ? "" : ", ") + model->Info().name;
  }
  throw Error(ErrorKind::kNotFound, "unknown model '" + name + "'; available models: " + available);
}

std::vector<std::shared_ptr<const Model>> ModelRegistry::List() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return models_;
}

}  // namespace enhance
