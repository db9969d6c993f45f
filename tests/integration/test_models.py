# SPDX-License-Identifier: GPL-3.0-or-later
"""TorchScript models in a real Orthanc: loading from Enhance.ModelsDirectories, bad models
reported without stopping Orthanc, reload, the model routes, a rule running a TorchScript
model, and POST /enhance/evaluate."""
import io
import json
import os
import shutil
import tempfile
import unittest

import pydicom

from orthanc_harness import (HttpError, OrthancServer, dciodvfy_errors, logged_on_failure,
                             make_phantom, pixels, store_series, wait_for, wait_for_job,
                             write_fixture_model)

def write_model(parent, kind, name, **extra):
    """A fixture model cut into tiles of 64 with an overlap of 16, unless `extra` says else."""
    return write_fixture_model(parent, kind, name, **{"tile": {"size": 64, "overlap": 16}, **extra})


class ModelsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="enhance-models-")
        cls.models = os.path.join(cls.tmp, "models")
        write_model(cls.models, "mean3x3", "ct-mean")
        write_model(cls.models, "wrong-shape", "broken")
        config = {"Enhance": {
            "ModelsDirectories": [cls.models],
            "Device": "cpu",
            "Rules": [
                {"Name": "ct-mean", "Modalities": ["CT"], "Task": "denoise", "Model": "ct-mean"},
                {"Name": "mr-broken", "Modalities": ["MR"], "Task": "denoise", "Model": "broken"},
            ]}}
        cls.orthanc = OrthancServer(extra_config=config)
        cls.orthanc.start()  # starts although one model is broken and a rule uses it

    @classmethod
    def tearDownClass(cls):
        cls.orthanc.cleanup()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_1_models_are_listed_and_bad_ones_reported(self):
        o = self.orthanc
        names = [m["Name"] for m in o.get("/enhance/models")]
        self.assertIn("ct-mean", names)
        self.assertIn("classical-bilateral", names)
        self.assertNotIn("broken", names)
        model = o.get("/enhance/models/ct-mean")
        self.assertEqual(model["Task"], "denoise")
        self.assertFalse(model["Builtin"])
        self.assertRegex(model["Uid"], r"^2\.25\.\d+$")
        system = o.get("/enhance/system")
        self.assertEqual(system["Device"], "cpu")
        problems = system["ModelProblems"]
        self.assertEqual([p["Name"] for p in problems], ["broken"])
        self.assertIn("returned [1, 1, 31, 32]", problems[0]["Message"])
        self.assertEqual(len(system["RuleProblems"]), 1)
        self.assertIn("rule 'mr-broken': model 'broken' is not available", system["RuleProblems"][0])

        with self.assertRaises(HttpError) as missing:
            o.get("/enhance/models/no-such-model")
        self.assertEqual(missing.exception.status, 404)
        body = json.loads(missing.exception.body)
        self.assertIn("unknown model 'no-such-model'", body["Message"])
        self.assertIn("ct-mean", body["Message"])

    def test_2_rule_runs_the_torchscript_model_and_evaluate_compares_series(self):
        o = self.orthanc
        files = make_phantom(os.path.join(self.tmp, "ct"), rows=96, columns=96, slices=6)
        o.store_files(files)
        source_id = o.get("/series")[0]
        study_id = o.get(f"/series/{source_id}")["ParentStudy"]

        def derived():
            others = [s for s in o.get(f"/studies/{study_id}")["Series"] if s != source_id]
            return others if others and len(o.get(f"/series/{others[0]}")["Instances"]) == 6 else None

        derived_id = wait_for(derived, timeout=120, what="the derived series")[0]
        instance = o.get(f"/series/{derived_id}")["Instances"][0]
        ds = pydicom.dcmread(io.BytesIO(o.get_bytes(f"/instances/{instance}/file")))
        equipment = ds.ContributingEquipmentSequence[-1]
        self.assertEqual(equipment.ManufacturerModelName, "ct-mean")
        self.assertEqual(equipment.DeviceUID, o.get("/enhance/models/ct-mean")["Uid"])
        self.assertIn("TorchScript on cpu", ds.DerivationDescription)
        self.assertEqual(ds.DerivationCodeSequence[0].CodingSchemeDesignator, "99ENHANCE")

        report = o.post("/enhance/evaluate", {"Reference": source_id, "Test": derived_id,
                                              "Window": [-160, 240], "BodyMask": True})
        self.assertEqual(report["DataRange"], 400)
        self.assertEqual(report["Units"], "HU")
        self.assertEqual(len(report["Slices"]), 6)
        self.assertGreater(report["Overall"]["PSNR"], 10)
        self.assertGreater(report["Overall"]["SSIM"], 0.2)
        self.assertLess(report["Overall"]["SSIM"], 1.0)
        self.assertGreater(report["Overall"]["MAE"], 0)

        same = o.post("/enhance/evaluate", {"Reference": source_id, "Test": source_id})
        self.assertIsNone(same["Overall"]["PSNR"])  # identical: infinite PSNR
        self.assertAlmostEqual(same["Overall"]["SSIM"], 1.0, places=9)

        # Tissue classes by thresholds: Dice and IoU, as for a synthetic CT's bone.
        classes = [{"Name": "bone", "Above": 250}, {"Name": "air", "Below": -400},
                   {"Name": "metal", "Above": 3000}]
        overlap = o.post("/enhance/evaluate", {"Reference": source_id, "Test": derived_id,
                                               "Classes": classes, "BodyMask": True})["Classes"]
        self.assertEqual([c["Name"] for c in overlap], ["bone", "air", "metal"])
        bone = overlap[0]
        self.assertGreater(bone["ReferenceVoxels"], 0)
        self.assertAlmostEqual(bone["Dice"], 2 * bone["BothVoxels"] /
                               (bone["ReferenceVoxels"] + bone["TestVoxels"]), places=9)
        self.assertTrue(0 < bone["IoU"] <= bone["Dice"] < 1)
        self.assertIsNone(overlap[2]["Dice"])  # no metal in either: undefined, not perfect
        itself = o.post("/enhance/evaluate", {"Reference": source_id, "Test": source_id,
                                              "Classes": classes[:1]})["Classes"][0]
        self.assertEqual((itself["Dice"], itself["IoU"]), (1.0, 1.0))

        for body, status, text in [
            ({"Reference": source_id}, 400, '"Test" must be the Orthanc ID of a series'),
            ({"Reference": source_id, "Test": "nope"}, 404, "series nope does not exist"),
            ({"Reference": source_id, "Test": derived_id, "Window": [1]}, 400, "Window"),
            ({"Reference": source_id, "Test": derived_id, "Colour": 1}, 400, 'unknown key "Colour"'),
            ({"Reference": source_id, "Test": derived_id, "Classes": [{"Name": "bone"}]}, 400,
             '"Classes" must be a list'),
            ({"Reference": source_id, "Test": derived_id,
              "Classes": [{"Name": "bone", "Above": 250, "Colour": 1}]}, 400,
             'unknown key "Colour" in Classes'),
        ]:
            with self.assertRaises(HttpError) as error:
                o.post("/enhance/evaluate", body)
            self.assertEqual(error.exception.status, status, body)
            self.assertIn(text, json.loads(error.exception.body)["Message"])

    def test_3_reload_picks_up_a_repaired_model(self):
        o = self.orthanc
        write_model(self.models, "identity", "broken")
        report = o.post("/enhance/models/reload")
        self.assertEqual(sorted(report["Loaded"]), ["broken", "ct-mean"])
        self.assertEqual(report["Problems"], [])
        self.assertEqual(report["RuleProblems"], [])
        self.assertIn("broken", [m["Name"] for m in o.get("/enhance/models")])


class DiffusionModelTest(unittest.TestCase):
    """A conditional diffusion model (a TorchScript denoiser forward(x_t, t, condition) and a
    manifest's sampler) through Orthanc: the mean of its samples as the derived series, the
    spread of its samples as an uncertainty series beside it, and the same pixels for the
    same request."""

    def test_the_derived_and_uncertainty_series_and_the_same_pixels_for_the_same_request(self):
        tmp = tempfile.mkdtemp(prefix="enhance-diffusion-")
        models = os.path.join(tmp, "models")
        write_model(models, "diffusion-epsilon", "ct-diffusion", diffusion={
            "training_timesteps": 50, "schedule": {"type": "cosine"}, "timesteps": {"count": 3},
            "samples": 2, "seed": 9, "eta": 0.3})
        server = OrthancServer(extra_config={"Enhance": {
            "ModelsDirectories": [models], "Device": "cpu", "UncertaintyThreshold": 20}})
        with logged_on_failure(server, tmp):
            server.start()
            self.assertIn("ct-diffusion", [m["Name"] for m in server.get("/enhance/models")])
            source = store_series(server, make_phantom(os.path.join(tmp, "ct"), rows=80, columns=72,
                                                       slices=4, seed=21))
            study = server.get(f"/series/{source}")["ParentStudy"]

            def run(options=None):
                body = {"Task": "denoise", "Model": "ct-diffusion"}
                if options is not None:
                    body["Options"] = options
                job = server.post(f"/enhance/series/{source}", body)["ID"]
                done = wait_for_job(server, job)
                self.assertEqual(done["State"], "Success", done["Content"])
                return done["Content"]

            content = run()
            first, spread = content["DerivedSeries"], content["UncertaintySeries"]
            self.assertEqual(content["Sampler"], {"Samples": 2, "Steps": 3, "Seed": 9})
            figures = content["Uncertainty"]
            self.assertEqual(figures["Samples"], 2)
            self.assertEqual(figures["Units"], "HU")
            self.assertEqual(figures["Threshold"], 20)
            self.assertEqual(figures["Instances"], 4)
            self.assertGreater(figures["Median"], 0)
            self.assertGreaterEqual(figures["Percentile99"], figures["Median"])
            self.assertTrue(0 <= figures["FractionAbove"] <= 1)
            self.assertEqual(sorted(server.get(f"/studies/{study}")["Series"]), sorted([source, first, spread]))
            for series in (first, spread):
                for k, instance in enumerate(server.get(f"/series/{series}")["Instances"]):
                    data = server.get_bytes(f"/instances/{instance}/file")
                    self.assertEqual(dciodvfy_errors(data, tmp, f"{series}-{k}.dcm"), [], series)
            ds = pydicom.dcmread(io.BytesIO(server.get_bytes(
                f"/instances/{server.get(f'/series/{first}')['Instances'][0]}/file")))
            self.assertIn("diffusion: DDIM 3 steps, eta 0.3, 2 sample(s), seed 9", ds.DerivationDescription)
            sd = pydicom.dcmread(io.BytesIO(server.get_bytes(
                f"/instances/{server.get(f'/series/{spread}')['Instances'][0]}/file")))
            self.assertTrue(sd.SeriesDescription.endswith(" [AI uncertainty]"))
            self.assertTrue(sd.DerivationDescription.startswith(
                "uncertainty map: per-voxel standard deviation across 2 samples (HU)"))
            self.assertEqual(int(sd.SeriesNumber), int(ds.SeriesNumber) + 1)
            self.assertEqual(list(sd.ImageType)[:2], ["DERIVED", "SECONDARY"])
            self.assertEqual(sd.ReferencedSeriesSequence[0].SeriesInstanceUID,
                             server.get(f"/series/{source}")["MainDicomTags"]["SeriesInstanceUID"])
            mean_before, spread_before = pixels(server, first), pixels(server, spread)

            # Asked again: found complete. Its uncertainty series lost: both made again, to
            # the same pixels.
            self.assertTrue(run()["AlreadyProcessed"])
            server.request("DELETE", f"/series/{spread}")
            again = run()
            self.assertNotIn("AlreadyProcessed", again)
            self.assertEqual((again["DerivedSeries"], again["UncertaintySeries"]), (first, spread))
            self.assertTrue((pixels(server, first) == mean_before).all())
            self.assertTrue((pixels(server, spread) == spread_before).all())

            # Not wanted: the derived series alone; a wrong option is refused.
            alone = run({"Uncertainty": False})
            self.assertNotIn("UncertaintySeries", alone)
            self.assertNotIn(alone["DerivedSeries"], (first, spread))
            with self.assertRaises(HttpError) as refused:
                server.post(f"/enhance/series/{source}", {"Task": "denoise", "Model": "ct-diffusion",
                                                          "Options": {"Uncertainty": "yes"}})
            self.assertEqual(refused.exception.status, 400)
            self.assertIn("Options.Uncertainty must be true or false",
                          json.loads(refused.exception.body)["Message"])


class ConfigurationTest(unittest.TestCase):
    def test_a_rule_naming_an_unknown_model_stops_orthanc_with_a_clear_message(self):
        config = {"Enhance": {"Rules": [{"Name": "typo", "Task": "denoise", "Model": "clasical-bilateral"}]}}
        server = OrthancServer(extra_config=config)
        try:
            with self.assertRaises(RuntimeError):
                server.start(timeout=30)
            self.assertIn("unknown model 'clasical-bilateral'", server.log())
        finally:
            server.cleanup()


if __name__ == "__main__":
    unittest.main()
