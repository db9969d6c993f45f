// SPDX-License-Identifier: GPL-3.0-or-later
//
// core's InstanceSource over Orthanc's REST API: the instances of one Orthanc series.
// Not thread-safe: one job uses one source from one thread.
#pragma once

#include <string>
#include <vector>

#include "OrthancApi.h"
#include "OrthancFrameDecoder.h"
#include "enhance/dicom/InstanceSource.h"

namespace enhance::plugin {

class OrthancInstanceSource : public InstanceSource {
 public:
  // Lists the series' instances now. Throws Error(kNotFound) when the series is unknown.
  OrthancInstanceSource(const OrthancApi& api, const std::string& seriesId);

  std::string Describe() const override;
  std::vector<std::string> ListInstances() override { return instances_; }
  std::string FetchInstance(const std::string& instanceId) override;
  // Orthanc's decoders, for transfer syntaxes DCMTK cannot decode in core/.
  const FrameDecoder* Decoder() const override { return &decoder_; }

  const Json::Value& series() const { return series_; }
  std::string modality() const;

 private:
  const OrthancApi& api_;
  OrthancFrameDecoder decoder_;
  std::string seriesId_;
  Json::Value series_;
  std::vector<std::string> instances_;
};

}  // namespace enhance::plugin
