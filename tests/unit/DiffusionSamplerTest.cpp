// SPDX-License-Identifier: GPL-3.0-or-later
#include "DiffusionSampler.h"

#include <gtest/gtest.h>
#include <json/reader.h>

#include <algorithm>
#include <cmath>
#include <fstream>

#include "ModelFixtures.h"
#include "SliceEngine.h"
#include "enhance/base/Error.h"
#include "enhance/inference/TorchModel.h"

namespace enhance {
namespace {

Json::Value Reference() {
  std::ifstream file(std::string(ENHANCE_FIXTURES) + "/diffusion/reference.json");
  Json::Value root;
  Json::CharReaderBuilder builder;
  std::string errors;
  if (!Json::parseFromStream(builder, file, &root, &errors)) throw std::runtime_error(errors);
  return root;
}

at::Tensor FromJson(const Json::Value& values) {
  std::vector<double> v;
  for (const auto& x : values) v.push_back(x.asDouble());
  return at::tensor(v, at::kDouble);
}

TEST(DiffusionSampler, ALinearScheduleWorkedByHand) {
  SamplerSpec s;
  s.trainingTimesteps = 4;
  s.betaStart = 0.1;
  s.betaEnd = 0.4;
  // beta = 0.1, 0.2, 0.3, 0.4: alpha-bar = 0.9, 0.72, 0.504, 0.3024.
  const std::vector<double> a = AlphasCumprod(s);
  ASSERT_EQ(a.size(), 4u);
  EXPECT_NEAR(a[0], 0.9, 1e-15);
  EXPECT_NEAR(a[1], 0.72, 1e-15);
  EXPECT_NEAR(a[2], 0.504, 1e-15);
  EXPECT_NEAR(a[3], 0.3024, 1e-15);
  s.spacing = "leading";
  s.stepCount = 2;
  EXPECT_EQ(InferenceTimesteps(s), (std::vector<int>{2, 0}));
  s.spacing = "trailing";
  EXPECT_EQ(InferenceTimesteps(s), (std::vector<int>{3, 1}));
  s.timesteps = {3, 2, 0};
  EXPECT_EQ(InferenceTimesteps(s), s.timesteps);
}

TEST(DiffusionSampler, SchedulesMatchTheReferenceComputedWithPyTorch) {
  const Json::Value reference = Reference();
  ASSERT_EQ(reference["schedules"].size(), 3u);
  for (const auto& r : reference["schedules"]) {
    SamplerSpec s;
    s.trainingTimesteps = r["training_timesteps"].asInt();
    const std::string type = r["type"].asString();
    s.schedule = type == "linear"          ? SamplerSpec::Schedule::kLinear
                 : type == "scaled_linear" ? SamplerSpec::Schedule::kScaledLinear
                                           : SamplerSpec::Schedule::kCosine;
    s.betaStart = r["beta_start"].asDouble();
    s.betaEnd = r["beta_end"].asDouble();
    const std::vector<double> a = AlphasCumprod(s);
    for (Json::ArrayIndex i = 0; i < r["indices"].size(); ++i) {
      const double expected = r["values"][i].asDouble();
      EXPECT_NEAR(a.at(r["indices"][i].asUInt()), expected, 1e-12 * std::max(1.0, expected))
          << type << " at " << r["indices"][i].asInt();
    }
  }
}

TEST(DiffusionSampler, TimestepSpacingsMatchTheReference) {
  const Json::Value reference = Reference();
  ASSERT_EQ(reference["timesteps"].size(), 12u);
  for (const auto& r : reference["timesteps"]) {
    SamplerSpec s;
    s.trainingTimesteps = r["training_timesteps"].asInt();
    s.spacing = r["spacing"].asString();
    s.stepCount = r["count"].asInt();
    std::vector<int> expected;
    for (const auto& v : r["values"]) expected.push_back(v.asInt());
    EXPECT_EQ(InferenceTimesteps(s), expected) << s.spacing << " " << s.stepCount;
  }
}

TEST(DiffusionSampler, DdimStepsMatchTheReferenceForEachPrediction) {
  int checked = 0;
  const Json::Value reference = Reference();
  for (const auto& r : reference["steps"]) {
    SamplerSpec s;
    const std::string prediction = r["prediction"].asString();
    s.prediction = prediction == "epsilon" ? SamplerSpec::Prediction::kEpsilon
                   : prediction == "v"     ? SamplerSpec::Prediction::kV
                                           : SamplerSpec::Prediction::kSample;
    s.eta = r["eta"].asDouble();
    s.clip = !r["clip"].isNull();
    if (s.clip) {
      s.clipMin = r["clip"][0].asDouble();
      s.clipMax = r["clip"][1].asDouble();
    }
    const at::Tensor result =
        DdimStep(s, FromJson(r["xt"]), FromJson(r["output"]), r["alpha"].asDouble(),
                 r["alpha_previous"].asDouble(), FromJson(r["noise"]));
    EXPECT_TRUE(at::allclose(result, FromJson(r["expected"]), 1e-10, 1e-12))
        << prediction << " eta " << s.eta << " clip " << s.clip << " alpha "
        << r["alpha"].asDouble();
    ++checked;
  }
  EXPECT_EQ(checked, 27);
}

TEST(DiffusionSampler, NoiseOfATileIsTheCropOfTheSlicesNoise) {
  const at::Tensor whole = SliceNoise(7, 99, -12.5, 2, 3, 0, 0, 64, 64);
  const at::Tensor tile = SliceNoise(7, 99, -12.5, 2, 3, 16, 8, 32, 40);
  EXPECT_TRUE(at::equal(tile, whole.slice(0, 16, 48).slice(1, 8, 48)));
  // Every argument that names the draw changes it.
  EXPECT_FALSE(at::equal(whole, SliceNoise(8, 99, -12.5, 2, 3, 0, 0, 64, 64)));
  EXPECT_FALSE(at::equal(whole, SliceNoise(7, 98, -12.5, 2, 3, 0, 0, 64, 64)));
  EXPECT_FALSE(at::equal(whole, SliceNoise(7, 99, -12.499, 2, 3, 0, 0, 64, 64)));
  EXPECT_FALSE(at::equal(whole, SliceNoise(7, 99, -12.5, 1, 3, 0, 0, 64, 64)));
  EXPECT_FALSE(at::equal(whole, SliceNoise(7, 99, -12.5, 2, 2, 0, 0, 64, 64)));
  // And it is standard normal.
  const at::Tensor many = SliceNoise(1, 2, 3.0, 0, -1, 0, 0, 512, 512);
  EXPECT_NEAR(many.mean().item<double>(), 0.0, 0.01);
  EXPECT_NEAR(many.std().item<double>(), 1.0, 0.01);
  EXPECT_NEAR((many.abs() < 1.0).to(at::kDouble).mean().item<double>(), 0.6827, 0.005);
}

// A denoiser whose epsilon depends on both x_t and the condition, so that the samples
// depend on the noise drawn; pointwise, so that tiles see what whole slices see.
DenoiserFunction TowardsCondition() {
  return [](const at::Tensor& xt, const at::Tensor&, const at::Tensor& condition) {
    return xt * 0.3 + condition * 0.1;
  };
}

SamplerSpec SmallSampler() {
  SamplerSpec s;
  s.trainingTimesteps = 100;
  s.stepCount = 4;
  s.samples = 3;
  s.seed = 5;
  return s;
}

TEST(DiffusionSampler, SamplesGiveAMeanAndASpreadAndTheSameRequestTheSamePixels) {
  const SamplerSpec s = SmallSampler();
  const at::Tensor condition = at::rand({2, 1, 24, 20}) * 2 - 1;
  const BatchPlacement placement{0, 0, {1.5, 4.5}};
  const SampledBatch first = SampleBatch(s, TowardsCondition(), condition, placement, 11);
  const SampledBatch again = SampleBatch(s, TowardsCondition(), condition, placement, 11);
  EXPECT_TRUE(at::equal(first.mean, again.mean));
  EXPECT_TRUE(at::equal(first.deviation, again.deviation));
  EXPECT_EQ(first.mean.sizes(), (at::IntArrayRef{2, 1, 24, 20}));
  EXPECT_GT(first.deviation.mean().item<double>(), 0.01);  // the samples differ
  const SampledBatch other = SampleBatch(s, TowardsCondition(), condition, placement, 12);
  EXPECT_FALSE(at::equal(first.mean, other.mean));  // another series, other noise

  // One sample has no spread; with a network that predicts x_0 exactly, no noise survives.
  SamplerSpec one = s;
  one.samples = 1;
  EXPECT_EQ(SampleBatch(one, TowardsCondition(), condition, placement, 11)
                .deviation.abs()
                .max()
                .item<float>(),
            0.0f);
  SamplerSpec exact = s;
  exact.prediction = SamplerSpec::Prediction::kSample;
  const DenoiserFunction oracle = [](const at::Tensor&, const at::Tensor&, const at::Tensor& c) {
    return c;
  };
  const SampledBatch sure = SampleBatch(exact, oracle, condition, placement, 11);
  EXPECT_TRUE(at::allclose(sure.mean, condition, 1e-5, 1e-5));
  EXPECT_LT(sure.deviation.max().item<float>(), 1e-5f);
}

TEST(DiffusionSampler, CancellationStopsBetweenSteps) {
  const SamplerSpec s = SmallSampler();
  int evaluations = 0;
  const DenoiserFunction counting = [&](const at::Tensor& xt, const at::Tensor&,
                                        const at::Tensor&) {
    ++evaluations;
    return xt * 0.0;
  };
  const SamplerProgress stopAtThree = [](int64_t done, int64_t total) {
    EXPECT_EQ(total, 12);  // 3 samples x 4 steps
    return done < 3;
  };
  try {
    SampleBatch(s, counting, at::zeros({1, 1, 8, 8}), {0, 0, {0.0}}, 1, stopAtThree);
    FAIL() << "not cancelled";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kCancelled);
  }
  EXPECT_EQ(evaluations, 3);
}

// Through the slice engine: the same pixels whatever the tiles and the batches.
TEST(DiffusionSampler, TilingAndBatchingDoNotChangeTheResult) {
  Volume input;
  input.Resize(5, 48, 40);
  input.units = "HU";
  for (size_t i = 0; i < input.voxels.size(); ++i) {
    input.voxels[i] = static_cast<float>((i * 7919) % 200) - 100.0f;
  }
  for (int64_t k = 0; k < 5; ++k) input.geometry.slicePositions.push_back({0, 0, 2.5 * k});
  ModelSpec spec;
  spec.name = "pointwise-diffusion";
  spec.input = {Normalization::Method::kWindow, -200, 200};
  spec.isDiffusion = true;
  spec.sampler = SmallSampler();
  spec.sampler.eta = 0.5;  // noise at every step too
  const DenoiserFunction network = TowardsCondition();
  const PlacedSliceFunction function = [&](const at::Tensor& batch, const BatchPlacement& where) {
    return SampleBatch(spec.sampler, network, batch, where, 3).mean;
  };
  EngineOptions options;
  spec.tileSize = 0;
  options.maxBatch = 1;
  const Volume whole = RunSliceEngine(input, spec, function, options, {});
  spec.tileSize = 32;
  spec.tileOverlap = 8;
  options.maxBatch = 4;
  const Volume tiled = RunSliceEngine(input, spec, function, options, {});
  ASSERT_EQ(whole.voxels.size(), tiled.voxels.size());
  double worst = 0;
  for (size_t i = 0; i < whole.voxels.size(); ++i) {
    worst = std::max(worst, static_cast<double>(std::abs(whole.voxels[i] - tiled.voxels[i])));
  }
  EXPECT_LT(worst, 1e-3);  // HU; blending identical predictions only rounds
  // One slice on its own (as the early start computes it) gives that slice.
  Volume single;
  single.Resize(1, 48, 40);
  single.units = "HU";
  std::copy(input.Slice(3), input.Slice(4), single.voxels.begin());
  single.geometry.slicePositions.push_back({0, 0, 7.5});
  const Volume alone = RunSliceEngine(single, spec, function, options, {});
  for (int64_t i = 0; i < 48 * 40; ++i) {
    ASSERT_NEAR(alone.voxels[static_cast<size_t>(i)], whole.Slice(3)[i], 1e-3);
  }
}

// A TorchScript denoiser with forward(x, t, c), loaded and run like any model.
Json::Value DiffusionManifest(const std::string& name, const std::string& prediction) {
  Json::Value m = testing::DenoiseManifest(name);
  m["tile"]["size"] = 32;
  m["tile"]["overlap"] = 8;
  m["diffusion"]["training_timesteps"] = 50;
  m["diffusion"]["schedule"]["type"] = "cosine";
  m["diffusion"]["prediction"] = prediction;
  m["diffusion"]["timesteps"]["count"] = 3;
  m["diffusion"]["samples"] = 2;
  m["diffusion"]["seed"] = 42;
  return m;
}

TEST(DiffusionSampler, ATorchScriptDiffusionModelLoadsRunsAndRepeatsItself) {
  testing::TemporaryFolder folder;
  InferenceOptions options;
  options.device = "cpu";
  const auto model =
      TorchModel::Load(testing::WriteFixtureModel(folder.path(), "diffusion-epsilon",
                                                  DiffusionManifest("ct-diffusion", "epsilon")),
                       options);
  EXPECT_NE(model->Parameters().find("diffusion: DDIM 3 steps"), std::string::npos)
      << model->Parameters();
  Volume input;
  input.Resize(3, 40, 36);
  input.units = "HU";
  for (size_t i = 0; i < input.voxels.size(); ++i) input.voxels[i] = static_cast<float>(i % 300);
  RunContext context;
  context.randomKey = 77;
  std::vector<double> progress;
  context.progress = [&](double fraction) { progress.push_back(fraction); };
  const Volume first = model->Run(input, context);
  // Progress within each batch: every network evaluation (2 samples x 3 steps) counts.
  EXPECT_GE(progress.size(), 3u * 2u * 3u);
  EXPECT_TRUE(std::is_sorted(progress.begin(), progress.end()));
  EXPECT_DOUBLE_EQ(progress.back(), 1.0);
  context.progress = {};
  const Volume second = model->Run(input, context);
  EXPECT_EQ(first.voxels, second.voxels);
  context.randomKey = 78;
  EXPECT_NE(model->Run(input, context).voxels, first.voxels);

  // With two samples the model tells the spread of its samples, in HU on the output grid;
  // asking for it changes nothing of the mean.
  ASSERT_TRUE(model->ProducesUncertainty());
  context.randomKey = 77;
  Volume spread;
  context.uncertainty = &spread;
  const Volume withSpread = model->Run(input, context);
  EXPECT_EQ(withSpread.voxels, first.voxels);
  ASSERT_EQ(spread.slices, 3);
  ASSERT_EQ(spread.rows, 40);
  ASSERT_EQ(spread.columns, 36);
  EXPECT_EQ(spread.units, "HU");
  const auto [low, high] = std::minmax_element(spread.voxels.begin(), spread.voxels.end());
  EXPECT_GE(*low, 0.0f);
  EXPECT_GT(*high, 1.0f);
  // In place (as a job runs it), the same.
  Volume inPlace = input;
  Volume spreadInPlace;
  context.uncertainty = &spreadInPlace;
  EXPECT_EQ(model->RunReusing(inPlace, context).voxels, first.voxels);
  EXPECT_EQ(spreadInPlace.voxels, spread.voxels);
  context.uncertainty = nullptr;

  // The sample-predicting fixture returns its condition: the model is then the identity.
  const auto identity = TorchModel::Load(
      testing::WriteFixtureModel(folder.path(), "diffusion-sample",
                                 DiffusionManifest("ct-diffusion-identity", "sample")),
      options);
  Volume none;
  context.uncertainty = &none;
  const Volume same = identity->Run(input, context);
  for (size_t i = 0; i < input.voxels.size(); ++i) {
    ASSERT_NEAR(same.voxels[i], input.voxels[i], 0.05) << i;
    ASSERT_LT(none.voxels[i], 0.05) << i;  // every sample lands on the same x_0
  }
}

TEST(DiffusionSampler, ANetworkWithoutTheThreeInputsIsRefusedAtLoad) {
  testing::TemporaryFolder folder;
  InferenceOptions options;
  options.device = "cpu";
  try {
    TorchModel::Load(testing::WriteFixtureModel(folder.path(), "identity",
                                                DiffusionManifest("one-input", "epsilon")),
                     options);
    FAIL() << "loaded";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("forward(x_t [1, 1, 32, 32], t [1], condition"),
              std::string::npos)
        << e.what();
  }
}

TEST(DiffusionSampler, LoadOptionsOverrideTheSamplesAndTheSeed) {
  testing::TemporaryFolder folder;
  const auto path = testing::WriteFixtureModel(folder.path(), "diffusion-epsilon",
                                               DiffusionManifest("ct-diffusion", "epsilon"));
  InferenceOptions options;
  options.device = "cpu";
  Volume input;
  input.Resize(2, 32, 32);
  input.units = "HU";
  for (size_t i = 0; i < input.voxels.size(); ++i) input.voxels[i] = static_cast<float>(i % 200);
  RunContext context;
  context.randomKey = 5;
  const Volume manifestSeed = TorchModel::Load(path, options)->Run(input, context);
  // One sample: no uncertainty map; eight: a map, as the manifest's samples would.
  options.diffusionSamples = 1;
  EXPECT_FALSE(TorchModel::Load(path, options)->ProducesUncertainty());
  options.diffusionSamples = 8;
  const auto eight = TorchModel::Load(path, options);
  EXPECT_TRUE(eight->ProducesUncertainty());
  EXPECT_NE(eight->Parameters().find("8 sample(s)"), std::string::npos) << eight->Parameters();
  // The manifest's seed (42) given explicitly changes nothing; another seed changes the noise.
  options.diffusionSamples = 0;
  options.diffusionSeed = 42;
  EXPECT_EQ(TorchModel::Load(path, options)->Run(input, context).voxels, manifestSeed.voxels);
  options.diffusionSeed = 43;
  EXPECT_NE(TorchModel::Load(path, options)->Run(input, context).voxels, manifestSeed.voxels);
  // Out of range, or for models they do not apply to: refused at load, naming the folder.
  options.diffusionSeed = -1;
  options.diffusionSamples = 65;
  EXPECT_THROW(TorchModel::Load(path, options), Error);
  options.diffusionSamples = 0;
  options.augmentationUncertainty = true;
  EXPECT_THROW(TorchModel::Load(path, options), Error);
  InferenceOptions plain;
  plain.device = "cpu";
  plain.diffusionSamples = 2;
  const auto identity =
      testing::WriteFixtureModel(folder.path(), "identity", testing::DenoiseManifest("plain"));
  try {
    TorchModel::Load(identity, plain);
    FAIL() << "loaded";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("not a diffusion model"), std::string::npos) << e.what();
  }
  // A deterministic model asked for test-time augmentation gives a map.
  plain.diffusionSamples = 0;
  plain.augmentationUncertainty = true;
  EXPECT_TRUE(TorchModel::Load(identity, plain)->ProducesUncertainty());
}

}  // namespace
}  // namespace enhance
