# SPDX-License-Identifier: GPL-3.0-or-later
"""bf16 and int8 on the CPU in a real Orthanc: a model whose manifest allows bf16 (int8) is
compared with float at load and runs in it only within its tolerance (on a processor with
the instructions for it), GET /enhance/models/{name} and the log say what runs and why, a
series routed to it gives a valid derived series that names the precision, and
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


def cpu_has_int8():
    with open("/proc/cpuinfo") as f:
        flags = f.read()
    return any(f" {flag}" in flags for flag in ("avx512_vnni", "avx_vnni", "amx_int8"))


def low_precision(mean, p999):
    return {"allow": ["bf16"], "calibration": "calibration.pt",
            "tolerance": {"mean": mean, "p999": p999}}


def int8_precision(mean, p999):
    return {"allow": ["int8"], "calibration": "calibration.pt",
            "int8_tolerance": {"mean": mean, "p999": p999}}


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
        write_fixture_model(self.models, "residual-cnn", "int8-strict", tile=tile,
                            low_precision=int8_precision(1e-9, 1e-9))
        write_fixture_model(self.models, "residual-cnn", "int8-loose", tile=tile,
                            low_precision=int8_precision(0.02, 0.2))

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def server(self, precision=None, model="loose"):
        enhance = {"ModelsDirectories": [self.models], "Device": "cpu",
                   "Rules": [{"Name": model, "Modalities": ["CT"], "Task": "denoise",
                              "Model": model}]}
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
            self.assertNotIn("Int8", strict)
            runs = o.get("/enhance/models/loose")["Precision"]["Runs"]
            strict = strict["Bf16"]
            loose = o.get("/enhance/models/loose")["Precision"]["Bf16"]
            if bf16:
                self.assertTrue(strict["Compared"])
                self.assertGreater(strict["MeanDeviation"], strict["MeanTolerance"])
                self.assertIn("bf16 deviates from float by a mean of", strict["Note"])
                self.assertIn("strict 0.1.0 (denoise) loaded", o.log())
                self.assertIn("bf16 deviates from float", o.log())
                self.assertTrue(loose["Compared"])
                self.assertLessEqual(loose["MeanDeviation"], loose["MeanTolerance"])
                self.assertLessEqual(loose["P999Deviation"], loose["P999Tolerance"])
                self.assertGreater(loose["Milliseconds"], 0)
                if runs == "float":
                    self.assertIn("not the fastest", loose["Note"])
            else:
                self.assertFalse(strict["Compared"])
                self.assertIn("no bf16 instructions", strict["Note"])
                self.assertEqual(runs, "float")

            self.assert_derived_series_names(o, "bf16", runs == "bf16")

        with logged_on_failure(self.server("float")) as o:
            o.start()
            forced = o.get("/enhance/models/loose")["Precision"]
            self.assertEqual(forced["Runs"], "float")
            self.assertFalse(forced["Bf16"]["Compared"])
            self.assertIn("float is forced", forced["Bf16"]["Note"])
            self.assertIn("float is forced", o.get("/enhance/models/int8-loose")["Precision"]["Int8"]["Note"])

    def test_int8_within_its_tolerance_only(self):
        int8 = cpu_has_int8()
        with logged_on_failure(self.server(model="int8-loose")) as o:
            o.start()
            strict = o.get("/enhance/models/int8-strict")["Precision"]
            self.assertEqual(strict["Runs"], "float")
            self.assertEqual(strict["Allowed"], ["float", "int8"])
            self.assertNotIn("Bf16", strict)
            precision = o.get("/enhance/models/int8-loose")["Precision"]
            loose = precision["Int8"]
            if int8:
                self.assertTrue(strict["Int8"]["Compared"])
                self.assertGreater(strict["Int8"]["MeanDeviation"], strict["Int8"]["MeanTolerance"])
                self.assertIn("int8 deviates from float by a mean of", strict["Int8"]["Note"])
                self.assertIn("int8 deviates from float", o.log())
                self.assertTrue(loose["Compared"])
                self.assertLessEqual(loose["MeanDeviation"], loose["MeanTolerance"])
                self.assertLessEqual(loose["P999Deviation"], loose["P999Tolerance"])
                self.assertGreater(loose["Milliseconds"], 0)
                if precision["Runs"] == "float":
                    self.assertIn("not the fastest", loose["Note"])
            else:
                self.assertFalse(strict["Int8"]["Compared"])
                self.assertIn("no 8-bit dot-product instructions", strict["Int8"]["Note"])
                self.assertEqual(precision["Runs"], "float")
            self.assert_derived_series_names(o, "int8", precision["Runs"] == "int8")

    def assert_derived_series_names(self, o, precision, runs):
        """A series routed to the rule's model gives a valid derived series whose
        DerivationDescription names `precision` exactly when it runs."""
        files = make_phantom(os.path.join(self.tmp, f"ct-{precision}"), rows=64, columns=64,
                             slices=3)
        o.store_files(files)
        source = o.get("/series")[0]
        job = wait_for_ended_job(o, lambda j: j["Content"].get("SourceSeries") == source,
                                 timeout=120, what="the rule's job")
        self.assertEqual(job["State"], "Success", job["Content"])
        derived = job["Content"]["DerivedSeries"]
        for k, instance in enumerate(o.get(f"/series/{derived}")["Instances"]):
            data = o.get_bytes(f"/instances/{instance}/file")
            ds = pydicom.dcmread(io.BytesIO(data))
            # What runs is written after the model's name, which may itself contain
            # the precision's name ("int8-loose").
            runtime = ds.DerivationDescription.split(" (", 1)[1]
            self.assertEqual(precision in runtime, runs, ds.DerivationDescription)
            self.assertEqual(dciodvfy_errors(data, self.tmp, f"derived-{precision}-{k}.dcm"), [])


if __name__ == "__main__":
    unittest.main()
