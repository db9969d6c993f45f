// SPDX-License-Identifier: GPL-3.0-or-later
#include "DomainSets.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <functional>
#include <random>
#include <sstream>
#include <stdexcept>
#include <utility>

#include "CtDenoiseData.h"
#include "CtSimulator.h"
#include "Mr2CtData.h"
#include "MrDenoiseData.h"
#include "Nifti.h"
#include "Normalise.h"
#include "TrainingPhantom.h"
#include "enhance/dicom/DicomSeriesReader.h"

namespace enhance::models {
namespace {

// Slices s0 .. s0 + count - 1 of every series, as one series each of `perSeries` slices.
std::vector<Volume> Split(const Volume& v, int64_t perSeries) {
  std::vector<Volume> out;
  for (int64_t first = 0; first + perSeries <= v.slices; first += perSeries) {
    out.push_back(SliceRange(v, first, perSeries));
  }
  return out;
}

Volume Scaled(const Volume& v, double gain, double offset, const std::string& units) {
  Volume out = v;
  for (float& x : out.voxels) x = static_cast<float>(x * gain + offset);
  out.units = units;
  return out;
}

std::vector<Volume> Map(const std::vector<Volume>& series,
                        const std::function<Volume(const Volume&)>& f) {
  std::vector<Volume> out;
  for (const Volume& v : series) out.push_back(f(v));
  return out;
}

struct ReferenceMr {
  Volume ch2better;  // mr-denoise's training head
  Volume ch2;        // the same subject as mr2ct's training data have it
  Volume jhu189;     // another human head
  Volume inia19;     // a rhesus macaque's brain
};

ReferenceMr ReferenceMrHeads(const std::filesystem::path& templates) {
  return {LoadMrReference(templates / "ch2better.nii.gz"),
          LoadMrReference(templates / "ch2.nii.gz"), LoadMrReference(templates / "jhu189.nii.gz"),
          LoadMrReference(templates / "inia19-t1-brain.nii.gz")};
}

std::string ReadWholeFile(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    throw std::runtime_error(path.string() + ": cannot be read (python3-pydicom's test files)");
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// One series per readable file of pydicom's test data: a real CT and a real MR.
DomainSet PydicomImages(const std::filesystem::path& folder, std::ostream& log) {
  DomainSet set{"pydicom's real test images (CT_small, MR_small)", {}};
  for (const char* name : {"CT_small.dcm", "MR_small.dcm"}) {
    const auto path = folder / name;
    std::vector<EncodedInstance> one;
    one.push_back({path.string(), ReadWholeFile(path)});
    set.series.push_back(ReadSeries(std::move(one), path.string()).volume);
    log << "  " << path.string() << "\n";
  }
  return set;
}

// Low-dose acquisitions of phantoms of consecutive seeds, 4 slices each, at `fractions`
// of the full dose (one set of series per fraction, from the same projections).
std::vector<std::vector<Volume>> CtSeries(uint64_t firstSeed, int phantoms,
                                          const std::vector<double>& fractions, std::ostream& log) {
  std::vector<std::vector<Volume>> sets(fractions.size());
  for (int k = 0; k < phantoms; ++k) {
    const uint64_t seed = firstSeed + static_cast<uint64_t>(k);
    const Volume phantom = MakeTrainingCtPhantom(seed, {});
    const at::Tensor hu =
        at::from_blob(const_cast<float*>(phantom.voxels.data()),
                      {phantom.slices, phantom.rows, phantom.columns}, at::kFloat);
    const double spacing = phantom.geometry.rowSpacing;
    const CtDoseOptions dose;
    const at::Tensor sinogram = Project(hu, spacing, dose.scanner);
    for (size_t f = 0; f < fractions.size(); ++f) {
      const at::Tensor noisy = AddDoseNoise(sinogram, dose.fullDosePhotons * fractions[f],
                                            dose.scanner, 2 * seed + 1 + 1000 * f);
      Volume v = phantom;
      const at::Tensor slices = Reconstruct(noisy, spacing, dose.scanner).contiguous();
      std::copy(slices.data_ptr<float>(), slices.data_ptr<float>() + slices.numel(),
                v.voxels.begin());
      sets[f].push_back(std::move(v));
    }
    log << "  CT phantom seed " << seed << "\n" << std::flush;
  }
  return sets;
}

// A head in HU (the pseudo-CT of a T1 head, padded to a square of air), acquired by the
// same simulated scanner at the CT models' dose: a body region the phantoms never show.
std::vector<Volume> HeadCt(const std::filesystem::path& templates, std::ostream& log) {
  std::vector<Volume> out;
  for (const Mr2CtPair& pair : Mr2CtTestSet(templates)) {
    const Volume& ct = pair.ct;
    const int64_t n = (std::max(ct.rows, ct.columns) + 15) / 16 * 16;
    Volume square;
    square.slices = ct.slices;
    square.rows = square.columns = n;
    square.units = "HU";
    square.geometry = ct.geometry;  // positions of the same slices
    square.voxels.assign(static_cast<size_t>(ct.slices * n * n), -1000.0f);
    for (int64_t s = 0; s < ct.slices; ++s)
      for (int64_t r = 0; r < ct.rows; ++r)
        for (int64_t c = 0; c < ct.columns; ++c)
          square.At(s, r + (n - ct.rows) / 2, c + (n - ct.columns) / 2) = ct.At(s, r, c);
    const at::Tensor hu = at::from_blob(square.voxels.data(), {square.slices, n, n}, at::kFloat);
    const CtDoseOptions dose;
    const double spacing = 1.0;  // mm: the templates' voxels
    const at::Tensor slices =
        Reconstruct(AddDoseNoise(Project(hu, spacing, dose.scanner),
                                 dose.fullDosePhotons * dose.doseFraction, dose.scanner, 77),
                    spacing, dose.scanner)
            .contiguous();
    std::copy(slices.data_ptr<float>(), slices.data_ptr<float>() + slices.numel(),
              square.voxels.begin());
    for (Volume& v : Split(square, 8)) out.push_back(std::move(v));
    log << "  head CT: " << pair.label << "\n";
    break;  // the pseudo-CT is the same for every MR variant
  }
  return out;
}

// Adds `series` at the end of `set`.
void Append(DomainSet& set, std::vector<Volume> series) {
  for (Volume& v : series) set.series.push_back(std::move(v));
}

// Axial slabs of 8 slices of a head between `first` and `last`, each as `change` makes it
// (called once per slab, in order), appended to `out`.
void AddSlabs(std::vector<Volume>& out, const Volume& head, int64_t first, int64_t last,
              const std::function<Volume(Volume)>& change) {
  for (int64_t s = first; s + 8 <= last; s += 8) out.push_back(change(SliceRange(head, s, 8)));
}

// Axial slabs of 8 slices of a T1 head in [0, 1], with Rician noise of `sigma`.
std::vector<Volume> MrSlabs(const Volume& head, int64_t first, int64_t last,
                            const std::vector<double>& sigmas, uint64_t seed) {
  std::vector<Volume> out;
  for (double sigma : sigmas) {
    AddSlabs(out, head, first, last,
             [&](Volume slab) { return sigma > 0 ? AddRicianNoise(slab, sigma, seed++) : slab; });
  }
  return out;
}

// Slabs of 8 slices of mr2ct's source head between `first` and `last`, each `draws` times
// with mr2ct's training effects drawn at random (bias, gamma and noise).
std::vector<Volume> Mr2CtSlabs(const Volume& ch2, int64_t first, int64_t last, int draws,
                               uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<Volume> out;
  for (int draw = 0; draw < draws; ++draw) {
    AddSlabs(out, ch2, first, last,
             [&](Volume slab) { return ApplyMrEffects(slab, RandomTrainingEffects(rng), seed++); });
  }
  return out;
}

// Slabs of 8 slices of a head in [0, 1] between `first` and `last`, noise-free, each
// `draws` times with mr-superres-x2's random contrast and sharpness changes.
std::vector<Volume> MrSuperResSlabs(const Volume& head, int64_t first, int64_t last, int draws,
                                    std::mt19937_64& rng) {
  std::vector<Volume> out;
  for (int draw = 0; draw < draws; ++draw) {
    AddSlabs(out, head, first, last, [&rng](Volume slab) {
      AugmentMrSuperRes(slab, rng);
      return slab;
    });
  }
  return out;
}

}  // namespace

std::vector<size_t> KernelChangeBase(bool ct) {
  // CtDomainSets: 8 test phantoms. MrDomainSets: 3 slabs at each of 1, 3, 7 and 12%, then
  // mr2ct's.
  return ct ? std::vector<size_t>{0, 1, 2, 3, 4, 5, 6, 7} : std::vector<size_t>{3, 4, 5};
}

Volume Blurred(const Volume& v, double sigma) {
  const int radius = static_cast<int>(std::ceil(3 * sigma));
  std::vector<double> kernel;
  double sum = 0;
  for (int i = -radius; i <= radius; ++i) {
    kernel.push_back(std::exp(-0.5 * i * i / (sigma * sigma)));
    sum += kernel.back();
  }
  for (double& k : kernel) k /= sum;
  Volume out = v;
  Volume tmp = v;
  for (int pass = 0; pass < 2; ++pass) {
    const Volume& in = pass == 0 ? v : tmp;
    Volume& to = pass == 0 ? tmp : out;
    for (int64_t s = 0; s < v.slices; ++s)
      for (int64_t r = 0; r < v.rows; ++r)
        for (int64_t c = 0; c < v.columns; ++c) {
          double acc = 0;
          for (int i = -radius; i <= radius; ++i) {
            const int64_t rr = pass == 0 ? r : std::clamp<int64_t>(r + i, 0, v.rows - 1);
            const int64_t cc = pass == 0 ? std::clamp<int64_t>(c + i, 0, v.columns - 1) : c;
            acc += kernel[static_cast<size_t>(i + radius)] * in.At(s, rr, cc);
          }
          to.At(s, r, c) = static_cast<float>(acc);
        }
  }
  return out;
}

Volume Sharpened(const Volume& v, double amount, double sigma) {
  const Volume smooth = Blurred(v, sigma);
  Volume out = v;
  for (size_t i = 0; i < out.voxels.size(); ++i) {
    out.voxels[i] = static_cast<float>(v.voxels[i] + amount * (v.voxels[i] - smooth.voxels[i]));
  }
  return out;
}

Volume Ghosted(const Volume& v, double fraction) {
  Volume out = v;
  const int64_t shift = v.rows / 4;
  for (int64_t s = 0; s < v.slices; ++s)
    for (int64_t r = 0; r < v.rows; ++r)
      for (int64_t c = 0; c < v.columns; ++c) {
        out.At(s, r, c) = static_cast<float>((1 - fraction) * v.At(s, r, c) +
                                             fraction * v.At(s, (r + shift) % v.rows, c));
      }
  return out;
}

DomainSets CtDomainSets(const std::filesystem::path& templates,
                        const std::filesystem::path& pydicom, std::ostream& log) {
  DomainSets sets;
  sets.trainedOn =
      "simulated low-dose CT of randomised abdomen-thorax phantoms (ct-denoise's training "
      "data: 512x512, 0.65-0.95 mm pixels, a quarter of the full dose)";
  log << "CT reference series\n";
  sets.reference = {"phantoms (seeds 710000-710015)", CtSeries(710000, 16, {0.25}, log)[0]};
  log << "CT calibration series\n";
  sets.calibration = {"phantoms (seeds 711000-711015)", CtSeries(711000, 16, {0.25}, log)[0]};
  log << "CT test series\n";
  const auto test = CtSeries(720000, 8, {0.25, 0.0625}, log);
  sets.test = {"held-out phantoms (seeds 720000-720007)", test[0]};
  const ReferenceMr mr = ReferenceMrHeads(templates);
  sets.far.push_back({"MR sent to a CT model (T1 head slabs, 0-1200)",
                      Map(MrSlabs(mr.ch2better, 180, 204, {0.0, 0.05}, 5),
                          [](const Volume& v) { return Scaled(v, 1200.0, 0.0, "HU"); })});
  sets.far.push_back(PydicomImages(pydicom, log));
  sets.far.push_back(
      {"another body region (a head, same scanner and dose)", HeadCt(templates, log)});
  sets.near.push_back({"noise doubled (a sixteenth of the full dose)", test[1]});
  sets.near.push_back({"smoother kernel (Gaussian 1 px)",
                       Map(test[0], [](const Volume& v) { return Blurred(v, 1.0); })});
  sets.near.push_back({"sharper kernel (unsharp mask 1.0, 1 px)",
                       Map(test[0], [](const Volume& v) { return Sharpened(v, 1.0, 1.0); })});
  sets.near.push_back({"contrast change (HU x 1.25)",
                       Map(test[0], [](const Volume& v) { return Scaled(v, 1.25, 0.0, "HU"); })});
  sets.near.push_back({"motion-like ghosting (25%, a quarter of the rows)",
                       Map(test[0], [](const Volume& v) { return Ghosted(v, 0.25); })});
  return sets;
}

DomainSets MrDomainSets(const std::filesystem::path& templates,
                        const std::filesystem::path& pydicom, std::ostream& log) {
  DomainSets sets;
  sets.trainedOn =
      "T1-weighted human head slices (ch2better and ch2 outside a held-out block, with "
      "Rician noise up to 15% and bias, gamma and noise changes: the data of mr-denoise and "
      "mr2ct)";
  const ReferenceMr mr = ReferenceMrHeads(templates);
  // Reference and threshold: series of every source the MR models were trained on, none
  // in the autoencoder's training data, each within the training's range of noise (mr-denoise:
  // 1-15%; a noise-free ch2better is a masked template, its head starting at 44% of the
  // maximum over an exactly zero background, which no model was trained on) and effects
  // (mr2ct): ch2better slices around mr-denoise's held-out block and in the autoencoder's,
  // ch2 slices in the autoencoder's held-out block (55-74) with mr2ct's random effects, and
  // another human head (jhu189), so that the spread between heads counts as in-distribution.
  const Volume& jhu = mr.jhu189;
  sets.reference = {
      "jhu189 axial slabs (another human head) at noise 0-10%, ch2better slices 100-115 and "
      "170-177 at noise 1-14%, ch2 slices 55-62 with mr2ct's training effects",
      MrSlabs(jhu, 30, jhu.slices - 30, {0.0, 0.05, 0.1}, 11)};
  Append(sets.reference, MrSlabs(mr.ch2better, 170, 178, {0.01, 0.03, 0.06, 0.09, 0.12}, 21));
  Append(sets.reference, MrSlabs(mr.ch2better, 100, 116, {0.02, 0.08, 0.14}, 25));
  Append(sets.reference, Mr2CtSlabs(mr.ch2, 55, 63, 6, 61));
  sets.calibration = {
      "jhu189 axial slabs at noise 2-10%, ch2better slices 116-123 and 204-211 at noise "
      "1.5-11%, ch2 slices 63-70 with mr2ct's training effects",
      MrSlabs(jhu, 34, jhu.slices - 30, {0.025, 0.075}, 31)};
  Append(sets.calibration, MrSlabs(mr.ch2better, 204, 212, {0.02, 0.04, 0.06, 0.08, 0.1}, 41));
  Append(sets.calibration, MrSlabs(mr.ch2better, 116, 124, {0.015, 0.05, 0.11}, 45));
  Append(sets.calibration, Mr2CtSlabs(mr.ch2, 63, 71, 6, 65));
  // Held out: mr-denoise's test block at its test noise levels and the training's least,
  // and mr2ct's test slices with its test effects. KernelChangeBase(false) names the slabs
  // at 3% by their place here (3 to 5).
  sets.test = {"ch2better held-out slices at noise 1-12%, ch2 held-out slices with effects",
               MrSlabs(mr.ch2better, 180, 204, {0.01, 0.03, 0.07, 0.12}, 51)};
  for (const Mr2CtPair& p : Mr2CtTestSet(templates)) Append(sets.test, Split(p.mr, 8));
  log << "MR: " << sets.reference.series.size() << " reference, " << sets.calibration.series.size()
      << " calibration, " << sets.test.series.size() << " test series\n";
  std::vector<Volume> ct = CtSeries(720000, 4, {0.25}, log)[0];
  sets.far.push_back({"CT sent to an MR model (phantoms, HU)", ct});
  sets.far.push_back(PydicomImages(pydicom, log));
  const std::vector<Volume> base = MrSlabs(mr.ch2better, 180, 204, {0.03}, 71);
  sets.near.push_back({"noise doubled (30%, twice the most in training)",
                       MrSlabs(mr.ch2better, 180, 204, {0.30}, 81)});
  sets.near.push_back(
      {"smoother (Gaussian 1 px)", Map(base, [](const Volume& v) { return Blurred(v, 1.0); })});
  sets.near.push_back({"sharper (unsharp mask 1.0, 1 px)",
                       Map(base, [](const Volume& v) { return Sharpened(v, 1.0, 1.0); })});
  sets.near.push_back({"contrast change (gamma 0.5)", Map(base, [](const Volume& v) {
                         return ApplyMrEffects(v, {0.0, 0.5, 0.0}, 91);
                       })});
  sets.near.push_back({"bias field (80%)", Map(base, [](const Volume& v) {
                         return ApplyMrEffects(v, {0.8, 1.0, 0.0}, 93);
                       })});
  sets.near.push_back({"motion-like ghosting (25%, a quarter of the rows)",
                       Map(base, [](const Volume& v) { return Ghosted(v, 0.25); })});
  // The unseen head of mr-denoise's card, one row per noise level: the template itself (a
  // smooth average of many scans), and with noise of the training's levels.
  const Volume& inia = mr.inia19;
  uint64_t iniaSeed = 101;
  for (const auto& [sigma, level] :
       {std::pair<double, const char*>{0.0, "no noise"}, {0.03, "3% noise"}, {0.07, "7% noise"}}) {
    sets.extra.push_back(
        {std::string("INIA19 rhesus macaque T1, ") + level +
             " (the unseen head of mr-denoise's card)",
         MrSlabs(inia, inia.slices / 2 - 12, inia.slices / 2 + 12, {sigma}, iniaSeed)});
    iniaSeed += 3;
  }
  return sets;
}

void AddMrSuperResInputs(DomainSets& sets, const std::filesystem::path& templates) {
  // The two heads mr-superres-x2 was trained on (ReferenceMrHeads would read all four).
  const Volume ch2better = LoadMrReference(templates / "ch2better.nii.gz");
  const Volume jhu = LoadMrReference(templates / "jhu189.nii.gz");
  std::mt19937_64 rng(4242);
  const auto slabs = [&rng](const Volume& head, int64_t first, int64_t last, int draws) {
    return MrSuperResSlabs(head, first, last, draws, rng);
  };
  Append(sets.reference, slabs(ch2better, 100, 116, 2));
  Append(sets.reference, slabs(ch2better, 170, 178, 2));
  Append(sets.reference, slabs(jhu, 30, jhu.slices - 30, 1));
  Append(sets.calibration, slabs(ch2better, 116, 124, 2));
  Append(sets.calibration, slabs(ch2better, 204, 212, 2));
  Append(sets.calibration, slabs(jhu, 34, jhu.slices - 30, 1));
  // After the series KernelChangeBase(false) names.
  Append(sets.test, slabs(ch2better, 180, 204, 2));
  sets.reference.name +=
      "; and mr-superres-x2's inputs: the same ch2better slices and jhu189's "
      "axial slabs noise-free, with its random contrast and sharpness changes";
  sets.calibration.name += "; and mr-superres-x2's inputs (the same, noise-free, with its changes)";
  sets.test.name += "; ch2better held-out slices noise-free with mr-superres-x2's changes";
}

DomainSet MrDemoTemplate(const std::filesystem::path& templates) {
  const Volume ch2 = LoadMrReference(templates / "ch2.nii.gz");
  return {
      "the T1 template ch2 without noise, as scripts/demo.sh sends it (slices 78-101, its "
      "own 1 mm pixels)",
      {SliceRange(ch2, 78, 8), SliceRange(ch2, 86, 8), SliceRange(ch2, 94, 8)}};
}

std::vector<DomainSet> MrTuningSets(const DomainSet& calibration) {
  const std::vector<Volume>& c = calibration.series;
  uint64_t seed = 601;
  // Noise of 30% of the series' bright end (its 99.5th percentile), on top of its own.
  auto noisier = [&seed](const Volume& v) {
    return AddRicianNoise(v, 0.30 * std::max(Percentile(v.voxels, 99.5), 1e-6), seed++);
  };
  std::vector<DomainSet> sets;
  sets.push_back({"calibration series, noise to 30%", Map(c, noisier)});
  sets.push_back({"calibration series, smoother (Gaussian 1 px)",
                  Map(c, [](const Volume& v) { return Blurred(v, 1.0); })});
  sets.push_back({"calibration series, sharper (unsharp mask 1.0, 1 px)",
                  Map(c, [](const Volume& v) { return Sharpened(v, 1.0, 1.0); })});
  sets.push_back({"calibration series, gamma 0.5", Map(c, [&seed](const Volume& v) {
                    return ApplyMrEffects(v, {0.0, 0.5, 0.0}, seed++);
                  })});
  sets.push_back({"calibration series, bias field (80%)", Map(c, [&seed](const Volume& v) {
                    return ApplyMrEffects(v, {0.8, 1.0, 0.0}, seed++);
                  })});
  sets.push_back({"calibration series, ghosting (25%)",
                  Map(c, [](const Volume& v) { return Ghosted(v, 0.25); })});
  return sets;
}

}  // namespace enhance::models
