# SPDX-License-Identifier: GPL-3.0-or-later
"""The node between a hospital PACS and its users: two real Orthanc processes on loopback,
one playing the PACS (no plugin), one running the plugin with routing rules.

1. The PACS C-MOVEs a CT series to the node (movescu asks it to); the rule fires and the
   derived series is C-STOREd back to the sender, where it is found with its tags.
2. POST /enhance/retrieve pulls a series from the PACS by C-MOVE and processes it.
3. A destination that is down: retries, a clear failure, the derived series kept.
4. REST requests: validation errors, no duplicate without Force, a new series with Force,
   a whole study, cancellation.
5. Orthanc restarted with jobs queued: all complete afterwards, no duplicates.
"""
import io
import json
import os
import shutil
import subprocess
import tempfile
import time
import unittest

import pydicom

from orthanc_harness import (HttpError, OrthancServer, free_port, logged_on_failure, make_phantom,
                             wait_for, wait_for_ended_job, wait_for_job, wait_for_job_state)


def series_in(server, study_uid=None):
    return [server.get(f"/series/{s}") for s in server.get("/series")]


def derived_series(server):
    out = []
    for s in series_in(server):
        if "[AI denoised]" in s["MainDicomTags"].get("SeriesDescription", ""):
            out.append(s)
    return out


class OrchestrationTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="enhance-orch-")
        node_dicom, pacs_dicom, down_port = free_port(), free_port(), free_port()
        cls.pacs = OrthancServer(name="PACS", plugin=False, extra_config={
            "DicomPort": pacs_dicom,
            "DicomAlwaysAllowMove": True,
            "DicomModalities": {"ENHANCE": ["ENHANCE", "127.0.0.1", node_dicom]}})
        cls.pacs.dicom_port = pacs_dicom
        cls.node = OrthancServer(name="ENHANCE", extra_config={
            "DicomPort": node_dicom,
            "ConcurrentJobs": 1,
            "DicomModalities": {"PACS": ["PACS", "127.0.0.1", pacs_dicom],
                                "DOWN": ["DOWN", "127.0.0.1", down_port]},
            "Enhance": {
                "ForwardAttempts": 2, "ForwardRetryDelaySeconds": 0.2,
                "Rules": [
                    {"Name": "from-pacs", "Modalities": ["CT"], "CallingAETs": ["PACS"],
                     "Task": "denoise", "Model": "classical-bilateral", "Destinations": ["$sender"]},
                    {"Name": "to-down", "Modalities": ["CT"], "CallingAETs": ["BROKEN-ROUTE"],
                     "Task": "denoise", "Model": "classical-gaussian", "Destinations": ["DOWN"]},
                ]}})
        cls.node.dicom_port = node_dicom
        for server in (cls.pacs, cls.node):
            server.start()

    @classmethod
    def tearDownClass(cls):
        cls.node.cleanup()
        cls.pacs.cleanup()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def phantom(self, name, slices=6, seed=1, size=96):
        return make_phantom(os.path.join(self.tmp, name), rows=size, columns=size, slices=slices, seed=seed)

    def test_1_pacs_cmove_to_node_comes_back_denoised(self):
        files = self.phantom("cmove", seed=11)
        self.pacs.store_files(files, calling_aet="MODALITY")
        ds = pydicom.dcmread(files[0])
        result = subprocess.run(
            ["movescu", "-aet", "TESTER", "-aec", "PACS", "-aem", "ENHANCE", "-S",
             "-k", "QueryRetrieveLevel=SERIES", "-k", f"StudyInstanceUID={ds.StudyInstanceUID}",
             "-k", f"SeriesInstanceUID={ds.SeriesInstanceUID}", "127.0.0.1", str(self.pacs.dicom_port)],
            capture_output=True, text=True, timeout=120)
        self.assertEqual(result.returncode, 0, result.stderr)

        def back_in_pacs():
            found = [s for s in derived_series(self.pacs)
                     if s["MainDicomTags"].get("SeriesNumber") == "1002"
                     and len(s["Instances"]) == len(files)]
            return found or None
        found = wait_for(back_in_pacs, timeout=120, what="the derived series in the PACS")
        instance = self.pacs.get_bytes(f"/instances/{found[0]['Instances'][0]}/file")
        derived = pydicom.dcmread(io.BytesIO(instance))
        self.assertEqual(derived.StudyInstanceUID, ds.StudyInstanceUID)
        self.assertEqual(list(derived.ImageType)[:2], ["DERIVED", "SECONDARY"])
        self.assertEqual(derived.ContributingEquipmentSequence[-1].Manufacturer, "Orthanc Enhance")
        jobs = [self.node.get(f"/jobs/{j}") for j in self.node.get("/jobs")]
        forwarded = [wait_for_job(self.node, j["ID"]) for j in jobs if j["Type"] == "EnhanceSeries"
                     and j["Content"].get("Origin") == "rule 'from-pacs'"]
        self.assertEqual(forwarded[0]["State"], "Success")
        self.assertEqual(forwarded[0]["Content"]["Forwarding"][0]["Target"], "PACS")
        self.assertEqual(forwarded[0]["Content"]["Forwarding"][0]["Status"], "Success")

    def test_2_retrieve_pulls_from_the_pacs_and_processes(self):
        files = self.phantom("retrieve", seed=22)
        self.pacs.store_files(files, calling_aet="MODALITY")
        ds = pydicom.dcmread(files[0])
        answer = self.node.post("/enhance/retrieve", {
            "Modality": "PACS", "StudyInstanceUID": ds.StudyInstanceUID,
            "SeriesInstanceUID": ds.SeriesInstanceUID, "Task": "denoise", "Model": "classical-gaussian"})
        retrieve = wait_for_job(self.node, answer["ID"])
        self.assertEqual(retrieve["State"], "Success", retrieve)
        self.assertEqual(len(retrieve["Content"]["Jobs"]), 1)
        processing = wait_for_job(self.node, retrieve["Content"]["Jobs"][0])
        self.assertEqual(processing["State"], "Success", processing)
        derived = self.node.get(f"/series/{processing['Content']['DerivedSeries']}")
        self.assertEqual(len(derived["Instances"]), len(files))

        with self.assertRaises(HttpError) as bad:
            self.node.post("/enhance/retrieve", {"Modality": "NOWHERE", "StudyInstanceUID": "1.2",
                                                 "Task": "denoise"})
        self.assertEqual(bad.exception.status, 400)

    def test_3_destination_down_fails_clearly_and_keeps_the_series(self):
        files = self.phantom("down", seed=33)
        self.node.store_files(files, calling_aet="BROKEN-ROUTE")

        failed = wait_for_ended_job(self.node, lambda j: j["Content"].get("Origin") == "rule 'to-down'",
                                    timeout=120, what="the forwarding job to end")
        self.assertEqual(failed["State"], "Failure", failed["Content"])
        content = failed["Content"]
        self.assertIn("forwarding failed: DOWN", content["ErrorMessage"])
        self.assertIn("stays in Orthanc", content["ErrorMessage"])
        self.assertEqual(content["Forwarding"][0]["Status"], "Failure")
        self.assertEqual(content["Forwarding"][0]["Attempts"], 2)
        kept = self.node.get(f"/series/{content['DerivedSeries']}")
        self.assertEqual(len(kept["Instances"]), len(files))

    def test_4_rest_requests(self):
        o = self.node
        files = self.phantom("rest", seed=44, slices=4)
        o.store_files(files, calling_aet="MODALITY")  # matches no rule
        uid = pydicom.dcmread(files[0]).SeriesInstanceUID
        source = [s["ID"] for s in series_in(o) if s["MainDicomTags"]["SeriesInstanceUID"] == uid][0]

        for path, body, status, text in [
            (f"/enhance/series/{source}", {"Task": "sharpen"}, 400, "unknown task 'sharpen'"),
            (f"/enhance/series/{source}", {"Task": "denoise", "Model": "nope"}, 404, "unknown model 'nope'"),
            (f"/enhance/series/{source}", {"Task": "superres", "Model": "classical-bilateral"}, 400,
             "performs denoise, not superres"),
            ("/enhance/series/0000", {"Task": "denoise"}, 404, "series 0000 does not exist"),
            (f"/enhance/series/{source}", {"Task": "denoise", "Destinations": ["MARS"]}, 400, "MARS"),
            (f"/enhance/series/{source}", {"Task": "denoise", "Colour": 1}, 400, 'unknown key "Colour"'),
        ]:
            with self.assertRaises(HttpError) as error:
                o.post(path, body)
            self.assertEqual(error.exception.status, status, body)
            self.assertIn(text, json.loads(error.exception.body)["Message"])

        first = wait_for_job(o, o.post(f"/enhance/series/{source}", {"Task": "denoise"})["ID"])
        self.assertEqual(first["State"], "Success")
        self.assertEqual(first["Content"]["Model"], "classical-bilateral")  # default for CT
        again = wait_for_job(o, o.post(f"/enhance/series/{source}", {"Task": "denoise"})["ID"])
        self.assertTrue(again["Content"]["AlreadyProcessed"])
        self.assertEqual(again["Content"]["DerivedSeries"], first["Content"]["DerivedSeries"])
        forced = wait_for_job(o, o.post(f"/enhance/series/{source}", {"Task": "denoise", "Force": True})["ID"])
        self.assertNotEqual(forced["Content"]["DerivedSeries"], first["Content"]["DerivedSeries"])

        study = o.get(f"/series/{source}")["ParentStudy"]
        answer = o.post(f"/enhance/studies/{study}", {"Task": "denoise", "Model": "classical-gaussian"})
        self.assertEqual(len(answer["Jobs"]), 1)  # the source; the derived series are skipped
        self.assertEqual(len(answer["Skipped"]), 2)
        self.assertTrue(all("DERIVED" in s["Reason"] or "Orthanc Enhance" in s["Reason"]
                            for s in answer["Skipped"]))
        self.assertEqual(wait_for_job(o, answer["Jobs"][0]["ID"])["State"], "Success")

    def test_5_cancel_stops_without_storing(self):
        o = self.node
        stopped_before = o.get("/enhance/system")["Jobs"]
        files = self.phantom("cancel", seed=55, slices=48, size=512)
        o.store_files(files, calling_aet="MODALITY")
        uid = pydicom.dcmread(files[0]).SeriesInstanceUID
        source = [s["ID"] for s in series_in(o) if s["MainDicomTags"]["SeriesInstanceUID"] == uid][0]
        before = set(o.get("/series"))
        job_id = o.post(f"/enhance/series/{source}", {"Task": "denoise", "Model": "classical-bilateral"})["ID"]
        wait_for_job_state(o, job_id, lambda j: j["State"] == "Running", what="the job to run")
        o.post(f"/jobs/{job_id}/cancel")
        state = wait_for_job_state(o, job_id, lambda j: j["State"] != "Running", timeout=30,
                                   what="the job to stop")
        self.assertIn(state["State"], ("Failure", "Paused"))
        time.sleep(1)
        self.assertEqual(set(o.get("/series")), before, "a cancelled job stored something")
        # Counted as stopped by a user, not as failed.
        jobs = o.get("/enhance/system")["Jobs"]
        self.assertEqual(jobs["Stopped"], stopped_before["Stopped"] + 1)
        self.assertEqual(jobs["Failed"], stopped_before["Failed"])

    def test_6_metrics_are_published(self):
        text = self.node.request("GET", "/tools/metrics-prometheus").decode()
        self.assertIn("orthanc_enhance_jobs_succeeded", text)
        self.assertIn("orthanc_enhance_slices_processed", text)
        rules = self.node.get("/enhance/rules")
        self.assertEqual(rules["Evaluation"], "FirstMatch")
        self.assertEqual([r["Name"] for r in rules["Rules"]], ["from-pacs", "to-down"])
        self.assertEqual(rules["Rules"][0]["Destinations"], ["$sender"])
        self.assertEqual(rules["Rules"][0]["Status"], "ok")


class RestartTest(unittest.TestCase):
    def test_jobs_queued_at_shutdown_complete_after_restart_without_duplicates(self):
        tmp = tempfile.mkdtemp(prefix="enhance-restart-")
        node = OrthancServer(extra_config={"ConcurrentJobs": 1, "Enhance": {"ConcurrentSeries": 1}})
        with logged_on_failure(node, tmp):
            node.start()
            sources = []
            for k in range(4):
                files = make_phantom(os.path.join(tmp, f"s{k}"), rows=256, columns=256, slices=12, seed=100 + k)
                node.store_files(files)
                uid = pydicom.dcmread(files[0]).SeriesInstanceUID
                sources.append([s for s in node.get("/series")
                                if node.get(f"/series/{s}")["MainDicomTags"]["SeriesInstanceUID"] == uid][0])
            jobs = [node.post(f"/enhance/series/{s}", {"Task": "denoise"})["ID"] for s in sources]
            wait_for(lambda: any(node.get(f"/jobs/{j}")["State"] == "Running" for j in jobs), timeout=60,
                     interval=0.05, what="a job to run")
            node.restart()  # graceful: Orthanc saves its jobs

            def all_done():
                states = [node.get(f"/jobs/{j}")["State"] for j in jobs]
                return states if all(s == "Success" for s in states) else None
            try:
                wait_for(all_done, timeout=180, what="every job to complete after the restart")
            except AssertionError:
                raise AssertionError(str([node.get(f"/jobs/{j}") for j in jobs]))
            for s in sources:
                study = node.get(f"/series/{s}")["ParentStudy"]
                series = node.get(f"/studies/{study}")["Series"]
                others = [x for x in series if x != s]
                self.assertEqual(len(others), 1, f"source {s} has {len(others)} derived series")
                self.assertEqual(len(node.get(f"/series/{others[0]}")["Instances"]), 12)


class UnstableAtShutdownTest(unittest.TestCase):
    def test_a_series_still_arriving_when_orthanc_stops_is_processed_after_the_restart(self):
        tmp = tempfile.mkdtemp(prefix="enhance-unstable-")
        rules = {"Enhance": {"Rules": [{"Name": "ct", "Modalities": ["CT"], "Task": "denoise",
                                        "Model": "classical-gaussian"}]}}
        node = OrthancServer(extra_config=rules, stable_age=30)
        with logged_on_failure(node, tmp):
            node.start()
            files = make_phantom(os.path.join(tmp, "ct"), rows=64, columns=64, slices=4, seed=7)
            node.store_files(files)
            node.restart()  # long before the series is stable

            def derived():
                series = node.get("/series")
                return series if len(series) == 2 else None
            wait_for(derived, timeout=120, what="the series received before the restart to be processed")


if __name__ == "__main__":
    unittest.main()
