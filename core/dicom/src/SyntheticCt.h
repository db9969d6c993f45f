// SPDX-License-Identifier: GPL-3.0-or-later
//
// The CT Image Storage object of a synthetic CT computed from another modality (MR):
// built from a whitelist of the source's patient, study, frame of reference, equipment
// and image plane attributes, never by copying the source's modality-specific modules.
// Internal to core/, used by DerivedSeriesWriter. Stateless; thread-safe for distinct
// datasets.
#pragma once

#include <dcmtk/dcmdata/dcdatset.h>

#include <memory>

namespace enhance {

// The scanner range of CT values; synthetic CT values are clipped to it.
constexpr double kSyntheticCtMinHu = -1024.0;
constexpr double kSyntheticCtMaxHu = 3071.0;

// A new dataset holding the whitelisted attributes of `source` and the CT Image
// attributes that do not depend on the output pixels (SOP class, modality, Synthetic
// Data, rescale to HU, window presets, Type 2 attributes the source lacks).
std::unique_ptr<DcmDataset> SyntheticCtTemplate(DcmDataset& source);

}  // namespace enhance
