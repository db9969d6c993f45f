# SPDX-License-Identifier: GPL-3.0-or-later
"""End to end: a CT series sent by C-STORE to a real Orthanc with the plugin comes back
as a denoised derived series in the same study, and the originals are untouched."""
import hashlib
import io
import os
import shutil
import tempfile
import unittest

import numpy as np
import pydicom

from orthanc_harness import OrthancServer, dciodvfy_errors, make_phantom, wait_for, wait_for_job

RULES = {"Enhance": {"Rules": [
    {"Name": "ct-denoise", "Modalities": ["CT"], "Task": "denoise", "Model": "classical-bilateral"}]}}


def noise_sigma(image):
    """Median-based noise estimate (Laplacian-difference mask), independent of the plugin's."""
    a = image.astype(np.float64)
    response = (a[:-2, :-2] - 2 * a[:-2, 1:-1] + a[:-2, 2:] - 2 * a[1:-1, :-2] + 4 * a[1:-1, 1:-1]
                - 2 * a[1:-1, 2:] + a[2:, :-2] - 2 * a[2:, 1:-1] + a[2:, 2:])
    response = np.abs(response[response != 0])
    return np.median(response) / 0.6745 / 6.0


def hu(dataset):
    return dataset.pixel_array.astype(np.float64) * float(dataset.RescaleSlope) + float(
        dataset.RescaleIntercept)


class EndToEndTest(unittest.TestCase):
    SLICES = 12

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="enhance-e2e-")
        cls.files = make_phantom(os.path.join(cls.tmp, "ct"), slices=cls.SLICES)
        cls.sent = {pydicom.dcmread(f).SOPInstanceUID: pydicom.dcmread(f) for f in cls.files}
        cls.orthanc = OrthancServer(extra_config=RULES, stable_age=3)
        cls.orthanc.start()

    @classmethod
    def tearDownClass(cls):
        cls.orthanc.cleanup()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_ct_series_is_denoised_into_a_derived_series_in_the_same_study(self):
        o = self.orthanc
        o.store_files(self.files)

        # Snapshot every stored original at once, before the series becomes stable.
        series_ids = o.get("/series")
        self.assertEqual(len(series_ids), 1)
        source_id = series_ids[0]
        source = o.get(f"/series/{source_id}")
        self.assertEqual(len(source["Instances"]), self.SLICES)
        before = {}
        for instance in source["Instances"]:
            data = o.get_bytes(f"/instances/{instance}/file")
            md5_at_ingest = o.request("GET", f"/instances/{instance}/attachments/dicom/md5").decode()
            self.assertEqual(hashlib.md5(data).hexdigest(), md5_at_ingest)
            before[instance] = data

        # The derived series appears in the same study (bounded wait).
        study_id = source["ParentStudy"]

        def derived_series():
            ids = [s for s in o.get(f"/studies/{study_id}")["Series"] if s != source_id]
            if ids and len(o.get(f"/series/{ids[0]}")["Instances"]) == self.SLICES:
                return ids
            return None

        derived_ids = wait_for(derived_series, timeout=120, what="the derived series")
        self.assertEqual(len(derived_ids), 1)
        derived = o.get(f"/series/{derived_ids[0]}")
        self.assertEqual(len(derived["Instances"]), self.SLICES)

        # Originals: byte-identical, and their datasets equal what was sent.
        for instance, data in before.items():
            after = o.get_bytes(f"/instances/{instance}/file")
            self.assertEqual(after, data, f"original instance {instance} changed")
            stored = pydicom.dcmread(io.BytesIO(after))
            self.assertEqual(stored, self.sent[stored.SOPInstanceUID],
                             f"dataset of {instance} differs from what was sent")

        # Derived instances: labelled, referenced, in the same study, valid DICOM.
        source_by_uid = {pydicom.dcmread(io.BytesIO(d)).SOPInstanceUID: d for d in before.values()}
        sent_series_uid = next(iter(self.sent.values())).SeriesInstanceUID
        seen_sop_uids = set()
        dciodvfy_checked = 0
        for instance in derived["Instances"]:
            data = o.get_bytes(f"/instances/{instance}/file")
            ds = pydicom.dcmread(io.BytesIO(data))
            self.assertEqual(list(ds.ImageType)[:3], ["DERIVED", "SECONDARY", "AXIAL"])
            self.assertIn("denoise by classical-bilateral", ds.DerivationDescription)
            self.assertTrue(ds.SeriesDescription.endswith(" [AI denoised]"))
            self.assertEqual(int(ds.SeriesNumber), 1002)
            self.assertNotEqual(ds.SeriesInstanceUID, sent_series_uid)
            self.assertNotIn(ds.SOPInstanceUID, self.sent)
            seen_sop_uids.add(ds.SOPInstanceUID)
            ref = ds.SourceImageSequence[0]
            self.assertIn(ref.ReferencedSOPInstanceUID, source_by_uid)
            self.assertEqual(ref.PurposeOfReferenceCodeSequence[0].CodeValue, "121322")
            original = pydicom.dcmread(io.BytesIO(source_by_uid[ref.ReferencedSOPInstanceUID]))
            for keyword in ("StudyInstanceUID", "PatientID", "PatientName", "FrameOfReferenceUID",
                            "ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing"):
                self.assertEqual(ds.get(keyword), original.get(keyword), keyword)
            equipment = ds.ContributingEquipmentSequence[-1]
            self.assertEqual(equipment.Manufacturer, "Orthanc Enhance")
            self.assertEqual(equipment.ManufacturerModelName, "classical-bilateral")

            # Denoised: far less noise, same mean HU inside the body.
            before_hu, after_hu = hu(original), hu(ds)
            self.assertLess(noise_sigma(after_hu), 0.5 * noise_sigma(before_hu))
            body = before_hu > -500
            self.assertLess(abs(after_hu[body].mean() - before_hu[body].mean()), 5.0)

            if dciodvfy_checked < 3:
                self.assertEqual(dciodvfy_errors(data, self.tmp, f"derived-{instance}.dcm"), [],
                                 f"dciodvfy reports errors for {instance}")
                dciodvfy_checked += 1
        self.assertEqual(len(seen_sop_uids), self.SLICES)

        # The derived series is never processed again: it stays one extra series.
        system = wait_for(lambda: (lambda s: s if s["Series"]["Skipped"] >= 1 else None)(
            o.get("/enhance/system")), timeout=30, what="the derived series to be skipped")
        self.assertEqual(system["Jobs"]["Succeeded"], 1)
        self.assertEqual(system["Jobs"]["Failed"], 0)
        self.assertEqual(len(o.get(f"/studies/{study_id}")["Series"]), 2)

        # The work ran as an Orthanc job with its content.
        jobs = [o.get(f"/jobs/{j}") for j in o.get("/jobs")]
        ours = [j for j in jobs if j["Type"] == "EnhanceSeries"]
        self.assertEqual(len(ours), 1)
        self.assertEqual(ours[0]["State"], "Success")
        self.assertEqual(ours[0]["Progress"], 100)
        content = ours[0]["Content"]
        self.assertEqual(content["SourceSeries"], source_id)
        self.assertEqual(content["DerivedSeries"], derived_ids[0])
        self.assertEqual(content["Origin"], "rule 'ct-denoise'")
        self.assertEqual(content["DerivedInstances"], self.SLICES)
        self.assertIn("Inference", content["Timings"])

    def test_system_route_reports_the_runtime(self):
        system = self.orthanc.get("/enhance/system")
        self.assertEqual(system["Name"], "enhance")
        self.assertRegex(system["Version"], r"^\d+\.\d+\.\d+$")
        self.assertRegex(system["TorchVersion"], r"^1\.13")
        self.assertEqual(system["Device"], "cpu")
        self.assertGreaterEqual(system["Threads"], 1)
        self.assertIn("classical-bilateral", [m["Name"] for m in system["Models"]])
        self.assertEqual(system["Rules"], ["ct-denoise"])


class SuperResolutionTest(unittest.TestCase):
    """Super-resolution through the REST API: the derived series covers the same field of
    view on a finer grid (in-plane) or with slices inserted (through-plane)."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="enhance-sr-")
        cls.files = make_phantom(os.path.join(cls.tmp, "ct"), rows=64, columns=64, slices=5)
        cls.orthanc = OrthancServer()
        cls.orthanc.start()
        cls.orthanc.store_files(cls.files)
        cls.source = cls.orthanc.get("/series")[0]

    @classmethod
    def tearDownClass(cls):
        cls.orthanc.cleanup()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def run_job(self, model):
        o = self.orthanc
        job_id = o.post(f"/enhance/series/{self.source}", {"Task": "superres", "Model": model})["ID"]
        job = wait_for_job(o, job_id, timeout=120)
        self.assertEqual(job["State"], "Success", job)
        series = o.get(f"/series/{job['Content']['DerivedSeries']}")
        files = [o.get_bytes(f"/instances/{i}/file") for i in series["Instances"]]
        return sorted(((pydicom.dcmread(io.BytesIO(f)), f) for f in files), key=lambda p: int(p[0].InstanceNumber))

    def test_in_plane_x2_halves_the_spacing_over_the_same_field_of_view(self):
        derived = self.run_job("classical-bicubic-x2")
        source = pydicom.dcmread(self.files[0])
        self.assertEqual(len(derived), 5)
        d, data = derived[0]
        self.assertEqual((d.Rows, d.Columns), (128, 128))
        self.assertAlmostEqual(float(d.PixelSpacing[0]), float(source.PixelSpacing[0]) / 2, places=5)
        shift = (float(d.PixelSpacing[0]) - float(source.PixelSpacing[0])) / 2
        self.assertAlmostEqual(float(d.ImagePositionPatient[0]), float(source.ImagePositionPatient[0]) + shift, places=4)
        self.assertEqual(d.DerivationCodeSequence[0].CodeValue, "113085")
        self.assertEqual(dciodvfy_errors(data, self.tmp, "sr.dcm"), [])

    def test_through_plane_x2_inserts_slices(self):
        derived = self.run_job("classical-linear-z2")
        self.assertEqual(len(derived), 9)
        z = [float(d.ImagePositionPatient[2]) for d, _ in derived]
        steps = [b - a for a, b in zip(z, z[1:])]
        self.assertTrue(all(abs(s - steps[0]) < 1e-4 for s in steps), z)
        self.assertEqual(len(derived[1][0].SourceImageSequence), 2)  # between two source slices
        self.assertEqual(dciodvfy_errors(derived[1][1], self.tmp, "z2.dcm"), [])


if __name__ == "__main__":
    unittest.main()
