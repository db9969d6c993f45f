// SPDX-License-Identifier: GPL-3.0-or-later
#include "enhance/inference/DomainCheck.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <random>

#include "DicomUtil.h"
#include "ModelFixtures.h"
#include "TestData.h"
#include "TestDicom.h"
#include "enhance/base/Error.h"
#include "enhance/inference/TorchModel.h"
#include "enhance/pipeline/SeriesEnhancer.h"

namespace enhance {
namespace {

const std::filesystem::path kFolder = "/models/m";

Json::Value WithDomain(const Json::Value& section) {
  Json::Value m = testing::DenoiseManifest("ct-denoise");
  m["domain_check"] = section;
  return m;
}

std::string ErrorOf(const Json::Value& section) {
  try {
    ParseManifest(WithDomain(section), kFolder);
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kBadInput);
    return e.what();
  }
  return "no error";
}

std::shared_ptr<const TorchModel> ModelWithDomainCheck(const std::filesystem::path& parent,
                                                       double threshold, int crop = 0,
                                                       int downsample = 1) {
  Json::Value m = testing::DenoiseManifest("ct-checked");
  m["tile"]["size"] = 0;
  m["domain_check"] = testing::DomainCheckSection(threshold);
  if (crop > 0) m["domain_check"]["crop"] = crop;
  if (downsample > 1) m["domain_check"]["downsample"] = downsample;
  InferenceOptions options;
  options.device = "cpu";
  return TorchModel::Load(testing::WriteFixtureModel(parent, "identity", m), options);
}

// rows x columns values of Gaussian noise (standard deviation 200), the same for a seed.
std::vector<float> NoiseSlice(unsigned seed, int64_t rows, int64_t columns) {
  std::mt19937 random(seed);
  std::normal_distribution<float> noise(0.0f, 200.0f);
  std::vector<float> values(static_cast<size_t>(rows * columns));
  for (float& v : values) v = noise(random);
  return values;
}

void ExpectSameFeatures(const SliceDomainFeatures& a, const SliceDomainFeatures& b) {
  EXPECT_DOUBLE_EQ(a.logReconstruction, b.logReconstruction);
  EXPECT_DOUBLE_EQ(a.logKl, b.logKl);
  EXPECT_DOUBLE_EQ(a.logResidual, b.logResidual);
  EXPECT_DOUBLE_EQ(a.meanIntensity, b.meanIntensity);
  EXPECT_DOUBLE_EQ(a.residualCorrelation, b.residualCorrelation);
}

std::string TagOf(const std::string& file, const DcmTagKey& tag) {
  const auto parsed = testing::ParseDicom(file);
  return GetString(*parsed->getDataset(), tag);
}

// A check whose scores are easy to work by hand: the training series' median log r at -8
// (SD 0.5) and median log k at -1 (SD 2), and `threshold`.
DomainCheckSpec WorkedByHand(double threshold) {
  DomainCheckSpec spec;
  spec.reconstructionMean = -8;
  spec.reconstructionSd = 0.5;
  spec.klMean = -1;
  spec.klSd = 2;
  spec.threshold = threshold;
  return spec;
}

}  // namespace

TEST(DomainCheck, ManifestSectionIsParsedWithTheModelsNormalisationByDefault) {
  const ModelSpec s = ParseManifest(WithDomain(testing::DomainCheckSection(3.5)), kFolder);
  ASSERT_TRUE(s.hasDomainCheck);
  const DomainCheckSpec& d = s.domainCheck;
  EXPECT_EQ(d.archive, kFolder / "domain.pt");
  EXPECT_EQ(d.input.method, Normalization::Method::kWindow);
  EXPECT_DOUBLE_EQ(d.input.low, -1000);
  EXPECT_EQ(d.units, "HU");  // a CT model: the body is above -500 HU
  EXPECT_EQ(d.sizeMultiple, 8);
  EXPECT_DOUBLE_EQ(d.reconstructionMean, -3.7);
  EXPECT_DOUBLE_EQ(d.klSd, 0.25);
  EXPECT_DOUBLE_EQ(d.threshold, 3.5);
  EXPECT_EQ(d.trainedOn, "unit test fixtures");
  EXPECT_FALSE(ParseManifest(testing::DenoiseManifest("plain"), kFolder).hasDomainCheck);

  Json::Value own = testing::DomainCheckSection(3.5);
  own["input_normalization"]["method"] = "percentile";
  own["input_normalization"]["low"] = 0;
  own["input_normalization"]["high"] = 99.5;
  own["size_multiple"] = 16;
  const DomainCheckSpec p = ParseManifest(WithDomain(own), kFolder).domainCheck;
  EXPECT_EQ(p.input.method, Normalization::Method::kPercentile);
  EXPECT_EQ(p.sizeMultiple, 16);
}

TEST(DomainCheck, ManifestErrorsNameTheKey) {
  const Json::Value good = testing::DomainCheckSection(3.5);
  auto with = [&good](const char* key, const Json::Value& value) {
    Json::Value d = good;
    d[key] = value;
    return d;
  };
  auto without = [&good](const char* key) {
    Json::Value d = good;
    d.removeMember(key);
    return d;
  };
  EXPECT_NE(ErrorOf("domain.pt").find("domain_check: must be an object"), std::string::npos);
  EXPECT_NE(ErrorOf(without("archive")).find("domain_check.archive: is required"),
            std::string::npos);
  EXPECT_NE(ErrorOf(with("archive", "../other/domain.pt")).find("domain_check.archive"),
            std::string::npos);
  EXPECT_NE(ErrorOf(with("archive", "model.pt")).find("not be the model's own archive"),
            std::string::npos);
  EXPECT_NE(ErrorOf(without("reference")).find("domain_check.reference: is required"),
            std::string::npos);
  Json::Value zeroSd = good;
  zeroSd["reference"]["log_kl"][1] = 0.0;
  EXPECT_NE(ErrorOf(zeroSd).find("domain_check.reference.log_kl: must be [mean, standard"),
            std::string::npos);
  EXPECT_FALSE(ParseManifest(WithDomain(good), kFolder).domainCheck.hasResidualReference);
  Json::Value residual = good;
  residual["reference"]["log_residual"].append(-4.5);
  residual["reference"]["log_residual"].append(0.1);
  const DomainCheckSpec withResidual = ParseManifest(WithDomain(residual), kFolder).domainCheck;
  EXPECT_TRUE(withResidual.hasResidualReference);
  EXPECT_DOUBLE_EQ(withResidual.residualMean, -4.5);
  EXPECT_DOUBLE_EQ(withResidual.residualSd, 0.1);
  residual["reference"]["log_residual"][1] = -1.0;
  EXPECT_NE(ErrorOf(residual).find("domain_check.reference.log_residual: must be [mean"),
            std::string::npos);
  Json::Value single = good;
  single["reference"]["log_reconstruction"] = Json::Value(Json::arrayValue);
  EXPECT_NE(ErrorOf(single).find("domain_check.reference.log_reconstruction"), std::string::npos);
  Json::Value extra = good;
  extra["reference"]["likelihood"] = 1;
  EXPECT_NE(ErrorOf(extra).find("domain_check.reference.likelihood: unknown key"),
            std::string::npos);
  EXPECT_NE(ErrorOf(without("threshold")).find("domain_check.threshold: must be a number"),
            std::string::npos);
  EXPECT_NE(ErrorOf(with("threshold", -1)).find("domain_check.threshold: must be a number above 0"),
            std::string::npos);
  EXPECT_NE(ErrorOf(with("size_multiple", 0)).find("domain_check.size_multiple"),
            std::string::npos);
  EXPECT_NE(ErrorOf(with("score", "likelihood")).find("domain_check.score: unknown key"),
            std::string::npos);
  Json::Value badNorm = with("input_normalization", Json::Value(Json::objectValue));
  badNorm["input_normalization"]["method"] = "histogram";
  EXPECT_NE(ErrorOf(badNorm).find("domain_check.input_normalization.method"), std::string::npos);
}

// "short_series": the reference series' single slices, and the thresholds of series scored
// on 1, 2, ... slices (fewer than min_slices), each at least the check's.
TEST(DomainCheck, ShortSeriesSectionIsParsedAndChecked) {
  Json::Value section = testing::DomainCheckSection(3.5);
  section["min_slices"] = 4;
  Json::Value point(Json::arrayValue);
  point.append(-3.0);
  point.append(-1.0);
  section["short_series"]["series"].append(point);
  section["short_series"]["thresholds"].append(4.0);
  section["short_series"]["thresholds"].append(3.5);  // the check's own: allowed
  const DomainCheckSpec d = ParseManifest(WithDomain(section), kFolder).domainCheck;
  EXPECT_EQ(d.shortSeriesSlices, (std::vector<std::vector<double>>{{-3.0, -1.0}}));
  EXPECT_EQ(d.shortSeriesThresholds, (std::vector<double>{4.0, 3.5}));
  const DomainCheckSpec plain =
      ParseManifest(WithDomain(testing::DomainCheckSection(3.5)), kFolder).domainCheck;
  EXPECT_TRUE(plain.shortSeriesSlices.empty());
  EXPECT_TRUE(plain.shortSeriesThresholds.empty());

  auto errorWith = [&section](const std::function<void(Json::Value&)>& change) {
    Json::Value bad = section;
    change(bad);
    return ErrorOf(bad);
  };
  // Stricter than the check on longer series: refused, naming the entry.
  EXPECT_NE(errorWith([](Json::Value& b) { b["short_series"]["thresholds"][1] = 3.0; })
                .find("domain_check.short_series.thresholds: entry 1 must be a number at least "
                      "the threshold (3.5)"),
            std::string::npos);
  EXPECT_NE(errorWith([](Json::Value& b) {
              b["short_series"]["thresholds"][0] = "high";
            }).find("domain_check.short_series.thresholds: entry 0"),
            std::string::npos);
  // One threshold per length below min_slices, at most; at least one.
  EXPECT_NE(
      errorWith([](Json::Value& b) {
        b["short_series"]["thresholds"].append(4.0);
        b["short_series"]["thresholds"].append(4.0);
      }).find("domain_check.short_series.thresholds: must be a list of 1 to min_slices - 1 (3)"),
      std::string::npos);
  EXPECT_NE(errorWith([](Json::Value& b) {
              b["short_series"]["thresholds"] = Json::Value(Json::arrayValue);
            }).find("domain_check.short_series.thresholds: must be a list"),
            std::string::npos);
  // Reference slices with the features the check scores (log r and log k here), required.
  EXPECT_NE(errorWith([](Json::Value& b) {
              b["short_series"]["series"][0].append(1.0);
            }).find("domain_check.short_series.series: each entry must be [log r, log k]"),
            std::string::npos);
  EXPECT_NE(errorWith([](Json::Value& b) {
              b["short_series"].removeMember("series");
            }).find("domain_check.short_series.series: must be a list"),
            std::string::npos);
  EXPECT_NE(errorWith([](Json::Value& b) {
              b["short_series"]["likelihood"] = 1;
            }).find("domain_check.short_series.likelihood: unknown key"),
            std::string::npos);
  EXPECT_NE(errorWith([](Json::Value& b) {
              b["short_series"] = 4.0;
            }).find("domain_check.short_series: must be an object"),
            std::string::npos);
}

// A series scored on fewer slices than the minimum is judged slice by slice against the
// reference slices (the median of the slices' distances to their nearest), with the
// threshold of its length; a longer one as before.
TEST(DomainCheck, ShortSeriesAreJudgedSliceBySliceAgainstTheReferenceSlices) {
  DomainCheckSpec spec = WorkedByHand(2);
  spec.minSlices = 4;
  // Two clusters of single slices, neither at the series' mean.
  spec.shortSeriesSlices = {{-9, -1}, {-7, -1}};
  spec.shortSeriesThresholds = {3.0, 5.0};
  // A slice of the first cluster: 0 from its nearest reference slice, though 2 from the mean.
  DomainScore s = AggregateDomainScore(spec, {{-9, -1}});
  EXPECT_DOUBLE_EQ(s.score, 0.0);
  EXPECT_DOUBLE_EQ(s.threshold, 3.0);
  EXPECT_FALSE(s.outside);
  EXPECT_DOUBLE_EQ(s.logReconstruction, -9);  // the medians are reported as for any series
  // 3.5 from the nearest reference slice (-7): above the one-slice threshold 3.
  s = AggregateDomainScore(spec, {{-5.25, -1}});
  EXPECT_NEAR(s.score, 3.5, 1e-12);
  EXPECT_TRUE(s.outside);
  EXPECT_EQ(DescribeDomainScore(s), "domain score 3.50 above the threshold 3.00");
  // Two slices, one in each cluster: each 0 from its nearest, so 0, though their medians
  // (-8, -1) are what a longer series' would be compared with.
  s = AggregateDomainScore(spec, {{-9, -1}, {-7, -1}});
  EXPECT_DOUBLE_EQ(s.score, 0.0);
  EXPECT_DOUBLE_EQ(s.threshold, 5.0);
  // Two slices at 0 and 6 from their nearest: the median of the distances, 3, within 5.
  s = AggregateDomainScore(spec, {{-9, -1}, {-4, -1}});
  EXPECT_NEAR(s.score, 3.0, 1e-12);
  EXPECT_FALSE(s.outside);
  // A figure that is not a number is outside, never silently within.
  s = AggregateDomainScore(spec, {{std::nan(""), -1}, {-9, -1}});
  EXPECT_TRUE(std::isnan(s.score));
  EXPECT_TRUE(s.outside);
  // Three slices: past the thresholds' list, the check's own threshold and reference (the
  // mean): medians -6 and -1 -> 4, above 2.
  s = AggregateDomainScore(spec, {{-7, -1}, {-6, -1}, {-5, -1}});
  EXPECT_NEAR(s.score, 4.0, 1e-12);
  EXPECT_DOUBLE_EQ(s.threshold, 2.0);
  EXPECT_TRUE(s.outside);
}

// The score worked by hand: medians of log r, log k (and log m), then their distance in
// standard deviations from the training series' mean.
TEST(DomainCheck, ScoreIsTheTypicalityOfTheMedians) {
  DomainCheckSpec spec = WorkedByHand(4);
  spec.trainedOn = "phantoms";
  // Medians -8 and -1: the training mean itself.
  DomainScore s = AggregateDomainScore(spec, {{-9, -1}, {-8, -2}, {-7, 0}});
  EXPECT_DOUBLE_EQ(s.score, 0.0);
  EXPECT_FALSE(s.outside);
  EXPECT_EQ(s.slices, 3);
  EXPECT_EQ(s.trainedOn, "phantoms");
  // Two slices: medians are means, -6 and 1 -> z = (4, 1) -> sqrt(17) > 4.
  s = AggregateDomainScore(spec, {{-7, 0}, {-5, 2}});
  EXPECT_DOUBLE_EQ(s.logReconstruction, -6);
  EXPECT_DOUBLE_EQ(s.logKl, 1);
  EXPECT_NEAR(s.score, std::sqrt(17.0), 1e-12);
  EXPECT_TRUE(s.outside);
  EXPECT_EQ(DescribeDomainScore(s), "domain score 4.12 above the threshold 4.00");
  // Two-sided: reconstructing better than the training data is as foreign.
  s = AggregateDomainScore(spec, {{-10.5, -1}});
  EXPECT_NEAR(s.score, 5.0, 1e-12);
  EXPECT_TRUE(s.outside);
  // One odd slice does not move the median.
  s = AggregateDomainScore(spec, {{-8, -1}, {-8, -1}, {0, 20}});
  EXPECT_DOUBLE_EQ(s.score, 0.0);
  // A figure that is not a number is outside, never silently within.
  s = AggregateDomainScore(spec, {{std::nan(""), -1}});
  EXPECT_TRUE(s.outside);
  EXPECT_THROW(AggregateDomainScore(spec, {}), Error);
  // The median log m counts only when the reference has it: medians -8, -1, -3 against a
  // residual reference of -4 +- 0.25 -> z = (0, 0, 4) -> 4, within (not above) 4.
  const std::vector<SliceDomainFeatures> noisy{{-8, -1, -3}, {-8, -1, -3.2}, {-8, -1, -2.8}};
  EXPECT_DOUBLE_EQ(AggregateDomainScore(spec, noisy).score, 0.0);
  spec.hasResidualReference = true;
  spec.residualMean = -4;
  spec.residualSd = 0.25;
  s = AggregateDomainScore(spec, noisy);
  EXPECT_DOUBLE_EQ(s.logResidual, -3);
  EXPECT_NEAR(s.score, 4.0, 1e-12);
  spec.residualSd = 0.2;
  EXPECT_TRUE(AggregateDomainScore(spec, noisy).outside);
}

// With the reference's series listed, the distance (in the reference's standard
// deviations) to the nearest of them: of the points (-8, -1, -4) and (-6, 1, -3) with
// standard deviations 0.5, 2 and 0.25, medians (-6.5, 1, -3) are 1 from the second, though
// 2.2 from their mean (-7, 0, -3.5).
TEST(DomainCheck, ScoreIsTheDistanceToTheNearestReferenceSeriesWhenListed) {
  DomainCheckSpec spec;
  spec.reconstructionMean = -7;
  spec.reconstructionSd = 0.5;
  spec.klMean = 0;
  spec.klSd = 2;
  spec.hasResidualReference = true;
  spec.residualMean = -3.5;
  spec.residualSd = 0.25;
  spec.threshold = 1.5;
  const std::vector<SliceDomainFeatures> slices{
      {-6.5, 1, -3}, {-6.4, 1.2, -2.9}, {-6.6, 0.8, -3.1}};
  DomainScore s = AggregateDomainScore(spec, slices);
  EXPECT_NEAR(s.score, std::sqrt(1.0 + 0.25 + 4.0), 1e-12);
  EXPECT_TRUE(s.outside);
  spec.referenceSeries = {{-8, -1, -4}, {-6, 1, -3}};
  s = AggregateDomainScore(spec, slices);
  EXPECT_NEAR(s.score, 1.0, 1e-12);
  EXPECT_FALSE(s.outside);
  // Two-sided and robust as before; a figure that is not a number is outside.
  EXPECT_NEAR(AggregateDomainScore(spec, {{-9, -1, -4}, {-9, -1, -4}, {0, 20, 5}}).score, 2.0,
              1e-12);
  EXPECT_TRUE(AggregateDomainScore(spec, {{std::nan(""), 1, -3}}).outside);
  // Without the residual reference, [log r, log k] only.
  spec.hasResidualReference = false;
  spec.referenceSeries = {{-6, 1}};
  EXPECT_NEAR(AggregateDomainScore(spec, {{-6.5, 1, 100}}).score, 1.0, 1e-12);

  // In the manifest: "reference": {..., "series": [[log r, log k(, log m)], ...]}.
  Json::Value section = testing::DomainCheckSection(3.0);
  section["reference"]["series"][0].append(-3.5);
  section["reference"]["series"][0].append(-1.5);
  section["reference"]["series"][1].append(-3.9);
  section["reference"]["series"][1].append(-1.2);
  const DomainCheckSpec parsed = ParseManifest(WithDomain(section), kFolder).domainCheck;
  ASSERT_EQ(parsed.referenceSeries.size(), 2u);
  EXPECT_EQ(parsed.referenceSeries[1], (std::vector<double>{-3.9, -1.2}));
  section["reference"]["series"][1].append(-4.0);  // three figures without log_residual
  EXPECT_NE(ErrorOf(section).find("domain_check.reference.series: each entry must be [log r, "
                                  "log k] of finite numbers"),
            std::string::npos);
  section["reference"]["series"] = Json::Value(Json::arrayValue);
  EXPECT_NE(ErrorOf(section).find("domain_check.reference.series: must be a list of 1 to"),
            std::string::npos);
  section["reference"]["log_residual"].append(-4.5);
  section["reference"]["log_residual"].append(0.1);
  section["reference"]["series"][0].append(-3.5);
  section["reference"]["series"][0].append(-1.5);
  EXPECT_NE(ErrorOf(section).find("each entry must be [log r, log k, log m]"), std::string::npos);
  section["reference"]["series"][0].append("x");
  EXPECT_NE(ErrorOf(section).find("of finite numbers"), std::string::npos);
}

// The mean intensity is a fourth feature when the reference has it: medians (-6, 1, -3,
// 0.55) against the series (-6, 1, -3, 0.4) with an intensity spread of 0.05 are 3 from it,
// the contrast change the three other features did not see.
TEST(DomainCheck, TheMeanIntensityCountsWhenTheReferenceHasIt) {
  DomainCheckSpec spec;
  spec.reconstructionSd = 0.5;
  spec.klSd = 2;
  spec.hasResidualReference = true;
  spec.residualSd = 0.25;
  spec.threshold = 2;
  spec.referenceSeries = {{-6, 1, -3}};
  const std::vector<SliceDomainFeatures> slices{
      {-6, 1, -3, 0.55}, {-6, 1, -3, 0.5}, {-6, 1, -3, 0.9}};
  DomainScore s = AggregateDomainScore(spec, slices);
  EXPECT_DOUBLE_EQ(s.meanIntensity, 0.55);  // reported even when not scored
  EXPECT_DOUBLE_EQ(s.score, 0.0);
  spec.hasIntensityReference = true;
  spec.intensityMean = 0.4;
  spec.intensitySd = 0.05;
  spec.referenceSeries = {{-6, 1, -3, 0.4}};
  s = AggregateDomainScore(spec, slices);
  EXPECT_NEAR(s.score, 3.0, 1e-12);
  EXPECT_TRUE(s.outside);
  // The same against the reference's mean.
  spec.referenceSeries.clear();
  spec.reconstructionMean = -6;
  spec.klMean = 1;
  spec.residualMean = -3;
  EXPECT_NEAR(AggregateDomainScore(spec, slices).score, 3.0, 1e-12);
  EXPECT_TRUE(AggregateDomainScore(spec, {{-6, 1, -3, std::nan("")}}).outside);

  // In the manifest: "mean_intensity": [mean, sd], after "log_residual", and the series'
  // points with four figures.
  Json::Value section = testing::DomainCheckSection(3.0);
  section["reference"].removeMember("series");
  section["reference"]["mean_intensity"].append(0.3);
  section["reference"]["mean_intensity"].append(0.1);
  EXPECT_NE(ErrorOf(section).find("domain_check.reference.mean_intensity: needs log_residual"),
            std::string::npos);
  section["reference"]["log_residual"].append(-4.5);
  section["reference"]["log_residual"].append(0.1);
  DomainCheckSpec parsed = ParseManifest(WithDomain(section), kFolder).domainCheck;
  EXPECT_TRUE(parsed.hasIntensityReference);
  EXPECT_DOUBLE_EQ(parsed.intensityMean, 0.3);
  EXPECT_DOUBLE_EQ(parsed.intensitySd, 0.1);
  Json::Value point(Json::arrayValue);
  for (double v : {-3.5, -1.5, -4.4}) point.append(v);
  section["reference"]["series"].append(point);
  EXPECT_NE(ErrorOf(section).find("each entry must be [log r, log k, log m, i]"),
            std::string::npos);
  section["reference"]["series"][0].append(0.35);
  parsed = ParseManifest(WithDomain(section), kFolder).domainCheck;
  EXPECT_EQ(parsed.referenceSeries.at(0), (std::vector<double>{-3.5, -1.5, -4.4, 0.35}));
  section["reference"]["mean_intensity"][1] = 0.0;
  EXPECT_NE(ErrorOf(section).find("domain_check.reference.mean_intensity: must be [mean"),
            std::string::npos);
}

// The residual correlation is the last feature when the reference has it: medians (-6, 1,
// -3, 0.5, 0.7) against the series (-6, 1, -3, 0.5, 0.3) with a correlation spread of 0.1
// are 4 from it, a sharper kernel that raised r and m as noise would and moved only c.
TEST(DomainCheck, TheResidualCorrelationCountsWhenTheReferenceHasIt) {
  DomainCheckSpec spec;
  spec.reconstructionSd = 0.5;
  spec.klSd = 2;
  spec.hasResidualReference = true;
  spec.residualSd = 0.25;
  spec.hasIntensityReference = true;
  spec.intensitySd = 0.05;
  spec.threshold = 2;
  spec.referenceSeries = {{-6, 1, -3, 0.5}};
  const std::vector<SliceDomainFeatures> slices{
      {-6, 1, -3, 0.5, 0.7}, {-6, 1, -3, 0.5, 0.9}, {-6, 1, -3, 0.5, 0.2}};
  DomainScore s = AggregateDomainScore(spec, slices);
  EXPECT_DOUBLE_EQ(s.residualCorrelation, 0.7);  // reported even when not scored
  EXPECT_DOUBLE_EQ(s.score, 0.0);
  spec.hasCorrelationReference = true;
  spec.correlationSd = 0.1;
  spec.referenceSeries = {{-6, 1, -3, 0.5, 0.3}, {-6, 1, -3, 0.9, 0.7}};
  s = AggregateDomainScore(spec, slices);
  EXPECT_NEAR(s.score, 4.0, 1e-12);  // the first series; the second is 8 away in i
  EXPECT_TRUE(s.outside);
  // Without the intensity, c follows m directly.
  spec.hasIntensityReference = false;
  spec.referenceSeries = {{-6, 1, -3, 0.65}};
  EXPECT_NEAR(AggregateDomainScore(spec, slices).score, 0.5, 1e-12);
  EXPECT_FALSE(AggregateDomainScore(spec, slices).outside);
  // The same against the reference's mean.
  spec.referenceSeries.clear();
  spec.reconstructionMean = -6;
  spec.klMean = 1;
  spec.residualMean = -3;
  spec.correlationMean = 0.3;
  EXPECT_NEAR(AggregateDomainScore(spec, slices).score, 4.0, 1e-12);
  EXPECT_TRUE(AggregateDomainScore(spec, {{-6, 1, -3, 0.5, std::nan("")}}).outside);

  // In the manifest: "residual_correlation": [mean, sd], after "log_residual", and the
  // series' points with c last.
  Json::Value section = testing::DomainCheckSection(3.0);
  section["reference"].removeMember("series");
  section["reference"]["residual_correlation"].append(0.4);
  section["reference"]["residual_correlation"].append(0.2);
  EXPECT_NE(
      ErrorOf(section).find("domain_check.reference.residual_correlation: needs log_residual"),
      std::string::npos);
  section["reference"]["log_residual"].append(-4.5);
  section["reference"]["log_residual"].append(0.1);
  DomainCheckSpec parsed = ParseManifest(WithDomain(section), kFolder).domainCheck;
  EXPECT_TRUE(parsed.hasCorrelationReference);
  EXPECT_FALSE(parsed.hasIntensityReference);
  EXPECT_DOUBLE_EQ(parsed.correlationMean, 0.4);
  EXPECT_DOUBLE_EQ(parsed.correlationSd, 0.2);
  Json::Value point(Json::arrayValue);
  for (double v : {-3.5, -1.5, -4.4}) point.append(v);
  section["reference"]["series"].append(point);
  EXPECT_NE(ErrorOf(section).find("each entry must be [log r, log k, log m, c]"),
            std::string::npos);
  section["reference"]["mean_intensity"].append(0.3);
  section["reference"]["mean_intensity"].append(0.1);
  section["reference"]["series"][0].append(0.35);
  EXPECT_NE(ErrorOf(section).find("each entry must be [log r, log k, log m, i, c]"),
            std::string::npos);
  section["reference"]["series"][0].append(0.6);
  parsed = ParseManifest(WithDomain(section), kFolder).domainCheck;
  EXPECT_EQ(parsed.referenceSeries.at(0), (std::vector<double>{-3.5, -1.5, -4.4, 0.35, 0.6}));
  section["reference"]["residual_correlation"][1] = -0.2;
  EXPECT_NE(ErrorOf(section).find("domain_check.reference.residual_correlation: must be [mean"),
            std::string::npos);
}

namespace {

// A spec that only says which slices are scored.
DomainCheckSpec Selection(int step, int minimum, int maximum) {
  DomainCheckSpec spec;
  spec.sliceStep = step;
  spec.minSlices = minimum;
  spec.maxSlices = maximum;
  return spec;
}

}  // namespace

// All slices up to the limit, then that many evenly spaced: of 10 with at most 4, the
// k-th at floor((k + 1/2) 10 / 4) = 1, 3, 6, 8. With a step, one in that many, but never
// fewer than the minimum nor more than the maximum.
TEST(DomainCheck, ALongSeriesIsScoredOnEvenlySpacedSlices) {
  EXPECT_EQ(DomainSlicesScored(3, Selection(1, 1, 4)), std::vector<bool>(3, true));
  EXPECT_EQ(DomainSlicesScored(10, Selection(1, 1, 4)),
            (std::vector<bool>{false, true, false, true, false, false, true, false, true, false}));
  auto count = [](int64_t slices, const DomainCheckSpec& spec) {
    const std::vector<bool> scored = DomainSlicesScored(slices, spec);
    EXPECT_EQ(scored.size(), static_cast<size_t>(slices));
    return std::count(scored.begin(), scored.end(), true);
  };
  EXPECT_EQ(count(512, Selection(1, 8, 32)), 32);
  EXPECT_EQ(count(512, Selection(8, 8, 32)), 32);  // 64, lowered to the maximum
  EXPECT_EQ(count(128, Selection(8, 8, 32)), 16);  // one in eight
  EXPECT_EQ(count(130, Selection(8, 8, 32)), 17);  // rounded up
  EXPECT_EQ(count(24, Selection(8, 8, 32)), 8);    // 3, raised to the minimum
  EXPECT_EQ(count(6, Selection(8, 8, 32)), 6);     // all of a short series
  EXPECT_EQ(DomainSlicesScored(16, Selection(8, 4, 32)),
            (std::vector<bool>{false, false, true, false, false, false, true, false, false, false,
                               true, false, false, false, true, false}));
  EXPECT_TRUE(DomainSlicesScored(0, Selection(1, 8, 4)).empty());

  Json::Value section = testing::DomainCheckSection(3.0);
  const DomainCheckSpec defaults = ParseManifest(WithDomain(section), kFolder).domainCheck;
  EXPECT_EQ(defaults.sliceStep, 1);
  EXPECT_EQ(defaults.minSlices, 8);
  EXPECT_EQ(defaults.maxSlices, 32);
  EXPECT_EQ(defaults.crop, 0);
  EXPECT_EQ(defaults.downsample, 1);
  section["max_slices"] = 16;
  section["min_slices"] = 4;
  section["slice_step"] = 8;
  section["crop"] = 256;
  section["downsample"] = 2;
  const DomainCheckSpec parsed = ParseManifest(WithDomain(section), kFolder).domainCheck;
  EXPECT_EQ(parsed.maxSlices, 16);
  EXPECT_EQ(parsed.minSlices, 4);
  EXPECT_EQ(parsed.sliceStep, 8);
  EXPECT_EQ(parsed.crop, 256);
  EXPECT_EQ(parsed.downsample, 2);
  for (const Json::Value& bad :
       {Json::Value(0), Json::Value(9), Json::Value("2"), Json::Value(1.5)}) {
    section["downsample"] = bad;
    EXPECT_NE(ErrorOf(section).find("domain_check.downsample: must be an integer from 1 to 8"),
              std::string::npos)
        << bad.toStyledString();
  }
  section["downsample"] = 2;
  section["max_slices"] = 0;
  EXPECT_NE(ErrorOf(section).find("domain_check.max_slices"), std::string::npos);
  section["max_slices"] = 3;
  EXPECT_NE(ErrorOf(section).find("domain_check.min_slices: must not be above max_slices (3)"),
            std::string::npos);
  section["max_slices"] = 16;
  section["slice_step"] = 0;
  EXPECT_NE(ErrorOf(section).find("domain_check.slice_step"), std::string::npos);
  section["slice_step"] = 8;
  section["crop"] = 16;
  EXPECT_NE(ErrorOf(section).find("domain_check.crop: must be 0 (the whole slice) or at least 4 "
                                  "times size_multiple (32)"),
            std::string::npos);
}

// r, k and m of one slice as the header defines them, computed here independently of the
// network: the fixture reconstructs each 8x8 block by its mean, mu = mean - 0.5,
// logvar = -1. A slice of 20 x 12 is padded with 0 to 24 x 16; r counts only its own pixels.
TEST(DomainCheck, SliceFiguresFollowTheirDefinition) {
  testing::TemporaryFolder folder;
  const auto model = ModelWithDomainCheck(folder.path(), 3.0);
  ASSERT_NE(model->Domain(), nullptr);
  const int64_t rows = 20, columns = 12;
  std::mt19937 random(5);
  std::normal_distribution<float> noise(0.0f, 80.0f);
  std::vector<float> hu(rows * columns);
  for (int64_t i = 0; i < rows * columns; ++i)
    hu[i] = (i % columns < 6 ? -900.0f : 40.0f) + noise(random);
  // Normalised by the window [-1000, 1000], padded to 24 x 16.
  const int64_t pr = 24, pc = 16;
  std::vector<double> x(pr * pc, 0.0);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < columns; ++c) x[r * pc + c] = (hu[r * columns + c] + 1000.0) / 2000.0;
  double squared = 0, kl = 0;
  std::vector<double> absolute;
  std::vector<double> blockMean((pr / 8) * (pc / 8), 0.0);
  for (int64_t r = 0; r < pr; ++r)
    for (int64_t c = 0; c < pc; ++c) blockMean[(r / 8) * (pc / 8) + c / 8] += x[r * pc + c] / 64.0;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < columns; ++c) {
      const double d = x[r * pc + c] - blockMean[(r / 8) * (pc / 8) + c / 8];
      squared += d * d;
      absolute.push_back(std::abs(d));
    }
  // c: the products of horizontally and vertically adjacent residuals of the slice's pixels.
  double neighbours = 0;
  auto residual = [&](int64_t r, int64_t c) {
    return x[r * pc + c] - blockMean[(r / 8) * (pc / 8) + c / 8];
  };
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < columns; ++c) {
      if (c + 1 < columns) neighbours += residual(r, c) * residual(r, c + 1);
      if (r + 1 < rows) neighbours += residual(r, c) * residual(r + 1, c);
    }
  // The lower of the two middle values, as LibTorch's median takes for an even count.
  std::sort(absolute.begin(), absolute.end());
  const double median = absolute[(absolute.size() - 1) / 2];
  for (double m : blockMean) kl += 0.5 * ((m - 0.5) * (m - 0.5) + std::exp(-1.0) - 1.0 + 1.0);
  const SliceDomainFeatures f = model->Domain()->SliceFeatures(hu.data(), rows, columns);
  EXPECT_NEAR(f.logReconstruction, std::log(squared / (rows * columns)), 1e-4);
  EXPECT_NEAR(f.logKl, std::log(kl / static_cast<double>(blockMean.size())), 1e-4);
  EXPECT_NEAR(f.logResidual, std::log(median), 1e-4);
  double mean = 0;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < columns; ++c)
      mean += x[r * pc + c] / static_cast<double>(rows * columns);
  EXPECT_NEAR(f.meanIntensity, mean, 1e-6);  // of the slice's pixels, not the padding
  EXPECT_NEAR(f.residualCorrelation, neighbours / (2.0 * squared), 1e-5);
}

// What c tells: a residual of white noise is uncorrelated with its neighbours, one of
// structure the reconstruction misses is not. The fixture reconstructs each 8x8 block by its
// mean: white noise leaves c near 0 (slightly below: each block's mean takes a little of
// its noise), a ramp across each block leaves it well above (below 1: the ramp restarts at
// each block's edge, where neighbours disagree), a checkerboard near -1 (exactly
// -(rows (columns - 1) + (rows - 1) columns) / (2 rows columns)), and a slice at the
// window's low end, 0 once normalised, which the fixture reconstructs exactly, 0.
TEST(DomainCheck, TheResidualCorrelationTellsNoiseFromStructure) {
  testing::TemporaryFolder folder;
  const auto model = ModelWithDomainCheck(folder.path(), 3.0);
  const int64_t side = 32;
  std::mt19937 random(3);
  std::normal_distribution<float> noise(0.0f, 100.0f);
  std::vector<float> white(side * side), ramp(side * side), checkerboard(side * side),
      flat(side * side, -1000.0f);
  for (int64_t r = 0; r < side; ++r)
    for (int64_t c = 0; c < side; ++c) {
      white[r * side + c] = noise(random);
      ramp[r * side + c] = 50.0f * static_cast<float>(r % 8 + c % 8);
      checkerboard[r * side + c] = (r + c) % 2 == 0 ? 100.0f : -100.0f;
    }
  const DomainCheck& check = *model->Domain();
  EXPECT_NEAR(check.SliceFeatures(white.data(), side, side).residualCorrelation, 0.0, 0.08);
  EXPECT_GT(check.SliceFeatures(ramp.data(), side, side).residualCorrelation, 0.5);
  EXPECT_NEAR(check.SliceFeatures(checkerboard.data(), side, side).residualCorrelation,
              -2.0 * side * (side - 1) / (2.0 * side * side), 1e-6);
  EXPECT_DOUBLE_EQ(check.SliceFeatures(flat.data(), side, side).residualCorrelation, 0.0);
}

// With a crop, a larger slice is scored on its central crop (rows 8-39 and columns 5-36 of
// 48 x 41 for a crop of 32), exactly as that crop alone; a smaller dimension stays whole.
TEST(DomainCheck, ALargeSliceIsScoredOnItsCentralCrop) {
  testing::TemporaryFolder folder;
  const auto whole = ModelWithDomainCheck(folder.path() / "whole", 3.0);
  const auto cropped = ModelWithDomainCheck(folder.path() / "cropped", 3.0, 32);
  const int64_t rows = 48, columns = 41;
  const std::vector<float> hu = NoiseSlice(11, rows, columns);
  std::vector<float> centre;
  for (int64_t r = 8; r < 40; ++r)
    for (int64_t c = 4; c < 36; ++c) centre.push_back(hu[r * columns + c]);
  const SliceDomainFeatures a = cropped->Domain()->SliceFeatures(hu.data(), rows, columns);
  ExpectSameFeatures(a, whole->Domain()->SliceFeatures(centre.data(), 32, 32));
  const SliceDomainFeatures full = whole->Domain()->SliceFeatures(hu.data(), rows, columns);
  EXPECT_NE(a.logReconstruction, full.logReconstruction);
  // 20 rows: only the columns are cropped.
  std::vector<float> band, bandCentre;
  for (int64_t r = 0; r < 20; ++r)
    for (int64_t c = 0; c < columns; ++c) {
      band.push_back(hu[r * columns + c]);
      if (c >= 4 && c < 36) bandCentre.push_back(hu[r * columns + c]);
    }
  EXPECT_DOUBLE_EQ(cropped->Domain()->SliceFeatures(band.data(), 20, columns).logReconstruction,
                   whole->Domain()->SliceFeatures(bandCentre.data(), 20, 32).logReconstruction);
}

// With downsample 2, a slice is scored on the means of its 2x2 blocks (the last row and
// column of an odd size left out), exactly as those means alone; the crop applies to the
// means; a slice narrower than a block is scored as it is.
TEST(DomainCheck, ASliceIsScoredOnItsBlockMeansWhenTheManifestDownsamples) {
  testing::TemporaryFolder folder;
  const auto whole = ModelWithDomainCheck(folder.path() / "whole", 3.0);
  const auto halved = ModelWithDomainCheck(folder.path() / "halved", 3.0, 0, 2);
  const auto both = ModelWithDomainCheck(folder.path() / "both", 3.0, 32, 2);
  const int64_t rows = 97, columns = 70;
  const std::vector<float> hu = NoiseSlice(12, rows, columns);
  // 48 x 35 means, each of its four values in row-major order.
  std::vector<float> means;
  for (int64_t r = 0; r < 48; ++r)
    for (int64_t c = 0; c < 35; ++c) {
      const float* b = hu.data() + 2 * r * columns + 2 * c;
      means.push_back(0.25f * (b[0] + b[1] + b[columns] + b[columns + 1]));
    }
  ExpectSameFeatures(halved->Domain()->SliceFeatures(hu.data(), rows, columns),
                     whole->Domain()->SliceFeatures(means.data(), 48, 35));
  EXPECT_NE(halved->Domain()->SliceFeatures(hu.data(), rows, columns).logReconstruction,
            whole->Domain()->SliceFeatures(hu.data(), rows, columns).logReconstruction);
  // The central 32 x 32 of the 48 x 35 means: rows 8-39, columns 1-32.
  std::vector<float> centre;
  for (int64_t r = 8; r < 40; ++r)
    for (int64_t c = 1; c < 33; ++c) centre.push_back(means[r * 35 + c]);
  ExpectSameFeatures(both->Domain()->SliceFeatures(hu.data(), rows, columns),
                     whole->Domain()->SliceFeatures(centre.data(), 32, 32));
  // One row: no block fits, the slice is scored as it is.
  ExpectSameFeatures(halved->Domain()->SliceFeatures(hu.data(), 1, columns),
                     whole->Domain()->SliceFeatures(hu.data(), 1, columns));
  // A volume's score is that of its slices' means.
  Volume volume;
  volume.Resize(2, rows, columns);
  std::copy(hu.begin(), hu.end(), volume.Slice(0));
  std::copy(hu.rbegin(), hu.rend(), volume.Slice(1));
  Volume halves;
  halves.Resize(2, 48, 35);
  for (int64_t s = 0; s < 2; ++s) BlockMeans(volume.Slice(s), rows, columns, 2, halves.Slice(s));
  EXPECT_DOUBLE_EQ(halved->Domain()->Score(volume).score, whole->Domain()->Score(halves).score);
}

TEST(DomainCheck, AnArchiveBreakingTheContractIsRefusedAtLoad) {
  testing::TemporaryFolder folder;
  Json::Value m = testing::DenoiseManifest("bad-check");
  m["domain_check"] = testing::DomainCheckSection(3.0);
  const auto modelFolder = testing::WriteFixtureModel(folder.path(), "identity", m);
  InferenceOptions options;
  options.device = "cpu";
  // One tensor instead of (reconstruction, mu, logvar).
  testing::WriteFixtureArchive(modelFolder / "domain.pt", "identity");
  try {
    TorchModel::Load(modelFolder, options);
    FAIL() << "loaded";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("domain.pt"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("(reconstruction, mu, logvar)"), std::string::npos)
        << e.what();
  }
  std::filesystem::remove(modelFolder / "domain.pt");
  try {
    TorchModel::Load(modelFolder, options);
    FAIL() << "loaded";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kNotFound);
    EXPECT_NE(std::string(e.what()).find("domain check's archive domain.pt"), std::string::npos);
  }
}

// The three actions on a series outside the domain (noise far above what the fixture's
// reference expects), and a series within it.
TEST(DomainCheck, WarnRefuseOrOffDecideWhatHappensToASeriesOutsideTheDomain) {
  testing::TemporaryFolder folder;
  const auto model = ModelWithDomainCheck(folder.path(), 3.0);
  OutputOptions output;
  output.seriesInstanceUid = "1.2.826.0.1.3680043.10.1234.8";

  // Within: a score, no warning.
  testing::MemoryInstanceSource calm(testing::PhantomSeries(48, 48, 3, 10.0));
  EnhancedSeries result = EnhanceSeries(calm, *model, output, {});
  ASSERT_TRUE(result.hasDomainScore);
  EXPECT_FALSE(result.domain.outside) << DescribeDomainScore(result.domain);
  EXPECT_EQ(result.domain.slices, 3);
  EXPECT_TRUE(result.warnings.empty());
  EXPECT_EQ(TagOf(result.files.front(), DCM_ImageComments), "");
  const double calmScore = result.domain.score;

  // Warn (the default): processed, the warning in the result and in every file.
  testing::MemoryInstanceSource loud(testing::PhantomSeries(48, 48, 3, 1500.0));
  result = EnhanceSeries(loud, *model, output, {});
  ASSERT_TRUE(result.hasDomainScore);
  EXPECT_TRUE(result.domain.outside);
  EXPECT_GT(result.domain.score, calmScore);
  ASSERT_EQ(result.files.size(), 3u);
  ASSERT_EQ(result.warnings.size(), 1u);
  EXPECT_NE(result.warnings[0].find("outside the domain the model was trained on"),
            std::string::npos);
  for (const std::string& file : result.files) {
    const std::string comments = TagOf(file, DCM_ImageComments);
    EXPECT_EQ(
        comments.rfind("WARNING: outside the domain the model was trained on (domain score ", 0),
        0u)
        << comments;
    EXPECT_EQ(TagOf(file, DCM_DerivationDescription).rfind("WARNING: outside the domain", 0), 0u);
  }
  testing::ExpectDciodvfyAccepts(result.files, "series outside the domain");

  // Refuse: an error naming the score, the threshold and what to do; nothing written.
  output.domainAction = DomainAction::kRefuse;
  size_t handedOver = 0;
  testing::MemoryInstanceSource refused(testing::PhantomSeries(48, 48, 3, 1500.0));
  try {
    EnhanceSeries(refused, *model, output, {}, nullptr,
                  [&handedOver](size_t, size_t, std::string) { ++handedOver; });
    FAIL() << "not refused";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kBadInput);
    const std::string message = e.what();
    EXPECT_NE(message.find("test series: refused: outside the domain"), std::string::npos)
        << message;
    EXPECT_NE(message.find("above the threshold 3.00"), std::string::npos) << message;
    EXPECT_NE(message.find("trained on unit test fixtures"), std::string::npos) << message;
    EXPECT_NE(message.find("\"DomainCheck\": \"warn\""), std::string::npos) << message;
  }
  EXPECT_EQ(handedOver, 0u);

  // A series longer than max_slices is scored on that many slices.
  output.domainAction = DomainAction::kWarn;
  {
    testing::TemporaryFolder other;
    Json::Value m = testing::DenoiseManifest("ct-few");
    m["tile"]["size"] = 0;
    m["domain_check"] = testing::DomainCheckSection(3.0);
    m["domain_check"]["max_slices"] = 2;
    InferenceOptions options;
    options.device = "cpu";
    const auto few =
        TorchModel::Load(testing::WriteFixtureModel(other.path(), "identity", m), options);
    testing::MemoryInstanceSource five(testing::PhantomSeries(48, 48, 5, 10.0));
    EXPECT_EQ(EnhanceSeries(five, *few, output, {}).domain.slices, 2);
  }

  // Off: not even scored.
  output.domainAction = DomainAction::kOff;
  testing::MemoryInstanceSource unchecked(testing::PhantomSeries(48, 48, 3, 1500.0));
  result = EnhanceSeries(unchecked, *model, output, {});
  EXPECT_FALSE(result.hasDomainScore);
  EXPECT_TRUE(result.warnings.empty());
  EXPECT_EQ(result.files.size(), 3u);
}

// Slices computed early (written over their input as they are decoded) are scored from
// their input all the same: the score does not depend on the early start.
TEST(DomainCheck, SlicesComputedEarlyAreScoredFromTheirInput) {
  testing::TemporaryFolder folder;
  const auto model = ModelWithDomainCheck(folder.path(), 3.0);
  OutputOptions output;
  output.seriesInstanceUid = "1.2.826.0.1.3680043.10.1234.9";
  const std::vector<EncodedInstance> files = testing::PhantomSeries(48, 48, 4, 1500.0);
  testing::MemoryInstanceSource plain(files);
  const EnhancedSeries without = EnhanceSeries(plain, *model, output, {});

  SliceCache cache(size_t{64} << 20);
  for (const EncodedInstance& instance : files) {
    ASSERT_TRUE(PrecomputeInstance(instance, "test series", nullptr, *model, cache, {}));
  }
  testing::MemoryInstanceSource again(files);
  const EnhancedSeries with = EnhanceSeries(again, *model, output, {}, &cache);
  EXPECT_EQ(with.timings.precomputedSlices, 4);
  ASSERT_TRUE(with.hasDomainScore);
  EXPECT_DOUBLE_EQ(with.domain.score, without.domain.score);
  EXPECT_TRUE(with.domain.outside);
}

}  // namespace enhance
