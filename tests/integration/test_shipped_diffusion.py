# SPDX-License-Identifier: GPL-3.0-or-later
"""The shipped diffusion model in a real Orthanc: a real T1-weighted head MR (mricron-data)
sent by C-STORE and routed by a rule to mr2ct-diffusion comes back as two derived series in
the same study, the synthetic CT (the mean of the samples) and its uncertainty map, both
valid DICOM; the same request again gives the same pixels."""
import io
import os
import shutil
import tempfile
import unittest

import numpy as np
import pydicom

from orthanc_harness import (OrthancServer, dciodvfy_errors, fingerprints, logged_on_failure,
                             make_head_mr, pixels, store_series, wait_for_ended_job,
                             wait_for_job)

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
MODEL = os.path.join(ROOT, "models", "mr2ct-diffusion")
SLICES = 6


def errors_of(data, directory, name):
    """dciodvfy's errors, less the one its 2022 dictionary gives for every synthetic CT:
    it does not know Synthetic Data (0008,001C)."""
    return [e for e in dciodvfy_errors(data, directory, name)
            if "0x0008,0x001c" not in e.lower() and "syntheticdata" not in e.lower()]


class ShippedDiffusionModelTest(unittest.TestCase):
    def test_a_routed_mr_gives_a_synthetic_ct_and_its_uncertainty_the_same_each_time(self):
        tmp = tempfile.mkdtemp(prefix="enhance-mr2ct-diffusion-")
        models = os.path.join(tmp, "models")
        shutil.copytree(MODEL, os.path.join(models, "mr2ct-diffusion"))
        files = make_head_mr(os.path.join(tmp, "mr"), "--count", str(SLICES))
        server = OrthancServer(stable_age=2, extra_config={"Enhance": {
            "ModelsDirectories": [models], "Device": "cpu",
            "Rules": [{"Name": "synthetic-ct", "Modalities": ["MR"], "Task": "mr2ct",
                       "Model": "mr2ct-diffusion"}]}})
        with logged_on_failure(server, tmp):
            server.start(timeout=180)
            source = store_series(server, files)
            originals = fingerprints(server, source)
            study = server.get(f"/series/{source}")["ParentStudy"]
            job = wait_for_ended_job(server, lambda j: j["Content"].get("SourceSeries") == source,
                                     timeout=300, what="the rule's job")
            self.assertEqual(job["State"], "Success", job["Content"])
            content = job["Content"]
            derived, spread = content["DerivedSeries"], content["UncertaintySeries"]
            self.assertEqual(sorted(server.get(f"/studies/{study}")["Series"]),
                             sorted([source, derived, spread]))
            self.assertEqual(content["Sampler"]["Samples"], 4)
            self.assertEqual(content["Uncertainty"]["Units"], "HU")
            self.assertEqual(content["Uncertainty"]["Instances"], SLICES)
            # Samples disagree somewhere in a head (bone edges, sinuses), not everywhere.
            self.assertGreater(content["Uncertainty"]["Percentile99"], content["Uncertainty"]["Median"])

            for series in (derived, spread):
                instances = server.get(f"/series/{series}")["Instances"]
                self.assertEqual(len(instances), SLICES)
                for k, instance in enumerate(instances):
                    data = server.get_bytes(f"/instances/{instance}/file")
                    self.assertEqual(errors_of(data, tmp, f"{series}-{k}.dcm"), [], series)
            first = server.get(f"/series/{derived}")["Instances"][0]
            ct = pydicom.dcmread(io.BytesIO(server.get_bytes(f"/instances/{first}/file")))
            self.assertEqual(ct.Modality, "CT")
            self.assertIn("mr2ct by mr2ct-diffusion", ct.DerivationDescription)
            self.assertIn("4 sample(s)", ct.DerivationDescription)
            first = server.get(f"/series/{spread}")["Instances"][0]
            sd = pydicom.dcmread(io.BytesIO(server.get_bytes(f"/instances/{first}/file")))
            self.assertTrue(sd.SeriesDescription.endswith(" [AI uncertainty]"))
            self.assertTrue(sd.DerivationDescription.startswith(
                "uncertainty map: per-voxel standard deviation across 4 samples (HU)"))

            # A plausible synthetic CT of a head: air around it, soft tissue inside.
            hu = pixels(server, derived) * float(ct.RescaleSlope) + float(ct.RescaleIntercept)
            self.assertLess(np.median(hu[:, :5, :]), -900)
            centre = hu[:, hu.shape[1] // 2 - 10:hu.shape[1] // 2 + 10,
                        hu.shape[2] // 2 - 10:hu.shape[2] // 2 + 10]
            self.assertTrue(-50 < np.median(centre) < 100, np.median(centre))

            # The same request again: found complete; with both series gone, made again to
            # the same pixels and the same UIDs.
            mean_before, spread_before = pixels(server, derived), pixels(server, spread)
            body = {"Task": "mr2ct", "Model": "mr2ct-diffusion"}
            again = wait_for_job(server, server.post(f"/enhance/series/{source}", body)["ID"])
            self.assertTrue(again["Content"]["AlreadyProcessed"])
            for series in (derived, spread):
                server.request("DELETE", f"/series/{series}")
            redone = wait_for_job(server, server.post(f"/enhance/series/{source}", body)["ID"],
                                  timeout=300)
            self.assertEqual(redone["State"], "Success", redone["Content"])
            self.assertEqual((redone["Content"]["DerivedSeries"],
                              redone["Content"]["UncertaintySeries"]), (derived, spread))
            self.assertTrue((pixels(server, derived) == mean_before).all())
            self.assertTrue((pixels(server, spread) == spread_before).all())
            self.assertEqual(fingerprints(server, source), originals)


if __name__ == "__main__":
    unittest.main()
