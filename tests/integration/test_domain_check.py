# SPDX-License-Identifier: GPL-3.0-or-later
"""The shipped domain checks in a real Orthanc.

A site has listed CT among the modalities of the MR denoiser (its manifest's "modalities"),
so that only the domain check stands between a CT series and the MR model: the CT series
routed to it by a rule is processed with the warning in every derived instance and in the
job; asked for by REST with "DomainCheck": "refuse" it is refused with the score, the
threshold and what to do, and nothing is stored; with "off" nobody looks. A real T1 head
MR sent to the same model is within its domain. GET /enhance/series/{id}/domain answers the
score without running the model, the same when many requests come at once."""
import concurrent.futures
import io
import json
import os
import shutil
import tempfile
import unittest

import pydicom

from orthanc_harness import (HttpError, OrthancServer, dciodvfy_errors, fingerprints,
                             logged_on_failure, make_head_mr, make_phantom, store_series,
                             wait_for_ended_job, wait_for_job)

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
WARNING = "outside the domain the model was trained on"


class DomainCheckTest(unittest.TestCase):
    def test_a_ct_series_sent_to_the_mr_model_is_warned_about_or_refused(self):
        tmp = tempfile.mkdtemp(prefix="enhance-domain-")
        models = os.path.join(tmp, "models")
        for name in ("mr-denoise", "ct-denoise", "mr-superres-x2"):
            shutil.copytree(os.path.join(ROOT, "models", name), os.path.join(models, name))
        manifest_path = os.path.join(models, "mr-denoise", "manifest.json")
        with open(manifest_path) as f:
            manifest = json.load(f)
        self.assertIn("domain_check", manifest, "the shipped mr-denoise has no domain check")
        manifest["modalities"] = ["MR", "CT"]
        with open(manifest_path, "w") as f:
            json.dump(manifest, f)
        ct_files = make_phantom(os.path.join(tmp, "ct"), rows=256, columns=256, slices=4)
        mr_files = make_head_mr(os.path.join(tmp, "mr"), "--count", "4")
        server = OrthancServer(stable_age=2, extra_config={"Enhance": {
            "ModelsDirectories": [models], "Device": "cpu",
            "Rules": [{"Name": "any-denoise", "Modalities": ["CT"], "Task": "denoise",
                       "Model": "mr-denoise"}]}})
        with logged_on_failure(server, tmp):
            server.start(timeout=120)
            info = server.get("/enhance/models/mr-denoise")["DomainCheck"]
            self.assertEqual(info["Archive"], "domain.pt")
            self.assertIn("T1-weighted", info["TrainedOn"])
            # The shipped MR check: the nearest of its reference series, one slice in 8, at
            # least 6, on the 2x2 means of the slices.
            self.assertEqual(info["Score"], "nearest")
            self.assertGreater(info["ReferenceSeries"], 10)
            self.assertEqual((info["SliceStep"], info["MinSlices"], info["MaxSlices"],
                              info["Downsample"], info["Crop"]), (8, 6, 32, 2, 0))
            self.assertEqual(info["Features"], ["LogReconstruction", "LogKL", "LogResidual",
                                                "MeanIntensity", "ResidualCorrelation"])
            # mr-superres-x2's check: its inputs as they are, at least 4 slices (that model
            # costs least per slice).
            x2 = server.get("/enhance/models/mr-superres-x2")["DomainCheck"]
            self.assertEqual((x2["SliceStep"], x2["MinSlices"], x2["MaxSlices"],
                              x2["Downsample"], x2["Crop"]), (8, 4, 32, 1, 0))

            # Routed by the rule (warn, the default): processed, and said everywhere.
            ct = store_series(server, ct_files)
            originals = fingerprints(server, ct)
            study = server.get(f"/series/{ct}")["ParentStudy"]
            job = wait_for_ended_job(server, lambda j: j["Content"].get("SourceSeries") == ct,
                                     timeout=240, what="the rule's job")
            self.assertEqual(job["State"], "Success", job["Content"])
            domain = job["Content"]["Domain"]
            self.assertTrue(domain["Outside"], domain)
            self.assertGreater(domain["Score"], domain["Threshold"])
            self.assertEqual(domain["Action"], "warn")
            self.assertEqual(domain["Slices"], 4)
            # A CT slice in the MR check's units (percentiles of its body): the air around
            # the body below 0, far darker than a head's slices (about 0.1 to 0.5).
            self.assertLess(domain["MedianMeanIntensity"], 0.0, domain)
            # The residual's correlation with its neighbours: between -1 and 1.
            self.assertLessEqual(abs(domain["MedianResidualCorrelation"]), 1.0, domain)
            self.assertIn(WARNING, domain["Warning"])
            self.assertTrue(any(WARNING in w for w in job["Content"]["Warnings"]))
            # What the check cost, within the decoding it runs beside.
            timings = job["Content"]["Timings"]
            self.assertGreater(timings["DomainCheck"], 0.0, timings)
            self.assertLessEqual(timings["DomainCheck"], timings["Decode"], timings)
            derived = job["Content"]["DerivedSeries"]
            for k, instance in enumerate(server.get(f"/series/{derived}")["Instances"]):
                data = server.get_bytes(f"/instances/{instance}/file")
                ds = pydicom.dcmread(io.BytesIO(data))
                self.assertTrue(ds.ImageComments.startswith("WARNING: " + WARNING), ds.ImageComments)
                self.assertIn(f"above the threshold {domain['Threshold']:.2f}", ds.ImageComments)
                self.assertTrue(ds.DerivationDescription.startswith("WARNING: " + WARNING))
                self.assertEqual(dciodvfy_errors(data, tmp, f"derived-{k}.dcm"), [])
            tags = server.get(f"/instances/{server.get(f'/series/{derived}')['Instances'][0]}"
                              "/simplified-tags")
            self.assertTrue(tags["ImageComments"].startswith("WARNING: "))

            # The same series by REST with "refuse": failed, named, nothing stored.
            series_before = sorted(server.get(f"/studies/{study}")["Series"])
            refused = wait_for_job(server, server.post(f"/enhance/series/{ct}", {
                "Task": "denoise", "Model": "mr-denoise", "Options": {"DomainCheck": "refuse"}})["ID"])
            self.assertEqual(refused["State"], "Failure")
            message = json.dumps(refused)
            self.assertIn("refused: " + WARNING, message)
            self.assertIn("threshold", message)
            self.assertIn('\\"DomainCheck\\": \\"warn\\"', message)
            self.assertEqual(sorted(server.get(f"/studies/{study}")["Series"]), series_before)

            # "off": no score at all.
            unchecked = wait_for_job(server, server.post(f"/enhance/series/{ct}", {
                "Task": "denoise", "Model": "mr-denoise", "Options": {"DomainCheck": "off"}})["ID"])
            self.assertEqual(unchecked["State"], "Success", unchecked["Content"])
            self.assertNotIn("Domain", unchecked["Content"])
            self.assertEqual(unchecked["Content"]["Timings"]["DomainCheck"], 0.0)

            # A wrong action is refused before any job starts.
            with self.assertRaises(HttpError) as bad:
                server.post(f"/enhance/series/{ct}", {"Task": "denoise", "Model": "mr-denoise",
                                                      "Options": {"DomainCheck": "block"}})
            self.assertEqual(bad.exception.status, 400)

            # The score alone, without running the model: the CT series is outside the MR
            # models' domain; a real T1 head is within it.
            answer = server.get(f"/enhance/series/{ct}/domain?Model=mr-denoise")
            self.assertTrue(answer["Outside"])
            self.assertAlmostEqual(answer["Score"], domain["Score"], places=6)
            self.assertEqual(answer["Modality"], "CT")
            head = store_series(server, mr_files)
            answer = server.get(f"/enhance/series/{head}/domain?Model=mr-denoise")
            self.assertFalse(answer["Outside"], answer)
            # The template's head is noise-free, as mr-superres-x2 was trained (ch2better and
            # jhu189 without noise): within its check's domain too.
            answer = server.get(f"/enhance/series/{head}/domain?Model=mr-superres-x2")
            self.assertFalse(answer["Outside"], answer)
            with self.assertRaises(HttpError) as missing:
                server.get(f"/enhance/series/{head}/domain")
            self.assertEqual(missing.exception.status, 400)
            # A series shorter than the check's minimum of scored slices (one slice here) is
            # judged slice by slice against the reference series' single slices, with a
            # threshold for its length: a single in-distribution slice is within, as the whole
            # series is.
            self.assertEqual(len(info["ShortSeriesThresholds"]), info["MinSlices"] - 1)
            self.assertGreater(info["ReferenceSlices"], 100)
            one_ct = store_series(server, make_phantom(os.path.join(tmp, "ct-one"), rows=512,
                                                       columns=512, slices=1, seed=11))
            answer = server.get(f"/enhance/series/{one_ct}/domain?Model=ct-denoise")
            self.assertEqual(answer["Slices"], 1)
            self.assertFalse(answer["Outside"], answer)
            ct_info = server.get("/enhance/models/ct-denoise")["DomainCheck"]
            self.assertEqual(answer["Threshold"], ct_info["ShortSeriesThresholds"][0])
            one_head = store_series(server, make_head_mr(os.path.join(tmp, "mr-one"), "--first",
                                                         "90", "--count", "1"))
            answer = server.get(f"/enhance/series/{one_head}/domain?Model=mr-denoise")
            self.assertFalse(answer["Outside"], answer)
            # ... and a CT slice sent to the MR model is outside, as the CT series is.
            self.assertTrue(server.get(f"/enhance/series/{one_ct}/domain?Model=mr-denoise")[
                "Outside"])
            # Many requests at once, more than the threads the plugin keeps for its routes
            # (4; the others start their own): each answered as when it came alone.
            alone = {(s, m): server.get(f"/enhance/series/{s}/domain?Model={m}")["Score"]
                     for s in (ct, head) for m in ("mr-denoise", "mr-superres-x2")}
            asked = [key for key in alone for _ in range(4)]
            with concurrent.futures.ThreadPoolExecutor(len(asked)) as pool:
                scores = list(pool.map(lambda key: server.get(
                    f"/enhance/series/{key[0]}/domain?Model={key[1]}")["Score"], asked))
            for key, score in zip(asked, scores):
                self.assertAlmostEqual(score, alone[key], places=6, msg=str(key))
            job = wait_for_job(server, server.post(f"/enhance/series/{head}", {
                "Task": "denoise", "Model": "mr-denoise"})["ID"])
            self.assertEqual(job["State"], "Success", job["Content"])
            self.assertFalse(job["Content"]["Domain"]["Outside"])
            self.assertFalse(any(WARNING in w for w in job["Content"].get("Warnings", [])))
            self.assertEqual(fingerprints(server, ct), originals)


if __name__ == "__main__":
    unittest.main()
