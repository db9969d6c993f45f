// SPDX-License-Identifier: GPL-3.0-or-later
//
// The models this node can run, by name. Built-in classical models are always present.
//
// Thread-safety: all methods may be called concurrently. Find() returns a shared
// pointer so that a model stays alive while a job uses it even if the registry changes.
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "enhance/Model.h"

namespace enhance {

class ModelRegistry {
 public:
  // A registry holding the built-in models.
  ModelRegistry();

  // Adds or replaces a model under its Info().name.
  void Add(std::shared_ptr<const Model> model);

  // The model with this name, or nullptr.
  std::shared_ptr<const Model> Find(const std::string& name) const;

  // Like Find(), but throws Error(kNotFound) listing the available models.
  std::shared_ptr<const Model> Get(const std::string& name) const;

  std::vector<std::shared_ptr<const Model>> List() const;

 private:
  mutable std::mutex mutex_;
  std::vector<std::shared_ptr<const Model>> models_;
};

}  // namespace enhance
