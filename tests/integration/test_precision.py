# SPDX-License-Identifier: GPL-3.0-or-later
"""bf16 on the CPU in a real Orthanc: a model whose manifest allows bf16 is compared with
float at load and runs in bf16 only within its tolerance (on a processor with bf16
instructions), GET /enhance/models/{name} and the log say what runs and why, a series
routed to it gives a valid derived series that names the precision, and
Enhance.CpuPrecision "float" forces float."""
import io
import os
import shutil
import tempfile
import unittest

import pydicom

from orthanc_harness import (OrthancServer, dciodvfy_errors, logged_on_failure, make_phantom,
                             wait_for_ended_job, write_fixture_model)


def cpu_has_bf16():
    with open("/proc/cpuinfo") as f:
        flags = f.read()
    return " avx512_bf16" in flags or " amx_bf16" in flags


def low_precision(mean, p999):
    return {"allow": ["bf16"], "calibration": "calibration.pt",
            "tolerance": {"mean": mean, "p999": p999}}


class PrecisionTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="enhance-precision-")
        self.models = os.path.join(self.tmp, "models")
        tile = {"size": 0}
        write_fixture_model(self.models, "residual-cnn", "strict", tile=tile,
                            low_precision=low_precision(1e-9, 1e-9))
        write_fixture_model(self.models, "residual-cnn", "loose", tile=tile,
                            low_precision=low_precision(0.01, 0.1))
        write_fixture_model(self.models, "residual-cnn", "float-only", tile=tile)

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def server(self, precision=None):
        enhance = {"ModelsDirectories": [self.models], "Device": "cpu",
                   "Rules": [{"Name": "loose", "Modalities": ["CT"], "Task": "denoise",
                              "Model": "loose"}]}
        if precision:
            enhance["CpuPrecision"] = precision
        return OrthancServer(extra_config={"Enhance": enhance})

    def test_bf16_within_the_tolerance_only_and_float_when_forced(self):
        bf16 = cpu_has_bf16()
        with logged_on_failure(self.server()) as o:
            o.start()
            self.assertNotIn("Precision", o.get("/enhance/models/float-only"))
            strict = o.get("/enhance/models/strict")["Precision"]
            self.assertEqual(strict["Runs"], "float")
            self.assertEqual(strict["Allowed"], ["float", "bf16"])
            loose = o.get("/enhance/models/loose")["Precision"]
            if bf16:
                self.assertTrue(strict["Compared"])
                self.assertGreater(strict["MeanDeviation"], strict["MeanTolerance"])
                self.assertIn("bf16 deviates from float by a mean of", strict["Note"])
                self.assertIn("strict 0.1.0 (denoise) loaded", o.log())
                self.assertIn("bf16 deviates from float", o.log())
                self.assertTrue(loose["Compared"])
                self.assertLessEqual(loose["MeanDeviation"], loose["MeanTolerance"])
                self.assertLessEqual(loose["P999Deviation"], loose["P999Tolerance"])
                self.assertGreater(loose["Bf16Milliseconds"], 0)
                if loose["Runs"] == "float":
                    self.assertIn("not the fastest", loose["Note"])
            else:
                self.assertFalse(strict["Compared"])
                self.assertIn("no bf16 instructions", strict["Note"])
                self.assertEqual(loose["Runs"], "float")

            files = make_phantom(os.path.join(self.tmp, "ct"), rows=64, columns=64, slices=3)
            o.store_files(files)
            source = o.get("/series")[0]
            job = wait_for_ended_job(o, lambda j: j["Content"].get("SourceSeries") == source,
                                     timeout=120, what="the rule's job")
            self.assertEqual(job["State"], "Success", job["Content"])
            derived = job["Content"]["DerivedSeries"]
            for k, instance in enumerate(o.get(f"/series/{derived}")["Instances"]):
                data = o.get_bytes(f"/instances/{instance}/file")
                ds = pydicom.dcmread(io.BytesIO(data))
                self.assertEqual("bf16" in ds.DerivationDescription, loose["Runs"] == "bf16",
                                 ds.DerivationDescription)
                self.assertEqual(dciodvfy_errors(data, self.tmp, f"derived-{k}.dcm"), [])

        with logged_on_failure(self.server("float")) as o:
            o.start()
            forced = o.get("/enhance/models/loose")["Precision"]
            self.assertEqual(forced["Runs"], "float")
            self.assertFalse(forced["Compared"])
            self.assertIn("float is forced", forced["Note"])


if __name__ == "__main__":
    unittest.main()
