// SPDX-License-Identifier: GPL-3.0-or-later
#include "enhance/inference/ModelSpec.h"

#include <gtest/gtest.h>

#include <functional>

#include "ModelFixtures.h"
#include "enhance/base/Error.h"

namespace enhance {
namespace {

const std::filesystem::path kFolder = "/models/m";

std::string ErrorOf(const Json::Value& manifest) {
  try {
    ParseManifest(manifest, kFolder);
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kBadInput);
    return e.what();
  }
  return "no error";
}

Json::Value Without(Json::Value m, const char* key) {
  m.removeMember(key);
  return m;
}

template <typename T>
Json::Value With(Json::Value m, const char* key, const T& value) {
  m[key] = value;
  return m;
}

}  // namespace

TEST(ModelSpec, ParsesAValidManifestWithDefaults) {
  const ModelSpec s = ParseManifest(testing::DenoiseManifest("ct-denoise"), kFolder);
  EXPECT_EQ(s.name, "ct-denoise");
  EXPECT_EQ(s.task, "denoise");
  EXPECT_EQ(s.archive, kFolder / "model.pt");
  EXPECT_EQ(s.input.method, Normalization::Method::kWindow);
  EXPECT_EQ(s.input.low, -1000);
  EXPECT_EQ(s.output.method, Normalization::Method::kNone);
  EXPECT_EQ(s.inPlaneScale, 1);
  EXPECT_EQ(s.sliceContext, 0);
  EXPECT_EQ(s.InputChannels(), 1);
  EXPECT_EQ(s.tileSize, 256);
  EXPECT_EQ(s.derivationCode.scheme, "99ENHANCE");
  EXPECT_TRUE(s.uid.empty());  // derived from the archive when the model is loaded
}

TEST(ModelSpec, ReadsScaleTileRangeAndCode) {
  Json::Value m = testing::DenoiseManifest("sr");
  m["task"] = "superres";
  m["scale"]["in_plane"] = 4;
  m["tile"]["size"] = 128;
  m["tile"]["overlap"] = 16;
  m["output_range"].append(-1024);
  m["output_range"].append(3071);
  m["model_uid"] = "2.25.42";
  const ModelSpec s = ParseManifest(m, kFolder);
  EXPECT_EQ(s.inPlaneScale, 4);
  EXPECT_EQ(s.tileSize, 128);
  EXPECT_TRUE(s.hasOutputRange);
  EXPECT_EQ(s.outputMax, 3071);
  EXPECT_EQ(s.uid, "2.25.42");
  EXPECT_EQ(s.derivationCode.value, "113085");
}

TEST(ModelSpec, SyntheticCtIsInHuAndClampedToTheScannerRange) {
  Json::Value m = testing::DenoiseManifest("mr2ct");
  m["task"] = "mr2ct";
  m["modalities"][0] = "MR";
  const ModelSpec s = ParseManifest(m, kFolder);
  EXPECT_EQ(s.outputUnits, "HU");
  EXPECT_TRUE(s.hasOutputRange);
  EXPECT_EQ(s.outputMin, -1024);
  EXPECT_EQ(s.outputMax, 3071);
}

TEST(ModelSpec, ThroughPlaneModelsSeeBothSidesOfTheGap) {
  Json::Value m = testing::DenoiseManifest("z");
  m["task"] = "superres";
  m["scale"]["through_plane"] = 2;
  EXPECT_EQ(ParseManifest(m, kFolder).InputChannels(), 2);
  m["slice_context"] = 2;
  EXPECT_EQ(ParseManifest(m, kFolder).InputChannels(), 4);
}

TEST(ModelSpec, EachProblemIsNamedWithFileAndKey) {
  const Json::Value good = testing::DenoiseManifest("m");
  const std::string file = "/models/m/manifest.json: ";
  EXPECT_EQ(ErrorOf(Without(good, "task")), file + "task: is required");
  EXPECT_EQ(ErrorOf(With(good, "task", "sharpen")),
            file + "task: 'sharpen' must be one of denoise, superres, mr2ct");
  EXPECT_EQ(ErrorOf(With(good, "name", "Bad Name")),
            file + "name: 'Bad Name' must be 1-64 lower-case letters, digits, '.', '_' or '-'");
  EXPECT_EQ(ErrorOf(With(good, "archive", "../other/model.pt")),
            file + "archive: '../other/model.pt' must be a file name inside the model's folder");
  EXPECT_EQ(ErrorOf(With(good, "archive", "/etc/passwd")),
            file + "archive: '/etc/passwd' must be a file name inside the model's folder");
  EXPECT_EQ(ErrorOf(With(good, "modalities", Json::Value(Json::arrayValue))),
            file + "modalities: must be a non-empty list such as [\"CT\"]");
  EXPECT_EQ(ErrorOf(With(good, "model_uid", "1.02")),
            file + "model_uid: '1.02' is not a valid DICOM UID");
  EXPECT_EQ(ErrorOf(With(good, "slice_context", 20)),
            file + "slice_context: must be an integer from 0 to 8");
  EXPECT_NE(ErrorOf(With(good, "colour", true)).find("colour: unknown key"), std::string::npos);
  Json::Value sr = good;
  sr["scale"]["in_plane"] = 2;
  EXPECT_EQ(ErrorOf(sr), file + "scale: superres models, and only they, must have a scale above 1");
  Json::Value window = good;
  window["input_normalization"]["high"] = -2000;
  EXPECT_EQ(ErrorOf(window), file + "input_normalization: high must be greater than low");
  Json::Value tile = good;
  tile["tile"]["size"] = 64;
  tile["tile"]["overlap"] = 40;
  EXPECT_NE(ErrorOf(tile).find("tile: size must be 0"), std::string::npos);
  EXPECT_EQ(ErrorOf(With(good, "size_multiple", 0)),
            file + "size_multiple: must be an integer from 1 to 64");
  Json::Value multiple = good;
  multiple["tile"]["size"] = 100;
  multiple["size_multiple"] = 8;
  EXPECT_EQ(ErrorOf(multiple), file + "tile: size must be a multiple of size_multiple (8)");
}

Json::Value DiffusionManifest() {
  Json::Value m = testing::DenoiseManifest("ct-diffusion");
  Json::Value& d = m["diffusion"];
  d["training_timesteps"] = 1000;
  d["schedule"]["type"] = "scaled_linear";
  d["schedule"]["beta_start"] = 0.00085;
  d["schedule"]["beta_end"] = 0.012;
  d["prediction"] = "v";
  d["timesteps"].append(999);
  d["timesteps"].append(749);
  d["timesteps"].append(499);
  d["eta"] = 0.5;
  d["clip"].append(-1.5);
  d["clip"].append(1.5);
  d["samples"] = 8;
  d["seed"] = Json::UInt64(18446744073709551615ULL);
  d["time_input"] = "fraction";
  return m;
}

TEST(ModelSpec, ReadsTheDiffusionSamplerAndItsDefaults) {
  const ModelSpec s = ParseManifest(DiffusionManifest(), kFolder);
  ASSERT_TRUE(s.isDiffusion);
  const SamplerSpec& d = s.sampler;
  EXPECT_EQ(d.trainingTimesteps, 1000);
  EXPECT_EQ(d.schedule, SamplerSpec::Schedule::kScaledLinear);
  EXPECT_DOUBLE_EQ(d.betaStart, 0.00085);
  EXPECT_DOUBLE_EQ(d.betaEnd, 0.012);
  EXPECT_EQ(d.prediction, SamplerSpec::Prediction::kV);
  EXPECT_EQ(d.timesteps, (std::vector<int>{999, 749, 499}));
  EXPECT_DOUBLE_EQ(d.eta, 0.5);
  EXPECT_TRUE(d.clip);
  EXPECT_DOUBLE_EQ(d.clipMin, -1.5);
  EXPECT_EQ(d.samples, 8);
  EXPECT_EQ(d.seed, 18446744073709551615ULL);
  EXPECT_EQ(d.timeInput, SamplerSpec::TimeInput::kFraction);

  Json::Value minimal = testing::DenoiseManifest("m");
  minimal["diffusion"] = Json::Value(Json::objectValue);
  const ModelSpec defaults = ParseManifest(minimal, kFolder);
  EXPECT_TRUE(defaults.isDiffusion);
  EXPECT_EQ(defaults.sampler.schedule, SamplerSpec::Schedule::kLinear);
  EXPECT_EQ(defaults.sampler.prediction, SamplerSpec::Prediction::kEpsilon);
  EXPECT_EQ(defaults.sampler.stepCount, 4);
  EXPECT_EQ(defaults.sampler.spacing, "trailing");
  EXPECT_EQ(defaults.sampler.samples, 4);
  EXPECT_FALSE(ParseManifest(testing::DenoiseManifest("m"), kFolder).isDiffusion);

  Json::Value table = testing::DenoiseManifest("m");
  table["diffusion"]["training_timesteps"] = 3;
  table["diffusion"]["schedule"]["type"] = "table";
  for (double a : {0.9, 0.5, 0.1}) table["diffusion"]["schedule"]["alphas_cumprod"].append(a);
  EXPECT_EQ(ParseManifest(table, kFolder).sampler.alphasCumprod,
            (std::vector<double>{0.9, 0.5, 0.1}));
}

TEST(ModelSpec, EachProblemOfTheSamplerIsNamedWithItsKey) {
  const std::string file = "/models/m/manifest.json: ";
  const auto error = [](const std::function<void(Json::Value&)>& change) {
    Json::Value m = DiffusionManifest();
    change(m["diffusion"]);
    return ErrorOf(m);
  };
  EXPECT_EQ(
      error([](Json::Value& d) { d["steps"] = 4; }).find(file + "diffusion.steps: unknown key"),
      0u);
  EXPECT_EQ(error([](Json::Value& d) { d["schedule"]["type"] = "sigmoid"; }),
            file + "diffusion.schedule.type: must be one of linear, scaled_linear, cosine, table");
  EXPECT_EQ(error([](Json::Value& d) { d["schedule"]["beta_end"] = 1.5; }),
            file + "diffusion.schedule: needs 0 < beta_start < beta_end < 1");
  EXPECT_EQ(
      error([](Json::Value& d) {
        d["schedule"] = Json::Value(Json::objectValue);
        d["schedule"]["type"] = "table";
        d["schedule"]["alphas_cumprod"].append(0.5);
      }),
      file + "diffusion.schedule.alphas_cumprod: must list 1000 values, one per training timestep");
  EXPECT_EQ(
      error([](Json::Value& d) {
        d["training_timesteps"] = 2;
        d["timesteps"] = Json::Value(Json::arrayValue);
        d["timesteps"].append(1);
        d["schedule"] = Json::Value(Json::objectValue);
        d["schedule"]["type"] = "table";
        d["schedule"]["alphas_cumprod"].append(0.5);
        d["schedule"]["alphas_cumprod"].append(0.7);
      }),
      file + "diffusion.schedule.alphas_cumprod: must be numbers in (0, 1] that never increase");
  EXPECT_EQ(error([](Json::Value& d) { d["prediction"] = "noise"; }),
            file + "diffusion.prediction: must be one of epsilon, v, sample");
  EXPECT_EQ(error([](Json::Value& d) { d["prediction"] = 3; }),
            file + "diffusion.prediction: must be a string");
  EXPECT_EQ(error([](Json::Value& d) { d["timesteps"].append(600); }),
            file + "diffusion.timesteps: must be strictly decreasing integers from 999 down to 0");
  EXPECT_EQ(error([](Json::Value& d) { d["timesteps"][0] = 1000; }),
            file + "diffusion.timesteps: must be strictly decreasing integers from 999 down to 0");
  EXPECT_EQ(error([](Json::Value& d) {
              d["timesteps"] = Json::Value(Json::objectValue);
              d["timesteps"]["spacing"] = "random";
            }),
            file + "diffusion.timesteps.spacing: must be one of linspace, leading, trailing");
  EXPECT_EQ(error([](Json::Value& d) {
              d["timesteps"] = Json::Value(Json::objectValue);
              d["timesteps"]["count"] = 0;
            }),
            file + "diffusion.timesteps.count: must be an integer from 1 to 1000");
  EXPECT_EQ(error([](Json::Value& d) { d["eta"] = 2; }),
            file + "diffusion.eta: must be from 0 (deterministic DDIM) to 1");
  EXPECT_EQ(error([](Json::Value& d) { d["clip"] = true; }),
            file + "diffusion.clip: must be false or [min, max] with min < max (network units)");
  EXPECT_EQ(error([](Json::Value& d) { d["samples"] = 0; }),
            file + "diffusion.samples: must be an integer from 1 to 64");
  EXPECT_EQ(error([](Json::Value& d) { d["seed"] = -1; }),
            file + "diffusion.seed: must be a non-negative integer");
  EXPECT_EQ(error([](Json::Value& d) { d["time_input"] = "seconds"; }),
            file + "diffusion.time_input: must be index or fraction");
  Json::Value superres = DiffusionManifest();
  superres["task"] = "superres";
  superres["scale"]["in_plane"] = 2;
  EXPECT_EQ(ErrorOf(superres),
            file + "diffusion: diffusion models run on the input's grid: their scale must be 1");
  EXPECT_EQ(ErrorOf(With(testing::DenoiseManifest("m"), "diffusion", 3)),
            file + "diffusion: must be an object describing the sampler");
}

TEST(ModelSpec, UncertaintyByTestTimeAugmentation) {
  Json::Value m = testing::DenoiseManifest("m");
  m["uncertainty"]["method"] = "augmentation";
  EXPECT_TRUE(ParseManifest(m, kFolder).augmentationUncertainty);
  EXPECT_FALSE(ParseManifest(testing::DenoiseManifest("m"), kFolder).augmentationUncertainty);
  const std::string file = "/models/m/manifest.json: ";
  m["uncertainty"]["method"] = "dropout";
  EXPECT_EQ(ErrorOf(m),
            file + "uncertainty.method: must be augmentation (flips and 90-degree rotations)");
  m["uncertainty"] = 1;
  EXPECT_EQ(ErrorOf(m), file + "uncertainty: must be {\"method\": \"augmentation\"}");
  Json::Value diffusion = DiffusionManifest();
  diffusion["uncertainty"]["method"] = "augmentation";
  EXPECT_EQ(ErrorOf(diffusion),
            file + "uncertainty: a diffusion model's uncertainty comes from its samples");
}

TEST(ModelSpec, LowPrecisionAllowsBf16WithACalibrationAndATolerance) {
  EXPECT_FALSE(ParseManifest(testing::DenoiseManifest("m"), kFolder).lowPrecision.bf16);
  Json::Value m = testing::DenoiseManifest("m");
  m["low_precision"] = testing::LowPrecisionSection(0.0002, 0.002);
  const LowPrecisionSpec spec = ParseManifest(m, kFolder).lowPrecision;
  EXPECT_TRUE(spec.bf16);
  EXPECT_EQ(spec.calibration.filename(), "calibration.pt");
  EXPECT_DOUBLE_EQ(spec.meanTolerance, 0.0002);
  EXPECT_DOUBLE_EQ(spec.p999Tolerance, 0.002);

  const std::string file = "/models/m/manifest.json: ";
  const auto problem = [&](const std::function<void(Json::Value&)>& change) {
    Json::Value changed = m;
    change(changed["low_precision"]);
    return ErrorOf(changed);
  };
  EXPECT_EQ(problem([](Json::Value& l) { l["allow"][0] = "int4"; }),
            file +
                "low_precision.allow: unknown precision; the node runs \"bf16\" and \"int8\" "
                "besides float");
  EXPECT_EQ(problem([](Json::Value& l) { l["allow"] = "bf16"; }),
            file + "low_precision.allow: must be a list of precisions: [\"bf16\", \"int8\"]");
  // int8 has a tolerance of its own, required when int8 is allowed.
  EXPECT_FALSE(spec.int8);
  EXPECT_EQ(problem([](Json::Value& l) { l["allow"].append("int8"); }),
            file +
                "low_precision.int8_tolerance: is required: {\"mean\": M, \"p999\": P} in "
                "output units");
  Json::Value both = m;
  both["low_precision"]["allow"].append("int8");
  both["low_precision"]["int8_tolerance"]["mean"] = 0.003;
  both["low_precision"]["int8_tolerance"]["p999"] = 0.02;
  const LowPrecisionSpec withInt8 = ParseManifest(both, kFolder).lowPrecision;
  EXPECT_TRUE(withInt8.bf16);
  EXPECT_TRUE(withInt8.int8);
  EXPECT_DOUBLE_EQ(withInt8.int8MeanTolerance, 0.003);
  EXPECT_DOUBLE_EQ(withInt8.int8P999Tolerance, 0.02);
  EXPECT_DOUBLE_EQ(withInt8.meanTolerance, 0.0002);
  Json::Value onlyInt8 = both;
  onlyInt8["low_precision"]["allow"] = Json::Value(Json::arrayValue);
  onlyInt8["low_precision"]["allow"].append("int8");
  onlyInt8["low_precision"].removeMember("tolerance");
  EXPECT_FALSE(ParseManifest(onlyInt8, kFolder).lowPrecision.bf16);
  EXPECT_TRUE(ParseManifest(onlyInt8, kFolder).lowPrecision.int8);
  EXPECT_NE(problem([](Json::Value& l) {
              l.removeMember("calibration");
            }).find("low_precision.calibration: is required"),
            std::string::npos);
  EXPECT_NE(problem([](Json::Value& l) {
              l["calibration"] = "../x/calibration.pt";
            }).find("low_precision.calibration: '../x/calibration.pt' must be a file name inside"),
            std::string::npos);
  EXPECT_NE(problem([](Json::Value& l) {
              l.removeMember("tolerance");
            }).find("low_precision.tolerance: is required"),
            std::string::npos);
  EXPECT_EQ(problem([](Json::Value& l) { l["tolerance"]["mean"] = 0; }),
            file + "low_precision.tolerance: mean and p999 must be numbers above 0");
  EXPECT_EQ(problem([](Json::Value& l) { l["tolerance"].removeMember("p999"); }),
            file + "low_precision.tolerance.p999: must be a number");
  EXPECT_NE(problem([](Json::Value& l) {
              l["tolerance"]["max"] = 1;
            }).find("low_precision.tolerance.max: unknown key"),
            std::string::npos);
  EXPECT_NE(
      problem([](Json::Value& l) { l["int8"] = true; }).find("low_precision.int8: unknown key"),
      std::string::npos);
}

TEST(ModelSpec, MissingManifestFileIsNotFound) {
  testing::TemporaryFolder dir;
  try {
    LoadManifest(dir.path());
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kNotFound);
    EXPECT_NE(std::string(e.what()).find("manifest.json: cannot be opened"), std::string::npos);
  }
}

TEST(ModelSpec, ParsesManifestTextAndNamesTheFileOfInvalidJson) {
  const ModelSpec s = ParseManifestText(
      R"json({"name": "m", "version": "1", "task": "denoise", "modalities": ["CT"],
              "intended_use": "test", "archive": "model.pt"})json",
      kFolder);
  EXPECT_EQ(s.archive, kFolder / "model.pt");
  try {
    ParseManifestText("{\"name\": ", kFolder);
    FAIL() << "invalid JSON was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::kBadInput);
    EXPECT_EQ(std::string(e.what()).rfind("/models/m/manifest.json: not valid JSON: ", 0), 0u)
        << e.what();
  }
}

TEST(ModelSpec, HostileKeysAndValuesStayReadableInErrors) {
  // A NUL byte used to cut the message short after "manifest.json: mod".
  Json::Value m = testing::DenoiseManifest("m");
  m[std::string("mod\0x", 5)] = 1;
  EXPECT_EQ(ErrorOf(m),
            "/models/m/manifest.json: mod\\x00x: unknown key; known keys are name, version, task, "
            "modalities, intended_use, model_uid, archive, input_normalization, "
            "output_normalization, output_range, output_units, scale, slice_context, tile, "
            "size_multiple, fp16, max_batch, derivation_code, description, diffusion, uncertainty, "
            "domain_check, low_precision");
  EXPECT_EQ(
      ErrorOf(With(testing::DenoiseManifest("m"), "task", std::string(300, '\n'))),
      "/models/m/manifest.json: task: '" +
          [] {
            std::string escaped;
            while (escaped.size() < 128) escaped += "\\x0a";
            return escaped;
          }() +
          "...' must be one of denoise, superres, mr2ct");
}

TEST(ErrorText, PrintableEscapesControlBytesAndBoundsTheLength) {
  EXPECT_EQ(Printable("CT"), "CT");
  EXPECT_EQ(Printable(std::string("a\0b\n\x7f\xc3\xa9", 7)), "a\\x00b\\x0a\\x7f\\xc3\\xa9");
  EXPECT_EQ(Printable(std::string(10, 'x'), 4), "xxxx...");
  EXPECT_EQ(Printable(""), "");
}

}  // namespace enhance
