// SPDX-License-Identifier: GPL-3.0-or-later
//
// Reading a model's manifest.json (ModelSpec.h): the reader that names the file and the key
// in every error, and the helpers the manifest's sections share. Private to the inference
// layer; ModelSpec.cpp parses the model's own sections, DomainCheckManifest.cpp the
// "domain_check" section. Stateless apart from the file's name; thread-safe.
#pragma once

#include <json/value.h>

#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include "enhance/base/Error.h"
#include "enhance/inference/ModelSpec.h"

namespace enhance::manifest {

class ManifestReader {
 public:
  explicit ManifestReader(std::string file) : file_(std::move(file)) {}

  [[noreturn]] void Fail(const std::string& key, const std::string& what) const {
    throw Error(ErrorKind::kBadInput, file_ + ": " + key + ": " + what);
  }

  void CheckKeys(const Json::Value& object, const std::string& key,
                 const std::vector<std::string>& known) const {
    for (const auto& name : object.getMemberNames()) {
      if (std::find(known.begin(), known.end(), name) == known.end()) {
        std::string list;
        for (const auto& k : known) list += (list.empty() ? "" : ", ") + k;
        Fail(Printable(key.empty() ? name : key + "." + name),
             "unknown key; known keys are " + list);
      }
    }
  }

  std::string String(const Json::Value& o, const char* key, bool required,
                     const std::string& fallback = "") const {
    if (!o.isMember(key)) {
      if (required) Fail(key, "is required");
      return fallback;
    }
    if (!o[key].isString() || o[key].asString().empty()) Fail(key, "must be a non-empty string");
    return o[key].asString();
  }

  int Int(const Json::Value& o, const std::string& prefix, const char* key, int fallback,
          int minimum, int maximum) const {
    const std::string name = prefix.empty() ? key : prefix + "." + key;
    if (!o.isMember(key)) return fallback;
    if (!o[key].isInt() || o[key].asInt() < minimum || o[key].asInt() > maximum) {
      Fail(name,
           "must be an integer from " + std::to_string(minimum) + " to " + std::to_string(maximum));
    }
    return o[key].asInt();
  }

  double Number(const Json::Value& o, const std::string& name, const char* key) const {
    if (!o.isMember(key) || !o[key].isNumeric()) Fail(name + "." + key, "must be a number");
    return o[key].asDouble();
  }

  Normalization ParseNormalization(const Json::Value& o, const std::string& name) const {
    Normalization n;
    if (!o.isObject()) Fail(name, "must be an object with a \"method\"");
    CheckKeys(o, name, {"method", "low", "high"});
    const std::string method =
        o.isMember("method") && o["method"].isString() ? o["method"].asString() : "";
    if (method == "none") {
      n.method = Normalization::Method::kNone;
    } else if (method == "window") {
      n.method = Normalization::Method::kWindow;
    } else if (method == "percentile") {
      n.method = Normalization::Method::kPercentile;
    } else if (method == "zscore") {
      n.method = Normalization::Method::kZScore;
    } else {
      Fail(name + ".method", "must be one of none, window, percentile, zscore");
    }
    if (n.method == Normalization::Method::kWindow ||
        n.method == Normalization::Method::kPercentile) {
      n.low = Number(o, name, "low");
      n.high = Number(o, name, "high");
      if (!(n.high > n.low)) Fail(name, "high must be greater than low");
      if (n.method == Normalization::Method::kPercentile && (n.low < 0 || n.high > 100)) {
        Fail(name, "percentiles must lie in [0, 100]");
      }
    }
    return n;
  }

 private:
  std::string file_;
};

// The archive's path, which must stay inside the model's folder.
// `archive` is the value of `key`: a file inside the model's folder.
std::filesystem::path ParseArchive(const ManifestReader& r, const std::string& archive,
                                   const std::string& key, const std::filesystem::path& folder);

// An optional string member of a nested object, named `prefix.key` in errors.
std::string OptionalString(const ManifestReader& r, const Json::Value& o, const std::string& prefix,
                           const char* key, const std::string& fallback);

// The "domain_check" section: the autoencoder that tells whether a series is like the
// model's training data (DomainCheck.h), into s.domainCheck.
void ParseDomainCheck(const ManifestReader& r, const Json::Value& o,
                      const std::filesystem::path& folder, ModelSpec& s);

}  // namespace enhance::manifest
