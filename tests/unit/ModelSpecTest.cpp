// SPDX-License-Identifier: GPL-3.0-or-later
#include "enhance/inference/ModelSpec.h"

#include <gtest/gtest.h>

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
            "size_multiple, fp16, max_batch, derivation_code, description");
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
