# SPDX-License-Identifier: GPL-3.0-or-later
"""Faults and load, in real Orthanc processes on loopback.

After every fault: no partial derived series is left to look complete, nothing is
duplicated, the source series is byte-identical, the job says why it failed, and Orthanc
still answers. Faults already covered elsewhere (test_orchestration.py): a destination that
is down, cancellation, a graceful restart with queued jobs.

- FaultTest: Orthanc refusing to keep our derived instances (an incoming-instance filter
  standing for a full disk or a quota: tests/integration/StoreFaultPlugin.cpp), storage
  failing with an error, destinations refusing (a DIMSE refusal status from a Lua filter,
  an unknown called AE title), and the out-of-memory fallbacks rehearsed on the CPU
  (Enhance.SimulatedDeviceMemoryMB) giving the unconstrained result.
- ModelFaultTest: a model archive corrupted, then deleted, while Orthanc runs.
- KillTest: Orthanc killed (SIGKILL) while a derived series is half stored, then restarted
  on the same storage.
- LoadTest: 50 series through C-STORE from 5 concurrent storescu processes; every series
  processed exactly once; Orthanc's peak memory and its worst /system latency, polled every
  100 ms all along, are printed and bounded.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import unittest

import numpy
import pydicom
import pydicom.uid

from orthanc_harness import (HttpError, OrthancServer, fingerprints, free_port, logged_on_failure,
                             make_phantom, pixels, store_series, wait_for,
                             wait_for_ended_job, wait_for_job, wait_for_job_state,
                             write_fixture_model)

STORE_FAULT = os.environ.get("ENHANCE_STORE_FAULT", "")
THREAD_FAULT_LIBRARY = os.environ.get("ENHANCE_THREAD_FAULT_LIBRARY", "")
PLUGIN = os.environ.get("ENHANCE_PLUGIN", "")


def study_series(server, series_id):
    return server.get(f"/studies/{server.get(f'/series/{series_id}')['ParentStudy']}")["Series"]


class FaultTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="enhance-faults-")
        remote_port = free_port()
        # A remote modality that answers every C-STORE with A700 (Refused: out of
        # resources) and accepts associations only for its own AE title.
        cls.remote = OrthancServer(name="REMOTE", plugin=False, extra_config={
            "DicomPort": remote_port, "DicomCheckCalledAet": True, "Plugins": [STORE_FAULT],
            "StoreFault": {"Mode": "refuse-cstore", "Status": 0xA700}})
        cls.models = os.path.join(cls.tmp, "models")
        write_fixture_model(cls.models, "mean3x3", "ct-mean", tile={"size": 512, "overlap": 32}, max_batch=8)
        # While this file exists, the plugin cannot start a thread (ThreadFaultPreload.cpp).
        cls.no_threads = os.path.join(cls.tmp, "no-threads")
        cls.node = OrthancServer(name="ENHANCE", environment={
            "LD_PRELOAD": THREAD_FAULT_LIBRARY, "ENHANCE_THREAD_FAULT": cls.no_threads}, extra_config={
            "Plugins": [PLUGIN, STORE_FAULT],
            "DicomModalities": {"REFUSING": ["REMOTE", "127.0.0.1", remote_port],
                                "WRONGAET": ["NOBODY", "127.0.0.1", remote_port]},
            "Enhance": {
                "ModelsDirectories": [cls.models], "Device": "cpu",
                "ForwardAttempts": 2, "ForwardRetryDelaySeconds": 0.1,
                "Rules": [{"Name": "to-refusing", "Modalities": ["CT"], "CallingAETs": ["TO-REFUSING"],
                           "Task": "denoise", "Model": "classical-gaussian",
                           "Destinations": ["REFUSING", "WRONGAET"]}]}})
        try:
            cls.remote.start()
            cls.node.start()
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.node.cleanup()
        cls.remote.cleanup()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def setUp(self):
        self.node.request("PUT", "/enhance-test/store-fault", {"Mode": "off"})

    def run(self, result=None):
        failures = len(result.failures) + len(result.errors) if result else 0
        outcome = super().run(result)
        if result and len(result.failures) + len(result.errors) > failures:
            sys.stderr.write(f"--- log of Orthanc ENHANCE ---\n{self.node.log()[-6000:]}\n")
        return outcome

    def phantom(self, name, slices=6, size=96, seed=1):
        return make_phantom(os.path.join(self.tmp, name), rows=size, columns=size, slices=slices, seed=seed)

    def test_a_job_that_gets_no_thread_fails_saying_so(self):
        # Named to run first on this node: its one kept job thread (the one the models were
        # loaded on) is then busy with the first job, and the second job needs a new thread.
        # (ThreadFaultPreload.cpp fails every thread the plugin starts, a running job's writer's
        # too.)
        o = self.node
        busy = store_series(o, self.phantom("busy", seed=7))
        other = store_series(o, self.phantom("no-thread", seed=8))
        before = fingerprints(o, other)
        jobs_before = o.get("/enhance/system")["Jobs"]
        request = {"Task": "denoise", "Model": "classical-gaussian"}
        o.request("PUT", "/enhance-test/store-fault", {"Mode": "delay", "DelayMs": 500})
        first = o.post(f"/enhance/series/{busy}", request)["ID"]
        # Its first derived instance stored, the first job has every thread it starts (its
        # writer's) and stores the others, half a second each, while the second one starts.
        wait_for(lambda: any(o.get(f"/series/{s}")["Instances"] for s in study_series(o, busy)
                             if s != busy), timeout=30, what="the first job to store")
        open(self.no_threads, "w").close()
        try:
            failed = wait_for_job(o, o.post(f"/enhance/series/{other}", request)["ID"])
        finally:
            os.remove(self.no_threads)
        self.assertEqual(failed["State"], "Failure", failed)
        self.assertIn("no thread could be started for the job (Resource temporarily unavailable)",
                      failed["Content"]["ErrorMessage"])
        self.assertIn("resubmit the job", failed["Content"]["ErrorMessage"])
        self.assertEqual(failed["Content"]["ErrorKind"], "internal error")
        self.assertEqual(study_series(o, other), [other])
        self.assertEqual(fingerprints(o, other), before)

        # The running job is not disturbed, the counts add up, and the job runs once resubmitted.
        o.request("PUT", "/enhance-test/store-fault", {"Mode": "off"})
        first_job = wait_for_job(o, first)
        self.assertEqual(first_job["State"], "Success", first_job)
        jobs = o.get("/enhance/system")["Jobs"]
        self.assertEqual(jobs["Running"], 0, jobs)
        self.assertEqual(jobs["Failed"], jobs_before["Failed"] + 1, jobs)
        self.assertEqual(jobs["Succeeded"], jobs_before["Succeeded"] + 1, jobs)
        done = wait_for_job(o, o.post(f"/enhance/series/{other}", request)["ID"])
        self.assertEqual(done["State"], "Success", done)
        self.assertEqual(len(study_series(o, other)), 2)

    def test_store_refused_or_failing_leaves_no_partial_series(self):
        o = self.node
        source = store_series(o, self.phantom("refused", seed=3))
        before = fingerprints(o, source)
        request = {"Task": "denoise", "Model": "classical-gaussian"}

        for mode, after, expected in [
                ("refuse", 3, "Orthanc did not keep derived instance 4 of 6 (status FilteredOut)"),
                ("error", 2, "Orthanc could not store derived instance 3 of 6")]:
            o.request("PUT", "/enhance-test/store-fault", {"Mode": mode, "After": after})
            failed = wait_for_job(o, o.post(f"/enhance/series/{source}", request)["ID"])
            self.assertEqual(failed["State"], "Failure", mode)
            message = failed["Content"]["ErrorMessage"]
            self.assertIn(f"storing the derived series of series {source} failed", message)
            self.assertIn(expected, message)
            self.assertIn(f"nothing of the derived series was kept ({after} instance(s) stored "
                          "before were removed)", message)
            self.assertEqual(study_series(o, source), [source], f"{mode}: a partial series is left")
            self.assertEqual(fingerprints(o, source), before)
            self.assertEqual(o.get("/system")["DicomAet"], "ENHANCE")

        # Once storage works again the same request completes, from scratch.
        o.request("PUT", "/enhance-test/store-fault", {"Mode": "off"})
        done = wait_for_job(o, o.post(f"/enhance/series/{source}", request)["ID"])
        self.assertEqual(done["State"], "Success", done)
        self.assertNotIn("AlreadyProcessed", done["Content"])
        self.assertEqual(len(o.get(f"/series/{done['Content']['DerivedSeries']}")["Instances"]), 6)
        self.assertEqual(len(study_series(o, source)), 2)
        self.assertEqual(fingerprints(o, source), before)

    def test_the_same_request_twice_at_once_makes_one_series(self):
        o = self.node
        source = store_series(o, self.phantom("twice", seed=6))
        o.request("PUT", "/enhance-test/store-fault", {"Mode": "delay", "DelayMs": 150})
        request = {"Task": "denoise", "Model": "classical-gaussian"}
        first = o.post(f"/enhance/series/{source}", request)["ID"]
        second = o.post(f"/enhance/series/{source}", request)["ID"]
        jobs = [wait_for_job(o, first), wait_for_job(o, second)]
        self.assertEqual([j["State"] for j in jobs], ["Success", "Success"], jobs)
        self.assertEqual(sorted(bool(j["Content"].get("AlreadyProcessed")) for j in jobs), [False, True],
                         "both jobs made the series")
        self.assertEqual(jobs[0]["Content"]["DerivedSeries"], jobs[1]["Content"]["DerivedSeries"])
        self.assertEqual(len(study_series(o, source)), 2)
        self.assertEqual(len(o.get(f"/series/{jobs[0]['Content']['DerivedSeries']}")["Instances"]), 6)

    def test_destinations_refusing_fail_the_job_and_keep_the_complete_series(self):
        o = self.node
        files = self.phantom("to-refusing", seed=4)
        source = store_series(o, files, calling_aet="TO-REFUSING")
        before = fingerprints(o, source)

        job = wait_for_ended_job(o, lambda j: j["Content"].get("SourceSeries") == source,
                                 what="the forwarding job to end")
        content = job["Content"]
        self.assertEqual(job["State"], "Failure", content)
        message = content["ErrorMessage"]
        self.assertIn("forwarding failed: REFUSING: ", message)
        self.assertIn("refused with status A700", message)
        self.assertIn("WRONGAET: ", message)
        self.assertIn("association with NOBODY", message)
        self.assertIn(f"derived series {content['DerivedSeries']} stays in Orthanc", message)
        self.assertEqual([(f["Target"], f["Status"], f["Attempts"]) for f in content["Forwarding"]],
                         [("REFUSING", "Failure", 2), ("WRONGAET", "Failure", 2)])
        self.assertEqual(len(o.get(f"/series/{content['DerivedSeries']}")["Instances"]), len(files))
        self.assertEqual(len(study_series(o, source)), 2)
        self.assertEqual(fingerprints(o, source), before)
        self.assertEqual(self.remote.get("/instances"), [], "the refusing destination kept something")
        self.assertEqual(o.get("/system")["DicomAet"], "ENHANCE")

    def test_out_of_memory_fallbacks_give_the_unconstrained_result(self):
        # The same model in a node whose device is simulated to have 16 MB: a 512x512 slice
        # needs about 64 MB, so the batch is halved down to one, then the tiles to 256.
        files = self.phantom("oom", slices=4, size=512, seed=5)
        source = store_series(self.node, files)
        reference = wait_for_job(self.node, self.node.post(f"/enhance/series/{source}",
                                                       {"Task": "denoise", "Model": "ct-mean"})["ID"])
        self.assertEqual(reference["State"], "Success", reference)
        self.assertNotIn("Warnings", reference["Content"])

        small = OrthancServer(name="SMALL", extra_config={"Enhance": {
            "ModelsDirectories": [self.models], "Device": "cpu", "SimulatedDeviceMemoryMB": 16}})
        with logged_on_failure(small):
            small.start()
            constrained_source = store_series(small, files)
            before = fingerprints(small, constrained_source)
            job = wait_for_job(small, small.post(f"/enhance/series/{constrained_source}",
                                             {"Task": "denoise", "Model": "ct-mean"})["ID"])
            self.assertEqual(job["State"], "Success", job)
            warnings = job["Content"]["Warnings"]
            self.assertIn("out of memory on cpu with a batch of 4; retrying with batches of 2", warnings)
            self.assertIn("out of memory on cpu with a batch of 2; retrying with batches of 1", warnings)
            self.assertIn("model 'ct-mean' ran out of memory on cpu; retrying with tiles of 256 pixels",
                          warnings)
            self.assertFalse(any("tiles of 128" in w for w in warnings), warnings)
            self.assertIn("SimulatedDeviceMemoryMB", small.log())
            # The derived series carry the same UIDs (same source, model and request).
            self.assertEqual(job["Content"]["ModelUid"], reference["Content"]["ModelUid"])
            expected = pixels(self.node, reference["Content"]["DerivedSeries"])
            actual = pixels(small, job["Content"]["DerivedSeries"])
            self.assertEqual(actual.shape, (4, 512, 512))
            self.assertLessEqual(int(numpy.abs(actual - expected).max()), 1)
            self.assertEqual(fingerprints(small, constrained_source), before)


class ModelFaultTest(unittest.TestCase):
    def test_archive_corrupted_then_deleted_while_orthanc_runs(self):
        tmp = tempfile.mkdtemp(prefix="enhance-model-fault-")
        models = os.path.join(tmp, "models")
        folder = write_fixture_model(models, "mean3x3", "ct-mean", tile={"size": 64, "overlap": 16})
        archive = os.path.join(folder, "model.pt")
        node = OrthancServer(extra_config={
            "Plugins": [PLUGIN, STORE_FAULT],
            "ConcurrentJobs": 2,
            # Each derived instance is kept only after 600 ms: the first job holds the
            # processing slot while the second waits with its model, and the second is
            # still storing when its model file is damaged.
            "StoreFault": {"Mode": "delay", "DelayMs": 600},
            "Enhance": {"ModelsDirectories": [models], "Device": "cpu", "ConcurrentSeries": 1,
                        "Rules": [{"Name": "ct-mean", "Modalities": ["CT"], "CallingAETs": ["RULE"],
                                   "Task": "denoise", "Model": "ct-mean"}]}})
        with logged_on_failure(node, tmp):
            node.start()
            first = store_series(node, make_phantom(os.path.join(tmp, "a"), rows=64, columns=64,
                                                    slices=8, seed=1))
            second = store_series(node, make_phantom(os.path.join(tmp, "b"), rows=96, columns=96,
                                                     slices=4, seed=2))
            before = fingerprints(node, second)
            uid = node.get("/enhance/models/ct-mean")["Uid"]
            holder = node.post(f"/enhance/series/{first}", {"Task": "denoise", "Model": "classical-gaussian"})["ID"]
            wait_for_job_state(node, holder, lambda j: j["Content"].get("Stage") == "storing",
                               what="the first job to hold the processing slot")
            running = node.post(f"/enhance/series/{second}", {"Task": "denoise", "Model": "ct-mean"})["ID"]
            wait_for_job_state(node, running,
                               lambda j: j["State"] == "Running" and j["Content"].get("ModelUid"),
                               what="the second job to run with its model")

            # Corrupted while a job holds it: the reload reports the file, the job finishes.
            with open(archive, "wb") as f:
                f.write(b"PK\x03\x04 this is not a TorchScript archive any more")
            report = node.post("/enhance/models/reload")
            self.assertNotIn("ct-mean", report["Loaded"])
            self.assertEqual([p["Name"] for p in report["Problems"]], ["ct-mean"])
            self.assertIn(f"{folder}: model.pt is not a loadable TorchScript archive",
                          report["Problems"][0]["Message"])
            self.assertIn("rule 'ct-mean': model 'ct-mean' is not available", report["RuleProblems"][0])
            self.assertIn("model.pt", report["RuleProblems"][0])
            self.assertEqual(node.get(f"/jobs/{running}")["State"], "Running")

            done = wait_for_job(node, running)
            self.assertEqual(done["State"], "Success", done)
            self.assertEqual(done["Content"]["ModelUid"], uid)
            self.assertEqual(len(node.get(f"/series/{done['Content']['DerivedSeries']}")["Instances"]), 4)
            self.assertEqual(wait_for_job(node, holder)["State"], "Success")

            # New work for that model fails naming the file: by REST at once, by a rule as a job.
            with self.assertRaises(HttpError) as refused:
                node.post(f"/enhance/series/{second}", {"Task": "denoise", "Model": "ct-mean", "Force": True})
            self.assertEqual(refused.exception.status, 404)
            self.assertIn("model 'ct-mean' is not available", json.loads(refused.exception.body)["Message"])
            self.assertIn("model.pt is not a loadable TorchScript archive",
                          json.loads(refused.exception.body)["Message"])
            third = store_series(node, make_phantom(os.path.join(tmp, "c"), rows=64, columns=64,
                                                    slices=4, seed=3), calling_aet="RULE")

            failed = wait_for_ended_job(node, lambda j: j["Content"].get("SourceSeries") == third,
                                        timeout=120, what="the rule's job to end")
            self.assertEqual(failed["State"], "Failure", failed)
            self.assertIn("model 'ct-mean' is not available", failed["Content"]["ErrorMessage"])
            self.assertIn(f"{folder}: model.pt is not a loadable", failed["Content"]["ErrorMessage"])
            self.assertEqual(study_series(node, third), [third])

            # Deleted: the same, with what is missing.
            os.remove(archive)
            report = node.post("/enhance/models/reload")
            self.assertIn("the archive model.pt named in manifest.json does not exist",
                          report["Problems"][0]["Message"])
            with self.assertRaises(HttpError) as missing:
                node.post(f"/enhance/series/{second}", {"Task": "denoise", "Model": "ct-mean", "Force": True})
            self.assertIn("model.pt named in manifest.json does not exist",
                          json.loads(missing.exception.body)["Message"])
            self.assertEqual(node.get("/enhance/system")["ModelProblems"][0]["Name"], "ct-mean")
            self.assertEqual(fingerprints(node, second), before)
            self.assertEqual(node.get("/system")["Name"], "ENHANCE")


class KillTest(unittest.TestCase):
    def test_sigkill_while_storing_then_restart_gives_one_complete_series(self):
        tmp = tempfile.mkdtemp(prefix="enhance-kill-")
        slices = 16
        node = OrthancServer(extra_config={
            "Plugins": [PLUGIN, STORE_FAULT],
            # Storing takes 16 x 150 ms, so that the kill lands with the series half stored.
            "StoreFault": {"Mode": "delay", "DelayMs": 150},
            "Enhance": {"Rules": [{"Name": "ct", "Modalities": ["CT"], "Task": "denoise",
                                   "Model": "classical-gaussian"}]}})
        with logged_on_failure(node, tmp):
            node.start()
            files = make_phantom(os.path.join(tmp, "ct"), rows=128, columns=128, slices=slices, seed=9)
            source = store_series(node, files)
            before = fingerprints(node, source)

            def half_stored():
                for s in study_series(node, source):
                    if s != source and 0 < len(node.get(f"/series/{s}")["Instances"]) < slices // 2:
                        return s
                return None
            partial = wait_for(half_stored, timeout=120, interval=0.05, what="a half-stored series")
            jobs_before = [j for j in node.get("/jobs?expand") if j["Type"] == "EnhanceSeries"]
            self.assertEqual(len(jobs_before), 1)
            self.assertEqual(jobs_before[0]["State"], "Running")
            node.kill()

            node.start()  # the same storage and index
            job = wait_for_job(node, jobs_before[0]["ID"])  # the saved job, run again
            self.assertEqual(job["State"], "Success", job)
            derived = [s for s in study_series(node, source) if s != source]
            self.assertEqual(len(derived), 1, "more than one derived series")
            instances = node.get(f"/series/{derived[0]}")["Instances"]
            self.assertEqual(len(instances), slices)
            uids = {node.get(f"/instances/{i}/simplified-tags")["SOPInstanceUID"] for i in instances}
            self.assertEqual(len(uids), slices, "duplicate instances")
            self.assertEqual(derived[0], partial)  # same UID: the partial one was repaired
            self.assertIn(f"series {source}: removing incomplete derived series {partial}", node.log())
            self.assertEqual([j["ID"] for j in node.get("/jobs?expand") if j["Type"] == "EnhanceSeries"],
                             [jobs_before[0]["ID"]], "the restart routed the series again")
            self.assertEqual(fingerprints(node, source), before)


class LoadTest(unittest.TestCase):
    SERIES = 50
    SENDERS = 5
    SLICES = 8

    def test_fifty_series_from_concurrent_senders(self):
        tmp = tempfile.mkdtemp(prefix="enhance-load-")
        node = OrthancServer(extra_config={
            "JobsHistorySize": 4 * self.SERIES,  # Orthanc forgets all but 10 finished jobs by default
            "Enhance": {"Rules": [{"Name": "ct", "Modalities": ["CT"], "Task": "denoise",
                                   "Model": "classical-gaussian"}]}})
        latencies = []
        stop = threading.Event()

        def poll():
            while not stop.is_set():
                start = time.monotonic()
                try:
                    node.get("/system")
                    latencies.append(time.monotonic() - start)
                except Exception as e:  # noqa: BLE001 - an unanswered poll is a failure
                    latencies.append(float("inf"))
                    sys.stderr.write(f"/system did not answer: {e}\n")
                stop.wait(0.1)

        poller = threading.Thread(target=poll, daemon=True)
        try:
            # One phantom per sender, copied with new study, series and instance UIDs.
            folders = []
            phantoms = [make_phantom(os.path.join(tmp, f"phantom{s}"), rows=128, columns=128,
                                     slices=self.SLICES, seed=1000 + s) for s in range(self.SENDERS)]
            for k in range(self.SERIES):
                folder = os.path.join(tmp, f"s{k:02d}")
                os.makedirs(folder)
                study, series = pydicom.uid.generate_uid(), pydicom.uid.generate_uid()
                for path in phantoms[k % self.SENDERS]:
                    ds = pydicom.dcmread(path)
                    ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
                    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
                    ds.PatientID = f"LOAD-{k:02d}"
                    ds.save_as(os.path.join(folder, os.path.basename(path)))
                folders.append(folder)
            uids = {pydicom.dcmread(os.path.join(f, os.listdir(f)[0]), stop_before_pixels=True).SeriesInstanceUID
                    for f in folders}
            self.assertEqual(len(uids), self.SERIES, "the phantoms do not have distinct series UIDs")

            node.start()
            poller.start()
            start = time.monotonic()
            senders = []
            for s in range(self.SENDERS):
                paths = [os.path.join(f, x) for f in folders[s::self.SENDERS] for x in sorted(os.listdir(f))]
                senders.append(subprocess.Popen(
                    ["storescu", "-aet", f"SENDER{s}", "-aec", node.aet, "127.0.0.1", str(node.dicom_port),
                     *paths], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
            for p in senders:
                _, err = p.communicate(timeout=300)
                self.assertEqual(p.returncode, 0, err)
            sent = time.monotonic() - start

            def all_done():
                jobs = [j for j in node.get("/jobs?expand") if j["Type"] == "EnhanceSeries"]
                if len(jobs) >= self.SERIES and all(j["State"] in ("Success", "Failure") for j in jobs):
                    return jobs
                return None
            try:
                jobs = wait_for(all_done, timeout=300, interval=1, what="every series to be processed")
            except AssertionError:
                states = [j["State"] for j in node.get("/jobs?expand") if j["Type"] == "EnhanceSeries"]
                raise AssertionError(f"{len(states)} jobs, states {sorted(set(states))}, "
                                     f"{len(node.get('/series'))} series in Orthanc") from None
            elapsed = time.monotonic() - start
            stop.set()
            poller.join(timeout=5)
            peak = node.peak_rss_mb()

            self.assertEqual([j["Content"].get("ErrorMessage") for j in jobs if j["State"] != "Success"], [])
            sources = [j["Content"]["SourceSeries"] for j in jobs]
            self.assertEqual(len(jobs), self.SERIES, "more jobs than series")
            self.assertEqual(len(set(sources)), self.SERIES, "a series was processed twice")
            self.assertFalse(any(j["Content"].get("AlreadyProcessed") for j in jobs))
            all_series = node.get("/series")
            self.assertEqual(len(all_series), 2 * self.SERIES)
            for j in jobs:
                study = study_series(node, j["Content"]["SourceSeries"])
                self.assertEqual(sorted(study), sorted([j["Content"]["SourceSeries"], j["Content"]["DerivedSeries"]]))
                self.assertEqual(len(node.get(f"/series/{j['Content']['DerivedSeries']}")["Instances"]),
                                 self.SLICES)

            finite = [x for x in latencies if x != float("inf")]
            worst = max(latencies)
            figures = {
                "series": self.SERIES, "senders": self.SENDERS, "slices": self.SLICES,
                "send_seconds": round(sent, 1), "total_seconds": round(elapsed, 1),
                "peak_rss_mb": round(peak, 1), "system_polls": len(latencies),
                "worst_system_latency_ms": round(worst * 1000, 1),
                "median_system_latency_ms": round(sorted(finite)[len(finite) // 2] * 1000, 1),
            }
            print("\nLOAD FIGURES " + json.dumps(figures), flush=True)
            self.assertGreater(len(latencies), 100)
            self.assertLess(worst, 2.0, "Orthanc did not answer /system within 2 s")
            self.assertLess(peak, 1024, "Orthanc's peak memory exceeded 1 GiB")
        except BaseException:
            sys.stderr.write(node.log()[-8000:])
            raise
        finally:
            stop.set()
            node.cleanup()
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    unittest.main()
