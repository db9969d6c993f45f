// SPDX-License-Identifier: GPL-3.0-or-later
#include "enhance/quality/Metrics.h"

#include <gtest/gtest.h>
#include <json/reader.h>

#include <cmath>
#include <cstring>
#include <fstream>

#include "TestData.h"
#include "enhance/base/Error.h"

namespace enhance {
namespace {

const std::string kFixtures = ENHANCE_FIXTURES "/metrics";

Volume LoadVolume(const std::string& name, int64_t s, int64_t r, int64_t c) {
  const std::string bytes = testing::ReadFile(kFixtures + "/" + name);
  Volume v;
  v.Resize(s, r, c);
  v.units = "HU";
  EXPECT_EQ(bytes.size(), v.voxels.size() * sizeof(float));
  std::memcpy(v.voxels.data(), bytes.data(), bytes.size());
  for (int64_t k = 0; k < s; ++k) v.geometry.slicePositions.push_back({0, 0, 1.0 * k});
  return v;
}

Json::Value Expected() {
  std::ifstream stream(kFixtures + "/expected.json");
  Json::Value value;
  Json::CharReaderBuilder builder;
  std::string errors;
  EXPECT_TRUE(Json::parseFromStream(builder, stream, &value, &errors)) << errors;
  return value;
}

void ExpectMatches(const QualityReport& report, const Json::Value& expected) {
  EXPECT_NEAR(report.dataRange, expected["DataRange"].asDouble(), 1e-9);
  EXPECT_NEAR(report.overall.psnr, expected["Overall"]["PSNR"].asDouble(), 1e-6);
  EXPECT_NEAR(report.overall.mae, expected["Overall"]["MAE"].asDouble(), 1e-6);
  EXPECT_NEAR(report.overall.rmse, expected["Overall"]["RMSE"].asDouble(), 1e-6);
  ASSERT_EQ(report.slices.size(), expected["Slices"].size());
  for (Json::ArrayIndex k = 0; k < expected["Slices"].size(); ++k) {
    const Json::Value& e = expected["Slices"][k];
    EXPECT_NEAR(report.slices[k].psnr, e["PSNR"].asDouble(), 1e-6) << "slice " << k;
    EXPECT_NEAR(report.slices[k].ssim, e["SSIM"].asDouble(), 1e-6) << "slice " << k;
    EXPECT_NEAR(report.slices[k].mae, e["MAE"].asDouble(), 1e-6) << "slice " << k;
    EXPECT_NEAR(report.slices[k].rmse, e["RMSE"].asDouble(), 1e-6) << "slice " << k;
  }
}

}  // namespace

// Reference values from scikit-image (tests/fixtures/make_metric_fixtures.py).
TEST(Metrics, FullRangeMatchesScikitImage) {
  const Json::Value expected = Expected();
  const Volume ref = LoadVolume("reference.f32", 3, 40, 48);
  const Volume test = LoadVolume("test.f32", 3, 40, 48);
  MetricOptions options;
  options.dataRange = expected["FullRange"]["DataRange"].asDouble();
  ExpectMatches(CompareVolumes(ref, test, options), expected["FullRange"]);
  // Without an explicit range the reference's range is used, which is the same here.
  ExpectMatches(CompareVolumes(ref, test, {}), expected["FullRange"]);
}

TEST(Metrics, HuWindowMatchesScikitImage) {
  const Json::Value expected = Expected();
  MetricOptions options;
  options.windowLow = -160;
  options.windowHigh = 240;
  ExpectMatches(CompareVolumes(LoadVolume("reference.f32", 3, 40, 48),
                               LoadVolume("test.f32", 3, 40, 48), options),
                expected["Window"]);
}

TEST(Metrics, IdenticalVolumesArePerfect) {
  const Volume v = LoadVolume("reference.f32", 3, 40, 48);
  const QualityReport r = CompareVolumes(v, v, {});
  EXPECT_TRUE(std::isinf(r.overall.psnr));
  EXPECT_NEAR(r.overall.ssim, 1.0, 1e-12);
  EXPECT_EQ(r.overall.mae, 0.0);
}

TEST(Metrics, BodyMaskKeepsTheLargestComponentOnly) {
  Volume v;
  v.Resize(1, 10, 10);
  for (float& x : v.voxels) x = -1000;
  for (int r = 2; r < 6; ++r)
    for (int c = 2; c < 6; ++c) v.At(0, r, c) = 40;  // body: 16 voxels
  v.At(0, 8, 8) = 40;                                // table or noise: 1 voxel
  const auto mask = BodyMask(v, -500);
  int count = 0;
  for (auto m : mask) count += m;
  EXPECT_EQ(count, 16);
  EXPECT_EQ(mask[8 * 10 + 8], 0);
  v.units = "HU";
  Volume t = v;
  t.At(0, 8, 8) = 1000;  // outside the body: does not count
  t.At(0, 3, 3) = 56;    // inside: 16 HU error on one voxel
  MetricOptions options;
  options.bodyMask = true;
  const QualityReport r = CompareVolumes(v, t, options);
  EXPECT_EQ(r.overall.voxels, 16);
  EXPECT_NEAR(r.overall.mae, 1.0, 1e-12);
}

TEST(Metrics, DifferentGeometriesAreRefused) {
  Volume a = LoadVolume("reference.f32", 3, 40, 48);
  Volume b = a;
  b.geometry.slicePositions[1] = {0, 0, 5};
  try {
    CompareVolumes(a, b, {});
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("slice 2 is not at the same position"), std::string::npos);
  }
  Volume c;
  c.Resize(1, 2, 2);
  EXPECT_THROW(CompareVolumes(a, c, {}), Error);
}

}  // namespace enhance

namespace enhance {

// Dice and IoU worked by hand on a 1x2x5 volume: reference bone (> 250) at voxels 0-3,
// test bone at voxels 2-5: |R| = 4, |T| = 4, both 2, Dice 0.5, IoU 1/3.
TEST(Metrics, TissueClassOverlapWorkedByHand) {
  Volume reference;
  reference.Resize(1, 2, 5);
  reference.units = "HU";
  Volume test = reference;
  const std::vector<float> r{800, 700, 600, 300, 0, 0, -800, -900, 40, 40};
  const std::vector<float> t{100, 100, 600, 300, 400, 900, -200, -900, -900, 40};
  reference.voxels = r;
  test.voxels = t;
  const std::vector<TissueClass> classes{{"bone", 250.0, std::nullopt},
                                         {"air", std::nullopt, -400.0},
                                         {"soft", -100.0, 100.0},
                                         {"metal", 3000.0, std::nullopt}};
  const std::vector<ClassOverlap> o = CompareClasses(reference, test, classes, {});
  ASSERT_EQ(o.size(), 4u);
  EXPECT_EQ(o[0].name, "bone");
  EXPECT_EQ(o[0].reference, 4);
  EXPECT_EQ(o[0].test, 4);
  EXPECT_EQ(o[0].both, 2);
  EXPECT_DOUBLE_EQ(o[0].dice, 0.5);
  EXPECT_DOUBLE_EQ(o[0].iou, 1.0 / 3.0);
  // Air: reference voxels 6, 7; test voxels 7, 8: Dice 0.5, IoU 1/3.
  EXPECT_EQ(o[1].both, 1);
  EXPECT_DOUBLE_EQ(o[1].dice, 0.5);
  // Soft, strictly between -100 and 100: reference voxels 4, 5, 8, 9; test voxel 9 alone
  // (its 100s are not below 100): both 1, Dice 2/5, IoU 1/4.
  EXPECT_EQ(o[2].test, 1);
  EXPECT_DOUBLE_EQ(o[2].dice, 0.4);
  EXPECT_DOUBLE_EQ(o[2].iou, 0.25);
  // In neither: undefined, not a perfect score.
  EXPECT_TRUE(std::isnan(o[3].dice));
  EXPECT_TRUE(std::isnan(o[3].iou));
  // A class without threshold is refused; so are volumes of different sizes.
  EXPECT_THROW(CompareClasses(reference, test, {{"nothing", std::nullopt, std::nullopt}}, {}),
               Error);
  Volume other;
  other.Resize(1, 1, 5);
  EXPECT_THROW(CompareClasses(reference, other, classes, {}), Error);
}

Volume Row(const std::vector<float>& values) {
  Volume v;
  v.Resize(1, 1, static_cast<int64_t>(values.size()));
  v.voxels = values;
  return v;
}

TEST(Metrics, SpearmanWorkedByHand) {
  // Ranks of b: 5 -> 1, 6 -> 2, the two 7s share 3.5, 8 -> 5. Against 1..5 the deviations
  // are (-2,-1,0,1,2) and (-2,-1,0.5,2,0.5): covariance 8, variances 10 and 9.5.
  const Volume a = Row({1, 2, 3, 4, 5});
  const Volume b = Row({5, 6, 7, 8, 7});
  EXPECT_NEAR(SpearmanCorrelation(a, b, {}), 8.0 / std::sqrt(95.0), 1e-12);
  // Without the last voxel the order is the same: 1.
  EXPECT_NEAR(SpearmanCorrelation(a, b, {1, 1, 1, 1, 0}), 1.0, 1e-12);
  // Any increasing transform keeps the ranks; a decreasing one reverses them.
  EXPECT_NEAR(SpearmanCorrelation(a, Row({1, 8, 27, 64, 1000}), {}), 1.0, 1e-12);
  EXPECT_NEAR(SpearmanCorrelation(a, Row({0, -1, -5, -6, -60}), {}), -1.0, 1e-12);
  // A constant volume or one voxel: undefined, not a perfect score.
  EXPECT_TRUE(std::isnan(SpearmanCorrelation(a, Row({3, 3, 3, 3, 3}), {})));
  EXPECT_TRUE(std::isnan(SpearmanCorrelation(a, b, {0, 0, 1, 0, 0})));
  // A mask of another size and volumes of other sizes are refused.
  EXPECT_THROW(SpearmanCorrelation(a, b, {1, 1}), Error);
  EXPECT_THROW(SpearmanCorrelation(a, Row({1, 2}), {}), Error);
}

// The AUC worked by hand: of the 3 x 2 pairs, (0.9 > 0.2, 0.9 > 0.5, 0.5 = 0.5 -> 1/2,
// 0.5 > 0.2, 0.1 < 0.2, 0.1 < 0.5): 3.5 / 6.
TEST(Metrics, AreaUnderRocWorkedByHand) {
  EXPECT_NEAR(AreaUnderRoc({0.9, 0.5, 0.1}, {0.2, 0.5}), 3.5 / 6.0, 1e-12);
  EXPECT_DOUBLE_EQ(AreaUnderRoc({3, 4}, {1, 2}), 1.0);
  EXPECT_DOUBLE_EQ(AreaUnderRoc({1, 2}, {3, 4}), 0.0);
  EXPECT_DOUBLE_EQ(AreaUnderRoc({1, 1}, {1}), 0.5);
  // Scores closer than a float can tell apart are still ranked.
  EXPECT_DOUBLE_EQ(AreaUnderRoc({1.0 + 1e-12}, {1.0}), 1.0);
  EXPECT_TRUE(std::isnan(AreaUnderRoc({}, {1})));
  EXPECT_TRUE(std::isnan(AreaUnderRoc({1}, {std::nan("")})));
}

}  // namespace enhance
