# SPDX-License-Identifier: GPL-3.0-or-later
"""The plugin's routes sit behind Orthanc's authentication, and its log names no patient."""
import os
import shutil
import subprocess
import tempfile
import unittest
import urllib.error
import urllib.request

from orthanc_harness import PHANTOM, OrthancServer, wait_for

PATIENT_NAME = "SECRETSURNAME^GIVENNAME"
PATIENT_ID = "PID-94817263"


class SecurityTest(unittest.TestCase):
    def test_routes_need_credentials_and_the_log_carries_no_patient_identity(self):
        tmp = tempfile.mkdtemp(prefix="enhance-security-")
        rules = {"Enhance": {"Rules": [{"Name": "ct", "Modalities": ["CT"], "Task": "denoise",
                                        "Model": "classical-gaussian"}]}}
        try:
            with OrthancServer(extra_config=rules, credentials=("alice", "s3cret-pass")) as o:
                folder = os.path.join(tmp, "ct")
                subprocess.run([PHANTOM, "--out", folder, "--rows", "64", "--columns", "64", "--slices", "4",
                                "--patient-name", PATIENT_NAME, "--patient-id", PATIENT_ID],
                               check=True, capture_output=True)
                o.store_files(sorted(os.path.join(folder, f) for f in os.listdir(folder)))
                wait_for(lambda: len(o.get("/series")) == 2, timeout=120, what="the derived series")
                source = o.get("/series")[0]
                study = o.get(f"/series/{source}")["ParentStudy"]

                routes = [("GET", "/enhance/system"), ("GET", "/enhance/models"),
                          ("GET", "/enhance/models/classical-bilateral"), ("POST", "/enhance/models/reload"),
                          ("GET", "/enhance/rules"), ("POST", f"/enhance/series/{source}"),
                          ("POST", f"/enhance/studies/{study}"), ("POST", "/enhance/retrieve"),
                          ("POST", "/enhance/evaluate")]
                for method, path in routes:
                    request = urllib.request.Request(o.url + path, method=method,
                                                     data=b"{}" if method == "POST" else None)
                    with self.assertRaises(urllib.error.HTTPError, msg=path) as refused:
                        urllib.request.urlopen(request, timeout=30)
                    self.assertEqual(refused.exception.code, 401, f"{method} {path}")
                self.assertEqual(o.get("/enhance/system")["Name"], "enhance")  # with credentials

                log = o.log()
                self.assertIn("Enhance:", log)  # the plugin did log its work
                for secret in ("SECRETSURNAME", PATIENT_ID):
                    self.assertNotIn(secret, log, "the log names the patient")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    unittest.main()
