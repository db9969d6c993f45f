# SPDX-License-Identifier: GPL-3.0-or-later
"""The Orthanc Explorer extension in a real browser.

A real Orthanc with the plugin, HTTP basic authentication on, runs on loopback with a
phantom CT study; explorer.test.mjs then drives Debian's Chromium through playwright-core
as a radiologist would. Orthanc is stopped whatever happens (the harness's context
manager), and the browser test is killed if it outlives its time.

Exit code 77 (reported by ctest as skipped) when Node.js or Chromium is missing.
"""
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))

# HEAD: a real T1-weighted head (Debian's mricron-data), for the compare view of a
# super-resolved MR.
from orthanc_harness import (HEAD, OrthancServer, make_head_mr, make_phantom,  # noqa: E402
                             store_series, wait_for_job, write_fixture_model)

CHROMIUM = os.environ.get("ENHANCE_CHROMIUM", "/usr/bin/chromium")
NODE = os.environ.get("ENHANCE_NODE") or shutil.which("node") or ""
SCREENSHOTS = os.environ.get("ENHANCE_SCREENSHOTS", os.path.join(tempfile.gettempdir(),
                                                                 "enhance-screenshots"))
CREDENTIALS = ("radiologist", "browser-test-password")
NODE_MAJOR_NEEDED = 20  # playwright-core's own requirement
BROWSER_TIMEOUT = 420


def missing_prerequisite():
    if not NODE:
        return "Node.js (node) is not installed"
    version = subprocess.run([NODE, "--version"], capture_output=True, text=True).stdout.strip()
    major = int(version.lstrip("v").split(".")[0] or 0)
    if major < NODE_MAJOR_NEEDED:
        return f"Node.js {version} is older than {NODE_MAJOR_NEEDED}, which playwright-core needs"
    if not os.access(CHROMIUM, os.X_OK):
        return f"Chromium is not installed at {CHROMIUM} (Debian package 'chromium')"
    return None


def copy_into_study(files, target_dir, study_uid, series_number, description):
    """Copies a phantom series into another study, with new series and instance UIDs."""
    import pydicom
    from pydicom.uid import generate_uid

    os.makedirs(target_dir, exist_ok=True)
    series_uid = generate_uid()
    paths = []
    for i, path in enumerate(files):
        ds = pydicom.dcmread(path)
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.SeriesNumber = series_number
        ds.SeriesDescription = description
        out = os.path.join(target_dir, f"{i:04d}.dcm")
        ds.save_as(out)
        paths.append(out)
    return paths


class ExplorerTest(unittest.TestCase):
    SLICES = 6

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="enhance-browser-")
        # The study: the series the radiologist enhances, and a second original series for
        # the study-wide action.
        first = make_phantom(os.path.join(cls.tmp, "first"), rows=128, columns=128,
                             slices=cls.SLICES, seed=3)
        import pydicom
        head = pydicom.dcmread(first[0])
        second = copy_into_study(
            make_phantom(os.path.join(cls.tmp, "second-raw"), rows=96, columns=96,
                         slices=cls.SLICES, seed=4),
            os.path.join(cls.tmp, "second"), head.StudyInstanceUID, 3, "Phantom CT, late phase")
        # Another study, whose series is deleted while its page is open.
        cls.doomed_files = make_phantom(os.path.join(cls.tmp, "doomed"), rows=64, columns=64,
                                        slices=3, seed=5)

        # A diffusion model of two samples (a fixture network): its uncertainty series.
        cls.models = os.path.join(cls.tmp, "models")
        write_fixture_model(cls.models, "diffusion-epsilon", "ct-diffusion", diffusion={
            "training_timesteps": 50, "timesteps": {"count": 2}, "samples": 2, "seed": 1})
        cls.sampled_files = make_phantom(os.path.join(cls.tmp, "sampled"), rows=64, columns=64,
                                         slices=3, seed=6)
        # A model with a domain check whose threshold every series exceeds: what it derives
        # carries the warning of a series outside the domain the model was trained on.
        write_fixture_model(cls.models, "identity", "ct-outside-domain", domain_check={
            "archive": "domain.pt", "threshold": 0.05, "trained_on": "browser test fixtures",
            "reference": {"log_reconstruction": [-3.7, 0.25], "log_kl": [-1.4, 0.25]}})
        cls.outside_files = make_phantom(os.path.join(cls.tmp, "outside"), rows=64, columns=64,
                                         slices=3, seed=7)

        cls.orthanc = OrthancServer(credentials=CREDENTIALS,
                                    extra_config={"Enhance": {"ModelsDirectories": [cls.models]}})
        cls.orthanc.start()
        try:
            cls.prepare(first, second)
        except BaseException:
            sys.stderr.write(f"--- log of Orthanc ---\n{cls.orthanc.log()}\n")
            cls.orthanc.cleanup()
            raise

    @classmethod
    def prepare(cls, first, second):
        o = cls.orthanc
        o.store_files(first)
        cls.source = o.get("/series")[0]
        cls.study = o.get(f"/series/{cls.source}")["ParentStudy"]
        o.store_files(second)
        # A report beside the images: no model takes it, the study action skips it.
        o.post("/tools/create-dicom", {"Parent": cls.study, "Tags": {
            "Modality": "SR", "SeriesDescription": "Radiology report", "SeriesNumber": "90"}})
        o.store_files(cls.doomed_files)
        cls.doomed = next(s for s in o.get("/series")
                          if o.get(f"/series/{s}")["ParentStudy"] != cls.study)

        # A super-resolved series of the source, made over REST: its page shows what
        # happens when the metrics cannot be computed (another grid).
        job = o.post(f"/enhance/series/{cls.source}", {"Task": "superres"})["ID"]
        done = wait_for_job(o, job, timeout=120)
        if done["State"] != "Success":
            raise AssertionError(f"super-resolution failed: {done['Content']}")
        cls.superres = done["Content"]["DerivedSeries"]

        # The mean and the uncertainty map of a diffusion model (another study).
        sampled = store_series(o, cls.sampled_files)
        done = wait_for_job(o, o.post(f"/enhance/series/{sampled}",
                                      {"Task": "denoise", "Model": "ct-diffusion"})["ID"])
        if done["State"] != "Success":
            raise AssertionError(f"diffusion failed: {done['Content']}")
        cls.uncertainty = done["Content"]["UncertaintySeries"]
        cls.sampled_mean = done["Content"]["DerivedSeries"]

        # A series outside the domain check's model's domain, processed with a warning
        # (another study).
        cls.outside_source = store_series(o, cls.outside_files)
        done = wait_for_job(o, o.post(f"/enhance/series/{cls.outside_source}", {
            "Task": "denoise", "Model": "ct-outside-domain",
            "Options": {"DomainCheck": "warn"}})["ID"])
        if done["State"] != "Success" or not done["Content"].get("Domain", {}).get("Outside"):
            raise AssertionError(f"no derived series outside the domain: {done['Content']}")
        cls.outside = done["Content"]["DerivedSeries"]

        # A real MR head and its x2 super-resolution (another study), for the compare view.
        o.store_files(make_head_mr(os.path.join(cls.tmp, "mr"), "--count", "5",
                                   "--patient-id", "ENH-MR-COMPARE"))
        cls.mr_source = next(s for s in o.get("/series")
                             if o.get(f"/series/{s}")["MainDicomTags"].get("Modality") == "MR")
        job = o.post(f"/enhance/series/{cls.mr_source}",
                     {"Task": "superres", "Model": "classical-bicubic-x2"})["ID"]
        done = wait_for_job(o, job, timeout=120)
        if done["State"] != "Success":
            raise AssertionError(f"MR super-resolution failed: {done['Content']}")
        cls.mr_superres = done["Content"]["DerivedSeries"]
        # The same MR, losslessly JPEG-compressed by Orthanc: the compare view must decode it
        # through Orthanc and show the same values.
        modified = o.post(f"/series/{cls.mr_source}/modify",
                          {"Transcode": "1.2.840.10008.1.2.4.70",
                           "Replace": {"SeriesDescription": "T1 axial ch2, JPEG lossless"}})
        cls.mr_compressed = modified["ID"]
        first_instance = o.get(f"/series/{cls.mr_compressed}")["Instances"][0]
        syntax = o.request("GET", f"/instances/{first_instance}/metadata/TransferSyntax").decode()
        if syntax != "1.2.840.10008.1.2.4.70":
            raise AssertionError(f"the MR copy was not transcoded: {syntax}")

    @classmethod
    def tearDownClass(cls):
        cls.orthanc.cleanup()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_explorer_in_chromium(self):
        o = self.orthanc
        # Authentication is really on: without credentials Explorer is refused.
        with self.assertRaises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(o.url + "/app/explorer.html", timeout=10).close()
        self.assertEqual(refused.exception.code, 401)
        # The extension is served to every Explorer and holds no credential.
        script = o.get_bytes("/plugins/explorer.js").decode()
        self.assertIn("Orthanc Enhance in Orthanc Explorer", script)
        self.assertNotIn(CREDENTIALS[1], script)

        os.makedirs(SCREENSHOTS, exist_ok=True)
        env = dict(os.environ,
                   ENHANCE_URL=o.url,
                   ENHANCE_USER=CREDENTIALS[0],
                   ENHANCE_PASSWORD=CREDENTIALS[1],
                   ENHANCE_CHROMIUM=CHROMIUM,
                   ENHANCE_SCREENSHOTS=SCREENSHOTS,
                   ENHANCE_SOURCE_SERIES=self.source,
                   ENHANCE_SUPERRES_SERIES=self.superres,
                   ENHANCE_STUDY=self.study,
                   ENHANCE_DOOMED_SERIES=self.doomed,
                   ENHANCE_MR_SOURCE_SERIES=self.mr_source,
                   ENHANCE_MR_SUPERRES_SERIES=self.mr_superres,
                   ENHANCE_MR_COMPRESSED_SERIES=self.mr_compressed,
                   ENHANCE_UNCERTAINTY_SERIES=self.uncertainty,
                   ENHANCE_SAMPLED_MEAN_SERIES=self.sampled_mean,
                   ENHANCE_OUTSIDE_SOURCE_SERIES=self.outside_source,
                   ENHANCE_OUTSIDE_SERIES=self.outside,
                   PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD="1")
        started = time.monotonic()
        # Its own process group, so that a browser test that hangs goes with its Chromium.
        process = subprocess.Popen(
            [NODE, "--test", "--test-reporter=spec", "--test-concurrency=1",
             os.path.join(HERE, "explorer.test.mjs")],
            cwd=HERE, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True)
        try:
            output, _ = process.communicate(timeout=BROWSER_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            output, _ = process.communicate()
            self.fail(f"the browser test did not finish in {BROWSER_TIMEOUT} s:\n{output}")
        sys.stdout.write(output)
        sys.stdout.write(f"browser test: {time.monotonic() - started:.1f} s, "
                         f"screenshots in {SCREENSHOTS}\n")
        if process.returncode != 0:
            sys.stderr.write(f"--- log of Orthanc ---\n{o.log()[-20000:]}\n")
        self.assertEqual(process.returncode, 0, "the browser test failed (output above)")

        # What the browser did is what the server holds: besides the super-resolutions, the
        # diffusion model's and the domain check's denoising made over REST, the denoising
        # started from the series page and the two jobs of the study action (one of which
        # found its work already done).
        jobs = [o.get(f"/jobs/{j}") for j in o.get("/jobs")]
        ours = [j for j in jobs if j["Type"] == "EnhanceSeries"]
        self.assertEqual(sorted(j["Content"]["Task"] for j in ours),
                         ["denoise"] * 5 + ["superres"] * 2)
        self.assertTrue(all(j["State"] == "Success" for j in ours), ours)
        # The source, the late phase, the report and the three AI-derived series.
        self.assertEqual(len(o.get(f"/studies/{self.study}")["Series"]), 6)


if __name__ == "__main__":
    why = missing_prerequisite()
    if why:
        print(f"SKIPPED: the Explorer browser test needs Node.js and Chromium: {why}")
        sys.exit(77)
    if not os.path.isfile(HEAD):
        print(f"FAILED: {HEAD} is missing: install Debian's mricron-data (scripts/install-deps.sh)")
        sys.exit(1)
    if not os.path.isdir(os.path.join(HERE, "node_modules", "playwright-core")):
        print("FAILED: playwright-core is not installed in tests/browser: run "
              "scripts/install-deps.sh (or `npm ci` in tests/browser)")
        sys.exit(1)
    unittest.main(verbosity=2)
