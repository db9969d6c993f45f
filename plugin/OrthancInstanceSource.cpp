// SPDX-License-Identifier: GPL-3.0-or-later
#include "OrthancInstanceSource.h"

#include "enhance/base/Error.h"

namespace enhance::plugin {

OrthancInstanceSource::OrthancInstanceSource(const OrthancApi& api, const std::string& seriesId)
    : api_(api), decoder_(api.context()), seriesId_(seriesId) {
  try {
    series_ = api_.GetJson("/series/" + seriesId);
  } catch (const OrthancApiError& e) {
    if (e.code() == OrthancPluginErrorCode_UnknownResource) {
      throw Error(ErrorKind::kNotFound, "series " + seriesId + " does not exist in Orthanc");
    }
    throw;
  }
  for (const auto& id : series_["Instances"]) instances_.push_back(id.asString());
}

std::string OrthancInstanceSource::modality() const {
  const Json::Value& m = series_["MainDicomTags"]["Modality"];
  return m.isString() ? m.asString() : "";
}

std::string OrthancInstanceSource::Describe() const {
  const std::string m = modality();
  return "series " + seriesId_ + " (" + (m.empty() ? "no modality" : m) + ")";
}

std::string OrthancInstanceSource::FetchInstance(const std::string& instanceId) {
  try {
    return api_.Get("/instances/" + instanceId + "/file");
  } catch (const OrthancApiError& e) {
    throw Error(ErrorKind::kNotFound, Describe() + ", instance " + instanceId +
                                          ": cannot be read from Orthanc (" + e.what() +
                                          "); it may have been deleted during processing");
  }
}

}  // namespace enhance::plugin
