# SPDX-License-Identifier: GPL-3.0-or-later
"""The built-in self-supervised denoiser in a real Orthanc.

A low-dose-like CT series and a noisy T1 head MR series (Rician noise), each routed by a
rule to "self-supervised-denoise", are learned from and denoised inside their jobs: the
jobs report what was learned (method, steps, losses, the training curve), every derived
instance says it in its DerivationDescription and passes dciodvfy, the derived series is
less noisy than its source, and the originals are untouched. A CT series whose anatomy
changes faster than Noise2Noise can learn from is learned from by the blind spot. A series whose slices overlap
is not learned from: the bilateral filter runs instead, and the job and the derived
series say why."""
import io
import os
import tempfile
import unittest

import numpy as np
import pydicom

from orthanc_harness import (OrthancServer, dciodvfy_errors, fingerprints, logged_on_failure,
                             make_head_mr, make_phantom, store_series, wait_for_ended_job)

STEPS = 200
NOISE2NOISE = "neighbouring-slice Noise2Noise"
BLIND_SPOT = "neighbouring-slice blind spot"


def pixels(server, series):
    """The series' slices in physical units, in instance order."""
    slices = []
    for instance in server.get(f"/series/{series}")["Instances"]:
        ds = pydicom.dcmread(io.BytesIO(server.get_bytes(f"/instances/{instance}/file")))
        slices.append((int(ds.InstanceNumber), ds.pixel_array * float(getattr(ds, "RescaleSlope", 1))
                       + float(getattr(ds, "RescaleIntercept", 0))))
    return np.stack([s for _, s in sorted(slices, key=lambda item: item[0])])


def noise_level(volume, inside):
    """The median magnitude of the difference between horizontally neighbouring pixels
    inside the body: noise dominates it, the anatomy's edges do not move it."""
    return float(np.median(np.abs(np.diff(volume, axis=2))[inside[:, :, 1:]]))


class SelfSupervisedTest(unittest.TestCase):
    def check_derived(self, server, job, tmp, *learned):
        derived = job["Content"]["DerivedSeries"]
        instances = server.get(f"/series/{derived}")["Instances"]
        for k, instance in enumerate(instances):
            data = server.get_bytes(f"/instances/{instance}/file")
            ds = pydicom.dcmread(io.BytesIO(data))
            self.assertIn("self-supervised-denoise 1.4.0", ds.DerivationDescription)
            for text in learned:
                self.assertIn(text, ds.DerivationDescription)
            self.assertEqual(ds.ImageType[0], "DERIVED")
            if k < 3:
                self.assertEqual(dciodvfy_errors(data, tmp, f"derived-{derived}-{k}.dcm"), [])
        return derived

    def test_ct_and_mr_series_are_denoised_by_what_was_learned_from_each(self):
        tmp = tempfile.mkdtemp(prefix="enhance-self-supervised-")
        # The phantom's anatomy goes from thorax to abdomen over the series: over 96 slices,
        # slowly enough from one slice to the next for Noise2Noise; over 32, the anatomy
        # changes more than the noise between neighbours, and the blind spot learns instead.
        ct_files = make_phantom(os.path.join(tmp, "ct"), rows=128, columns=128, slices=96,
                                noise=40.0)
        # On a 256x256 grid the phantom's structure is smooth enough from pixel to pixel
        # for the blind spot's width to be measured (white noise: 1x1).
        fast_files = make_phantom(os.path.join(tmp, "fast"), rows=256, columns=256, slices=32,
                                  noise=40.0)
        mr_files = make_head_mr(os.path.join(tmp, "mr"), "--count", "16", "--size", "160",
                                "--rician", "0.08", "--seed", "3")
        server = OrthancServer(stable_age=2, extra_config={"Enhance": {
            "Device": "cpu",
            # A budget that a busy machine does not reach: the steps are the test's.
            "SelfSupervised": {"Steps": STEPS, "TimeBudgetSeconds": 600, "Augmentations": 2},
            "Rules": [{"Name": "learn", "Modalities": ["CT", "MR"], "Task": "denoise",
                       "Model": "self-supervised-denoise"}]}})
        with logged_on_failure(server, tmp):
            server.start(timeout=120)
            model = server.get("/enhance/models/self-supervised-denoise")
            self.assertEqual(model["Task"], "denoise")
            self.assertIn(f"{STEPS} steps", model["Parameters"])

            for name, files, method in (("CT", ct_files, NOISE2NOISE), ("MR", mr_files, NOISE2NOISE),
                                        ("CT of fast anatomy", fast_files, BLIND_SPOT)):
                source = store_series(server, files)
                originals = fingerprints(server, source)
                job = wait_for_ended_job(
                    server, lambda j: j["Content"].get("SourceSeries") == source, timeout=600,
                    what=f"the {name} job")
                self.assertEqual(job["State"], "Success", job["Content"])
                learning = job["Content"]["Learning"]
                self.assertEqual(learning["Method"], method)
                self.assertEqual(learning["AnatomyToNoise"] > 0.5, method == BLIND_SPOT, learning)
                # White noise: the network's result and the bilateral filter's were scored
                # on the held-out slices, and the blend of the lowest estimated error gave
                # the result.
                network_error = learning["HeldOutNetworkError"]
                bilateral_error = learning["HeldOutBilateralError"]
                self.assertGreater(network_error, 0, learning)
                self.assertGreater(bilateral_error, 0, learning)
                # The noise the estimates assumed: the phantoms' 40 HU.
                if name != "MR":
                    self.assertAlmostEqual(learning["HeldOutNoise"], 40.0, delta=6.0, msg=learning)
                else:
                    self.assertGreater(learning["HeldOutNoise"], 0, learning)
                # The blend of the two of the lowest estimated error: the network's share
                # of it, 0 for the bilateral filter alone.
                weight = learning["NetworkWeight"]
                self.assertGreaterEqual(weight, 0, learning)
                self.assertLessEqual(weight, 1, learning)
                self.assertEqual(learning["Applied"], weight > 0, learning)
                self.assertLessEqual(learning["HeldOutBlendError"],
                                     min(network_error, bilateral_error) + 1e-9, learning)
                applied = weight > 0
                # The Rician bias of magnitude images: not for CT, whose values go below 0.
                rician = learning["RicianBiasRemoved"]
                if name != "MR":
                    self.assertFalse(rician, learning)
                self.assertEqual(learning["Steps"], STEPS)
                self.assertEqual(learning["PlannedSteps"], STEPS)
                self.assertFalse(learning["StoppedByTimeBudget"])
                self.assertEqual(learning["Device"], "cpu")
                self.assertLess(learning["HeldOutLoss"], learning["HeldOutInputLoss"])
                self.assertEqual(learning["HeldOutBaseline"],
                                 "the input" if method == NOISE2NOISE
                                 else "the mean of the neighbouring slices")
                self.assertGreaterEqual(learning["HeldOutSlices"], 1)
                curve = learning["Curve"]
                self.assertGreaterEqual(len(curve), 10)
                self.assertEqual(curve[-1][0], STEPS)
                described = method
                if method == BLIND_SPOT:
                    # As wide as the noise is correlated: white here.
                    side = learning["BlindSpotPixels"]
                    self.assertEqual(side, 1, learning)
                    described = f"{method} of {side}x{side} px"
                else:
                    self.assertNotIn("BlindSpotPixels", learning)
                if applied:
                    self.assertNotIn("Fallback", learning)
                    learned = (f"learned from this series: {described}, {STEPS} steps",
                               "estimated error (SURE)")
                    if weight < 1:
                        learned += ("blended with the bilateral filter's result, "
                                    f"{weight:.2f} of the network's",)
                else:
                    self.assertIn("Stein's unbiased risk estimate", learning["Fallback"])
                    self.assertIn("the bilateral filter ran instead", learning["Fallback"])
                    learned = ("not learned from this series: on the held-out slices",
                               f"trained for {STEPS} steps")
                if rician:
                    learned += ("the magnitude's Rician bias removed (noise deviation",)
                derived = self.check_derived(server, job, tmp, *learned)
                original = pixels(server, source)
                inside = original > np.percentile(original, 50)
                before = noise_level(original, inside)
                after = noise_level(pixels(server, derived), inside)
                self.assertLess(after, 0.8 * before, f"{name}: {after} vs {before}")
                self.assertEqual(fingerprints(server, source), originals)

    def test_a_series_whose_slices_overlap_gets_the_bilateral_filter_and_says_why(self):
        tmp = tempfile.mkdtemp(prefix="enhance-self-supervised-")
        files = make_phantom(os.path.join(tmp, "ct"), rows=64, columns=64, slices=6, noise=40.0)
        for path in files:  # 2.5 mm apart, 5 mm thick
            ds = pydicom.dcmread(path)
            ds.SliceThickness = "5"
            ds.save_as(path)
        server = OrthancServer(stable_age=2, extra_config={"Enhance": {
            "Device": "cpu",
            "Rules": [{"Name": "learn", "Modalities": ["CT"], "Task": "denoise",
                       "Model": "self-supervised-denoise"}]}})
        with logged_on_failure(server, tmp):
            server.start(timeout=120)
            source = store_series(server, files)
            job = wait_for_ended_job(server, lambda j: j["Content"].get("SourceSeries") == source,
                                     timeout=240, what="the job")
            self.assertEqual(job["State"], "Success", job["Content"])
            learning = job["Content"]["Learning"]
            self.assertFalse(learning["Applied"])
            self.assertIn("the slices overlap (2.5 mm apart, 5 mm thick)", learning["Fallback"])
            self.assertIn("bilateral filter ran instead", learning["Fallback"])
            self.assertNotIn("Steps", learning)
            self.assertTrue(any("overlap" in w for w in job["Content"]["Warnings"]))
            self.check_derived(server, job, tmp, "not learned from this series: the slices overlap")


if __name__ == "__main__":
    unittest.main()
