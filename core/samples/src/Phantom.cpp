// SPDX-License-Identifier: GPL-3.0-or-later
#include "enhance/samples/Phantom.h"

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "enhance/base/Error.h"
#include "enhance/base/Uid.h"

namespace enhance {
namespace {

constexpr double kPi = 3.14159265358979323846;

// Typical attenuation of the tissues in the phantom, in HU.
constexpr float kAir = -1000.0f;
constexpr float kLung = -850.0f;
constexpr float kFat = -100.0f;
constexpr float kSoftTissue = 40.0f;
constexpr float kLiver = 60.0f;
constexpr float kKidney = 150.0f;
constexpr float kContrastBlood = 250.0f;
constexpr float kCancellousBone = 300.0f;
constexpr float kCorticalBone = 1200.0f;
constexpr float kRib = 800.0f;
constexpr float kCsf = 15.0f;

double SmoothStep(double edge0, double edge1, double x) {
  const double t = std::clamp((x - edge0) / (edge1 - edge0), 0.0, 1.0);
  return t * t * (3.0 - 2.0 * t);
}

bool InEllipse(double x, double y, double cx, double cy, double ax, double ay) {
  if (ax <= 0 || ay <= 0) return false;
  const double dx = (x - cx) / ax;
  const double dy = (y - cy) / ay;
  return dx * dx + dy * dy <= 1.0;
}

struct Vessel {
  double x, y, radius, phase;
};

// The random parts of one phantom, drawn in this order from the phantom's generator.
struct Anatomy {
  std::vector<Vessel> vessels;
  double texturePhase[4];
  double bodyWidth;
  double bodyDepth;
};

Anatomy DrawAnatomy(std::mt19937_64& rng) {
  std::uniform_real_distribution<double> uniform(0.0, 1.0);
  Anatomy a;
  for (int i = 0; i < 40; ++i) {
    const double side = (i % 2 == 0) ? 1.0 : -1.0;
    a.vessels.push_back({side * (30 + 70 * uniform(rng)), -70 + 120 * uniform(rng),
                         1.5 + 3.0 * uniform(rng), 2 * kPi * uniform(rng)});
  }
  for (double& phase : a.texturePhase) phase = 2 * kPi * uniform(rng);
  a.bodyWidth = 165 + 15 * uniform(rng);
  a.bodyDepth = 115 + 10 * uniform(rng);
  return a;
}

// Where along the body a slice lies: 0 = inferior (abdomen) ... 1 = superior (thorax).
struct Level {
  double zmm;
  double thorax;
  double abdomen;
  double ribBand;  // ribs every 25 mm
};

// Inside the muscle wall: organs, lungs with vessels, aorta and spine.
float InnerTissue(const Anatomy& a, const Level& z, double x, double y) {
  float hu = kSoftTissue + 8.0f * static_cast<float>(std::sin(x / 23 + a.texturePhase[0]) *
                                                     std::sin(y / 31 + a.texturePhase[1]));
  // Lungs with vessels, shrinking towards the abdomen.
  const double lungScale = z.thorax;
  bool inLung = false;
  for (double side : {-1.0, 1.0}) {
    if (InEllipse(x, y, side * 68, -5, 52 * lungScale, 78 * lungScale)) inLung = true;
  }
  if (inLung) {
    hu = kLung + 30.0f * static_cast<float>(std::sin(x / 9 + a.texturePhase[2]) *
                                            std::sin(y / 11 + a.texturePhase[3]));
    for (const auto& vessel : a.vessels) {
      const double radius = vessel.radius * (0.7 + 0.3 * std::sin(z.zmm / 15 + vessel.phase));
      if (InEllipse(x, y, vessel.x, vessel.y, radius, radius)) hu = kSoftTissue;
    }
  }
  // Heart (thorax) and liver (abdomen).
  if (InEllipse(x, y, 18, -28, 48 * z.thorax, 42 * z.thorax)) hu = kSoftTissue + 10;
  if (InEllipse(x, y, -55, -5, 85 * z.abdomen, 70 * z.abdomen)) hu = kLiver;
  // Kidneys.
  for (double side : {-1.0, 1.0}) {
    if (InEllipse(x, y, side * 62, 52, 24 * z.abdomen, 34 * z.abdomen)) hu = kKidney;
  }
  // Aorta with contrast.
  if (InEllipse(x, y, 22, 40, 12, 12)) hu = kContrastBlood;
  // Spine: vertebral body with cortical shell, spinal canal, posterior elements.
  if (InEllipse(x, y, 0, 72, 19, 17)) {
    hu = InEllipse(x, y, 0, 72, 16, 14) ? kCancellousBone : kCorticalBone;
  }
  if (InEllipse(x, y, 0, 96, 14, 10)) hu = kCorticalBone;
  if (InEllipse(x, y, 0, 95, 7, 6)) hu = kCsf;
  return hu;
}

// The noise-free value at (x, y) millimetres from the centre, in the phantom's own scale.
float Tissue(const Anatomy& a, const Level& z, double x, double y) {
  const double bw = a.bodyWidth * (0.95 + 0.05 * z.thorax);
  const double bd = a.bodyDepth * (0.95 + 0.05 * z.abdomen);
  if (!InEllipse(x, y, 0, 5, bw, bd)) return kAir;
  float hu = kFat;
  if (InEllipse(x, y, 0, 5, bw - 15, bd - 14)) hu = InnerTissue(a, z, x, y);
  // Ribs in the thorax: small bony ellipses just inside the muscle wall.
  if (z.thorax > 0.5 && z.ribBand > 0.6) {
    for (int k = 0; k < 12; ++k) {
      // Six ribs on the posterior half (k < 6), six on the anterior half.
      const double angle = (k < 6 ? 0.0 : kPi) + kPi * (0.12 + 0.76 * (k % 6) / 5.0);
      const double rx = (bw - 22) * std::cos(angle);
      const double ry = 5 + (bd - 20) * std::sin(angle);
      if (InEllipse(x, y, rx, ry, 6, 4)) hu = kRib;
    }
  }
  return hu;
}

// An axial stack centred in x and y, starting 200 mm below the origin.
void SetGeometry(const PhantomOptions& o, Geometry& g) {
  g.rowSpacing = o.pixelSpacing;
  g.columnSpacing = o.pixelSpacing;
  g.sliceSpacing = o.sliceSpacing;
  g.sliceThickness = o.sliceSpacing;
  g.frameOfReferenceUid = GenerateUid();
  const double x0 = -(static_cast<double>(o.columns) - 1) / 2 * o.pixelSpacing;
  const double y0 = -(static_cast<double>(o.rows) - 1) / 2 * o.pixelSpacing;
  for (int64_t s = 0; s < o.slices; ++s) {
    g.slicePositions.push_back({x0, y0, -200.0 + static_cast<double>(s) * o.sliceSpacing});
  }
}

}  // namespace

Volume MakeCtPhantom(const PhantomOptions& o) {
  if (o.rows < 8 || o.columns < 8 || o.slices < 1 || o.pixelSpacing <= 0 || o.sliceSpacing <= 0) {
    throw Error(ErrorKind::kBadInput, "phantom size must be at least 8x8x1 with positive spacing");
  }
  Volume v;
  v.Resize(o.slices, o.rows, o.columns);
  v.units = "HU";

  std::mt19937_64 rng(o.seed);
  const Anatomy anatomy = DrawAnatomy(rng);
  // The phantom is drawn in millimetres for an adult of fixed size, then scaled so the
  // body fills about 85% of the field of view whatever the matrix size.
  const double fovX = static_cast<double>(o.columns) * o.pixelSpacing;
  const double fovY = static_cast<double>(o.rows) * o.pixelSpacing;
  const double scale = std::min(fovX / 400.0, fovY / 400.0);
  std::normal_distribution<float> noise(0.0f, static_cast<float>(o.noiseSigmaHu));
  const double length = std::max<double>(1.0, static_cast<double>(o.slices - 1) * o.sliceSpacing);

  for (int64_t s = 0; s < o.slices; ++s) {
    Level z;
    z.zmm = static_cast<double>(s) * o.sliceSpacing;
    z.thorax = SmoothStep(0.35, 0.65, z.zmm / length);
    z.abdomen = 1.0 - z.thorax;
    z.ribBand = 0.5 + 0.5 * std::cos(2 * kPi * z.zmm / 25.0);
    for (int64_t r = 0; r < o.rows; ++r) {
      // Millimetres from the centre of the field of view, in the phantom's own scale.
      const double y = ((static_cast<double>(r) + 0.5) * o.pixelSpacing - fovY / 2) / scale;
      for (int64_t c = 0; c < o.columns; ++c) {
        const double x = ((static_cast<double>(c) + 0.5) * o.pixelSpacing - fovX / 2) / scale;
        float hu = Tissue(anatomy, z, x, y);
        if (o.noiseSigmaHu > 0) hu += noise(rng);
        v.At(s, r, c) = hu;
      }
    }
  }
  SetGeometry(o, v.geometry);
  return v;
}

}  // namespace enhance
