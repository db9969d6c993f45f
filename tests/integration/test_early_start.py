# SPDX-License-Identifier: GPL-3.0-or-later
"""Early start (Enhance.EarlyStartMB): slices of a series still arriving are computed as
their instances are stored; when the series becomes stable its job takes them and
computes only the rest. The derived series must be exactly the one made without it."""
import io
import os
import shutil
import tempfile
import unittest

import pydicom

from orthanc_harness import OrthancServer, make_phantom, wait_for_ended_job
from test_models import write_model


class EarlyStartTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="enhance-early-")
        cls.models = os.path.join(cls.tmp, "models")
        write_model(cls.models, "mean3x3", "ct-mean")
        write_model(cls.models, "mean3x3", "ct-mean-context", slice_context=1)
        # Noise drawn from the seed, the series and each slice's position: the slices
        # sampled one by one as they arrive are those of the whole series. (One sample: with
        # two or more, the job wants the uncertainty map, which it computes whole.)
        write_model(cls.models, "diffusion-epsilon", "ct-diffusion", diffusion={
            "training_timesteps": 50, "schedule": {"type": "cosine"}, "timesteps": {"count": 2},
            "samples": 1, "seed": 3, "eta": 0.5})
        cls.files = make_phantom(os.path.join(cls.tmp, "ct"), rows=96, columns=80, slices=20,
                                 seed=11)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def process(self, model, early_mb):
        """Sends the series to a fresh Orthanc; returns the job's content and the derived
        series' pixel data by instance number."""
        config = {"Enhance": {"ModelsDirectories": [self.models], "EarlyStartMB": early_mb,
                              "Rules": [{"Name": "ct", "Modalities": ["CT"], "Task": "denoise",
                                         "Model": model}]}}
        with OrthancServer(extra_config=config, stable_age=3) as o:
            o.store_files(self.files)

            job = wait_for_ended_job(o, lambda j: j["Type"] == "EnhanceSeries", timeout=300,
                                     what="the job")
            self.assertEqual(job["State"], "Success", job["Content"].get("ErrorMessage"))
            derived = o.get(f"/series/{job['Content']['DerivedSeries']}")
            pixels = {}
            for instance in derived["Instances"]:
                ds = pydicom.dcmread(io.BytesIO(o.get_bytes(f"/instances/{instance}/file")))
                pixels[int(ds.InstanceNumber)] = (ds.SOPInstanceUID, ds.PixelData)
            return job["Content"], derived["MainDicomTags"]["SeriesInstanceUID"], pixels

    def test_slices_computed_early_give_the_same_derived_series(self):
        plain, plain_uid, plain_pixels = self.process("ct-mean", 0)
        self.assertEqual(plain["PrecomputedSlices"], 0)
        early, early_uid, early_pixels = self.process("ct-mean", 64)
        # StableAge 3 s leaves time for all 20 slices; a slow machine may leave some.
        self.assertGreater(early["PrecomputedSlices"], 0)
        self.assertEqual(early_uid, plain_uid)
        self.assertEqual(sorted(early_pixels), list(range(1, 21)))
        self.assertEqual(early_pixels, plain_pixels)

    def test_a_diffusion_model_samples_the_same_pixels_early_as_late(self):
        _, plain_uid, plain_pixels = self.process("ct-diffusion", 0)
        early, early_uid, early_pixels = self.process("ct-diffusion", 64)
        self.assertGreater(early["PrecomputedSlices"], 0)
        self.assertEqual(early_uid, plain_uid)
        self.assertEqual(early_pixels, plain_pixels)

    def test_models_that_look_at_neighbouring_slices_wait_for_the_whole_series(self):
        content, _, pixels = self.process("ct-mean-context", 64)
        self.assertEqual(content["PrecomputedSlices"], 0)
        self.assertEqual(len(pixels), 20)


if __name__ == "__main__":
    unittest.main()
