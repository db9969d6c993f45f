// SPDX-License-Identifier: GPL-3.0-or-later
#include "enhance/pipeline/SliceCache.h"

#include <gtest/gtest.h>

#include "ModelFixtures.h"
#include "TestData.h"
#include "enhance/base/Error.h"
#include "enhance/inference/BilateralDenoiser.h"
#include "enhance/inference/TorchModel.h"
#include "enhance/pipeline/SeriesEnhancer.h"

namespace enhance {
namespace {

Volume Ramp(int64_t slices, int64_t rows, int64_t columns, float start = 0) {
  Volume v;
  v.Resize(slices, rows, columns);
  v.units = "HU";
  for (size_t i = 0; i < v.voxels.size(); ++i) v.voxels[i] = start + static_cast<float>(i % 997);
  for (int64_t s = 0; s < slices; ++s) v.geometry.slicePositions.push_back({0, 0, 1.0 * s});
  return v;
}

// The 3x3 mean fixture as an untiled CT denoiser on the CPU, written under `dir`; with
// `sliceContext`, it is given that many neighbouring slices on each side.
std::shared_ptr<const TorchModel> LoadMean3x3(const testing::TemporaryFolder& dir,
                                              int sliceContext = 0) {
  Json::Value manifest = testing::DenoiseManifest(sliceContext > 0 ? "context" : "mean");
  manifest["tile"]["size"] = 0;
  if (sliceContext > 0) manifest["slice_context"] = sliceContext;
  InferenceOptions cpu;
  cpu.device = "cpu";
  return TorchModel::Load(testing::WriteFixtureModel(dir.path(), "mean3x3", manifest), cpu);
}

// Notes how many results the cache holds each time an instance is fetched.
class WatchedSource : public testing::MemoryInstanceSource {
 public:
  WatchedSource(std::vector<EncodedInstance> files, const SliceCache& cache)
      : MemoryInstanceSource(std::move(files)), cache_(cache) {}
  std::string FetchInstance(const std::string& id) override {
    held.push_back(cache_.Count());
    return MemoryInstanceSource::FetchInstance(id);
  }
  std::vector<size_t> held;

 private:
  const SliceCache& cache_;
};

}  // namespace

TEST(SliceCache, KeysTellApartModelsInstancesAndPixels) {
  const Volume a = Ramp(2, 4, 4);
  Volume b = a;
  b.At(1, 3, 3) += 1;
  EXPECT_EQ(SliceCache::Key("m", "1.2", a, 0), SliceCache::Key("m", "1.2", b, 0));
  EXPECT_NE(SliceCache::Key("m", "1.2", a, 1), SliceCache::Key("m", "1.2", b, 1));
  EXPECT_NE(SliceCache::Key("m", "1.2", a, 0), SliceCache::Key("n", "1.2", a, 0));
  EXPECT_NE(SliceCache::Key("m", "1.2", a, 0), SliceCache::Key("m", "1.3", a, 0));
  EXPECT_THROW(SliceCache::Key("m", "1.2", a, 2), Error);
}

TEST(SliceCache, TakeRemovesAndTheOldestGoFirstBeyondTheCapacity) {
  SliceCache cache(3 * 100 * sizeof(float));
  for (int i = 0; i < 4; ++i) cache.Put("k" + std::to_string(i), std::vector<float>(100, i));
  EXPECT_EQ(cache.Count(), 3u);
  EXPECT_EQ(cache.Bytes(), 3 * 100 * sizeof(float));
  EXPECT_FALSE(cache.Contains("k0"));
  EXPECT_EQ(cache.Take("k2"), std::vector<float>(100, 2));
  EXPECT_TRUE(cache.Take("k2").empty());
  EXPECT_EQ(cache.Count(), 2u);
  cache.Put("huge", std::vector<float>(1000, 1));  // larger than the whole cache
  EXPECT_FALSE(cache.Contains("huge"));
  EXPECT_EQ(cache.Count(), 2u);

  EXPECT_FALSE(cache.Started("1.2.3"));
  cache.MarkStarted("1.2.3");
  EXPECT_TRUE(cache.Started("1.2.3"));
}

TEST(SliceCache, TheEngineTakesKnownSlicesAndComputesOnlyTheRest) {
  testing::TemporaryFolder dir;
  const auto model = LoadMean3x3(dir);
  const Volume input = Ramp(4, 9, 7, -500);
  const Volume reference = model->Run(input, {});

  std::vector<int64_t> asked;
  RunContext context;
  const std::vector<float> marker(static_cast<size_t>(input.VoxelsPerSlice()), 42.0f);
  context.precomputed = [&](int64_t slice) {
    asked.push_back(slice);
    return slice == 2 ? marker : std::vector<float>();
  };
  const Volume output = model->Run(input, context);
  EXPECT_EQ(asked, (std::vector<int64_t>{0, 1, 2, 3}));
  for (int64_t s = 0; s < 4; ++s) {
    for (int64_t i = 0; i < input.VoxelsPerSlice(); ++i) {
      const float expected = s == 2 ? 42.0f : reference.Slice(s)[i];
      ASSERT_NEAR(output.Slice(s)[i], expected, 1e-3) << s << " " << i;
    }
  }

  // With neighbouring slices as context, a slice is never computed on its own.
  const auto contextual = LoadMean3x3(dir, 1);
  asked.clear();
  contextual->Run(input, context);
  EXPECT_TRUE(asked.empty());
}

// A job takes each slice computed early as soon as its source slice is decoded, so the
// cache empties as the volume fills, and the derived series is the one computed without.
TEST(SliceCache, AJobTakesEachEarlySliceAsItsSourceSliceIsDecoded) {
  testing::TemporaryFolder dir;
  const auto model = LoadMean3x3(dir);
  ASSERT_TRUE(model->TakesPrecomputedSlices());
  const std::vector<EncodedInstance> files = testing::PhantomSeries(24, 20, 6, 30.0);
  OutputOptions output;
  output.seriesInstanceUid = "1.2.826.0.1.3680043.10.1234.6";

  testing::MemoryInstanceSource plainSource(files);
  const EnhancedSeries plain = EnhanceSeries(plainSource, *model, output, {});

  SliceCache cache(size_t{64} << 20);
  for (const auto& file : files) {
    EXPECT_TRUE(PrecomputeInstance(file, "test series", nullptr, *model, cache, {}));
  }
  // The bilateral filter would compute every slice again: nothing is computed ahead.
  EXPECT_FALSE(
      PrecomputeInstance(files[0], "test series", nullptr, BilateralDenoiser(), cache, {}));
  ASSERT_EQ(cache.Count(), 6u);

  WatchedSource source(files, cache);
  std::vector<std::string> streamed;
  const EnhancedSeries early = EnhanceSeries(
      source, *model, output, {}, &cache,
      [&](size_t, size_t, std::string file) { streamed.push_back(std::move(file)); },
      [&] { streamed.clear(); });
  EXPECT_EQ(source.held, (std::vector<size_t>{6, 5, 4, 3, 2, 1}));
  EXPECT_EQ(cache.Count(), 0u);
  EXPECT_EQ(early.timings.precomputedSlices, 6);
  ASSERT_EQ(streamed.size(), plain.files.size());
  for (size_t k = 0; k < streamed.size(); ++k) {
    const DecodedSeries a = ReadSeries({{"plain", plain.files[k]}}, "plain");
    const DecodedSeries b = ReadSeries({{"early", streamed[k]}}, "early");
    EXPECT_EQ(a.instances[0].sopInstanceUid, b.instances[0].sopInstanceUid);
    EXPECT_EQ(a.volume.voxels, b.volume.voxels) << "slice " << k;
  }
}

}  // namespace enhance
