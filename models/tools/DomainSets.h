// SPDX-License-Identifier: GPL-3.0-or-later
//
// The series a domain check is calibrated and evaluated on (docs/models.md, "Domain
// checks"), for each training distribution: CT phantoms (simulated low-dose acquisitions,
// as the CT models are trained on) and T1-weighted human heads (the MR models).
//
//   reference    in-distribution series never used in training: their features' mean and
//                standard deviation are the manifest's "reference"
//   calibration  more such series: the threshold is the 99th percentile of their scores
//   test         held-out in-distribution series: the negatives of the AUROC, and the
//                false-warning rate
//   far, near    out-of-distribution sets, each a list of labelled series
//
// Every series is a Volume in physical units (HU for CT). Deterministic; thread-safe.
#pragma once

#include <filesystem>
#include <ostream>
#include <string>
#include <vector>

#include "enhance/base/Volume.h"

namespace enhance::models {

struct DomainSet {
  std::string name;
  std::vector<Volume> series;
};

struct DomainSets {
  std::string trainedOn;  // what the autoencoder was trained on, for the manifest
  DomainSet reference;
  DomainSet calibration;
  DomainSet test;
  std::vector<DomainSet> far;
  std::vector<DomainSet> near;
  std::vector<DomainSet> extra;  // reported, not part of the targets (e.g. an unseen head)
  // Changes of the calibration series (not held out), for scoring choices: made from the
  // calibration series after they are read (MrTuningSets), not kept in a cache.
  std::vector<DomainSet> tuning;
};

// `templates`: mricron-data's folder; `pydicom`: the folder of pydicom's test files.
DomainSets CtDomainSets(const std::filesystem::path& templates,
                        const std::filesystem::path& pydicom, std::ostream& log);
DomainSets MrDomainSets(const std::filesystem::path& templates,
                        const std::filesystem::path& pydicom, std::ostream& log);

// The held-out series that the kernel changes (smoother, sharper) start from when they are
// made again at another resolution (the in-plane super-resolution models' checks): all the
// CT phantoms; the MR test slabs of ch2better at 3% noise.
std::vector<size_t> KernelChangeBase(bool ct);

// The sets kept in a file, so that calibrating and evaluating several checks on the same
// acquisitions simulates them once (sizes, units and voxels; not the tuning sets, which are
// made from the calibration series). ReadSets throws std::runtime_error naming a file that
// is not a complete cache.
void WriteSets(const std::filesystem::path& file, const DomainSets& sets);
DomainSets ReadSets(const std::filesystem::path& file);

// The MR-x2 check's sets (MrDomainSets, at full resolution) with the in-plane MR
// super-resolution model's own inputs added: it was trained on noise-free slabs of
// ch2better and jhu189 with random contrast and sharpness changes (AugmentMrSuperRes), so
// such slabs of the slices the other sets use join the reference (ch2better 100-115 and
// 170-177, twice each; jhu189's axial slabs), the calibration (ch2better 116-123 and
// 204-211, twice each; jhu189's slabs 4 slices further) and the held-out series
// (ch2better 180-203, twice). Deterministic.
void AddMrSuperResInputs(DomainSets& sets, const std::filesystem::path& templates);

// The T1 template as scripts/demo.sh sends it to mr-superres-x2: ch2 slices 78-101,
// noise-free, at their own 1 mm pixels (not halved), as 3 series of 8 slices.
DomainSet MrDemoTemplate(const std::filesystem::path& templates);

// The MR tuning sets: the near sets' changes (noise to 30%, smoother, sharper, gamma 0.5, an
// 80% bias field, ghosting) made to the calibration series. Scored against the calibration
// series, they compare scoring choices without the held-out series.
std::vector<DomainSet> MrTuningSets(const DomainSet& calibration);

// The transformations of the near out-of-distribution sets, on a copy.
Volume Blurred(const Volume& v, double sigmaPixels);                   // a smoother kernel
Volume Sharpened(const Volume& v, double amount, double sigmaPixels);  // a sharper one
Volume Ghosted(const Volume& v, double fraction);  // a copy shifted by a quarter of the rows

}  // namespace enhance::models
