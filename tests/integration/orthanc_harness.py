# SPDX-License-Identifier: GPL-3.0-or-later
"""Real Orthanc processes on loopback for integration tests.

An OrthancServer owns a temporary directory (storage, index, configuration, log), picks
free loopback ports, starts Debian's Orthanc with the given configuration and always
stops it: use it as a context manager. On failure its log is printed to help diagnosis.
With `credentials` (user, password) the server requires HTTP basic authentication and
the harness's own requests send them.
"""
import base64
import contextlib
import hashlib
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

ORTHANC = os.environ.get("ENHANCE_ORTHANC", shutil.which("Orthanc") or "/usr/sbin/Orthanc")
PLUGIN = os.environ.get("ENHANCE_PLUGIN", "")
PHANTOM = os.environ.get("ENHANCE_PHANTOM", "")
FIXTURE = os.environ.get("ENHANCE_FIXTURE_MODEL", "")
# mricron-data's T1-weighted head (181 x 217 x 181, 1 mm), the source of make_head_mr.
HEAD = "/usr/share/mricron/templates/ch2.nii.gz"
NIFTI_TO_DICOM = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools",
                              "nifti_to_dicom_mr.py")


def free_port():
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class HttpError(Exception):
    def __init__(self, status, body, url):
        super().__init__(f"HTTP {status} for {url}: {body[:500]!r}")
        self.status = status
        self.body = body


class OrthancClient:
    """REST (with basic authentication when `credentials` is given) and C-STORE to an
    Orthanc that is already running: one of ours (OrthancServer) or one in a container."""

    def __init__(self, url, aet, dicom_port, credentials=None):
        self.url = url
        self.aet = aet
        self.dicom_port = dicom_port
        self.credentials = credentials

    # -- REST ------------------------------------------------------------------
    def request(self, method, path, body=None, content_type="application/json"):
        data = None
        headers = {}
        if self.credentials:
            token = base64.b64encode(":".join(self.credentials).encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        if body is not None:
            data = body if isinstance(body, (bytes, bytearray)) else json.dumps(body).encode()
            headers["Content-Type"] = content_type
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=60) as response:
                return response.read()
        except urllib.error.HTTPError as e:
            raise HttpError(e.code, e.read(), path) from None

    def get(self, path):
        return json.loads(self.request("GET", path))

    def get_bytes(self, path):
        return self.request("GET", path)

    def post(self, path, body=None):
        return json.loads(self.request("POST", path, body if body is not None else {}))

    # -- DICOM -----------------------------------------------------------------
    def store_files(self, paths, calling_aet="MODALITY"):
        """C-STORE files to this Orthanc with DCMTK's storescu."""
        result = subprocess.run(
            ["storescu", "-aet", calling_aet, "-aec", self.aet, "127.0.0.1", str(self.dicom_port),
             *paths], capture_output=True, text=True, timeout=300)
        if result.returncode != 0:
            raise RuntimeError(f"storescu failed ({result.returncode}): {result.stderr}")


class OrthancServer(OrthancClient):
    def __init__(self, name="ENHANCE", plugin=True, extra_config=None, stable_age=2,
                 credentials=None, environment=None):
        self.http_port = free_port()
        super().__init__(f"http://127.0.0.1:{self.http_port}", name,
                         (extra_config or {}).get("DicomPort") or free_port(), credentials)
        self.workdir = tempfile.mkdtemp(prefix=f"orthanc-{name.lower()}-")
        self.log_path = os.path.join(self.workdir, "orthanc.log")
        config = {
            "Name": name,
            "HttpPort": self.http_port,
            "DicomPort": self.dicom_port,
            "DicomAet": name,
            "StorageDirectory": os.path.join(self.workdir, "storage"),
            "IndexDirectory": os.path.join(self.workdir, "storage"),
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "StableAge": stable_age,
            "DicomCheckCalledAet": False,
            "Plugins": [PLUGIN] if plugin else [],
        }
        if credentials:
            config["AuthenticationEnabled"] = True
            config["RegisteredUsers"] = {credentials[0]: credentials[1]}
        if extra_config:
            config.update(extra_config)
        self.config_path = os.path.join(self.workdir, "orthanc.json")
        with open(self.config_path, "w") as f:
            json.dump(config, f, indent=2)
        self.environment = environment  # added to this process's for Orthanc's
        self.process = None
        self.log_file = None

    # -- lifecycle -------------------------------------------------------------
    def start(self, timeout=60):
        self.log_file = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            # ENHANCE_TEST_VERBOSE=1 keeps Orthanc's (and the plugin's) informational lines.
            [ORTHANC, self.config_path] + (["--verbose"] if os.environ.get("ENHANCE_TEST_VERBOSE") else []),
            stdout=self.log_file, stderr=subprocess.STDOUT, cwd=self.workdir,
            start_new_session=True, env=dict(os.environ, **(self.environment or {})))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"Orthanc exited with {self.process.returncode}:\n{self.log()}")
            try:
                self.get("/system")
                return self
            except (OSError, HttpError):
                time.sleep(0.2)
        raise RuntimeError(f"Orthanc did not answer within {timeout} s:\n{self.log()}")

    def stop(self, timeout=30):
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.process = None
        if self.log_file:
            self.log_file.close()
            self.log_file = None

    def kill(self):
        """SIGKILL, as a crash or the kernel's out-of-memory killer would: Orthanc saves nothing."""
        if self.process is None:
            return
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        self.process = None
        if self.log_file:
            self.log_file.close()
            self.log_file = None

    def restart(self, kill=False):
        """Stops Orthanc (gracefully: it saves its jobs; with `kill`, SIGKILL: it saves
        nothing) and starts it again on the same storage, index and ports."""
        if kill:
            self.kill()
        else:
            self.stop()
        self.start()

    def peak_rss_mb(self):
        """The peak resident memory of the running Orthanc (VmHWM), in MiB."""
        with open(f"/proc/{self.process.pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        raise RuntimeError("no VmHWM in /proc/PID/status")

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self):
        try:
            return self.start()
        except BaseException:
            self.cleanup()
            raise

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            sys.stderr.write(f"--- log of Orthanc {self.aet} ---\n{self.failure_report()}\n")
        self.cleanup()
        return False

    def failure_report(self):
        """The log, with how the process ended when it is no longer running (a crash shows
        as the signal that killed it, which Orthanc's own log cannot say)."""
        report = self.log()
        if self.process is not None and self.process.poll() is not None:
            code = self.process.returncode
            how = f"exited with status {code}"
            if code < 0:
                try:
                    how = f"killed by signal {signal.Signals(-code).name}"
                except ValueError:
                    how = f"killed by signal {-code}"
            report += f"\n--- Orthanc {self.aet} {how} during the test ---\n"
        return report

    def log(self):
        try:
            with open(self.log_path, "r", errors="replace") as f:
                return f.read()
        except OSError:
            return ""

def make_phantom(directory, rows=128, columns=128, slices=12, noise=30.0, seed=1):
    """Writes a phantom CT series with enhance-make-phantom; returns the file paths."""
    subprocess.run([PHANTOM, "--out", directory, "--rows", str(rows), "--columns", str(columns),
                    "--slices", str(slices), "--noise", str(noise), "--seed", str(seed)],
                   check=True, capture_output=True)
    return sorted(os.path.join(directory, f) for f in os.listdir(directory) if f.endswith(".dcm"))


def make_head_mr(directory, *options, nifti=HEAD):
    """Writes axial slices of a NIfTI head as an MR series with tools/nifti_to_dicom_mr.py
    (`options`: its own, e.g. "--count", "4"); returns the file paths."""
    subprocess.run(["/usr/bin/python3", NIFTI_TO_DICOM, nifti, directory, *options],
                   check=True, capture_output=True)
    return sorted(os.path.join(directory, f) for f in os.listdir(directory))


def wait_for(predicate, timeout, interval=0.5, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def wait_for_job(server, job_id, timeout=180):
    """The job's JSON once it has succeeded or failed."""
    def done():
        j = server.get(f"/jobs/{job_id}")
        return j if j["State"] in ("Success", "Failure") else None
    return wait_for(done, timeout=timeout, interval=0.2, what=f"job {job_id}")


def wait_for_job_state(server, job_id, condition, timeout=60, what=None):
    """The job's JSON once `condition(job)` holds, polling every 50 ms."""
    def check():
        job = server.get(f"/jobs/{job_id}")
        return job if condition(job) else None
    return wait_for(check, timeout=timeout, interval=0.05, what=what or f"job {job_id}")


def wait_for_ended_job(server, matches, timeout=180, what="the job to end"):
    """The first job for which `matches(job)` holds once it has succeeded or failed."""
    def ended():
        for job in server.get("/jobs?expand"):
            if job["State"] in ("Success", "Failure") and matches(job):
                return job
        return None
    return wait_for(ended, timeout=timeout, interval=0.2, what=what)


def series_of_uid(server, uid):
    """The Orthanc ID of the series with this SeriesInstanceUID, or None."""
    answer = json.loads(server.request("POST", "/tools/lookup", uid.encode(), "text/plain"))
    found = [x["ID"] for x in answer if x["Type"] == "Series"]
    return found[0] if found else None


@contextlib.contextmanager
def logged_on_failure(server, *folders):
    """For a server a test starts (and restarts) itself: prints the end of its log when the
    block fails, and always stops it and removes its files and `folders`."""
    try:
        yield server
    except BaseException:
        sys.stderr.write(f"--- log of Orthanc {server.aet} ---\n{server.failure_report()[-8000:]}\n")
        raise
    finally:
        server.cleanup()
        for folder in folders:
            shutil.rmtree(folder, ignore_errors=True)


def store_series(server, files, calling_aet="MODALITY"):
    """C-STOREs a series and returns its Orthanc ID."""
    import pydicom
    server.store_files(files, calling_aet=calling_aet)
    return series_of_uid(server, pydicom.dcmread(files[0], stop_before_pixels=True).SeriesInstanceUID)


def fingerprints(server, series_id):
    """SHA-256 of every instance's file: the original must never change."""
    return {i: hashlib.sha256(server.get_bytes(f"/instances/{i}/file")).hexdigest()
            for i in server.get(f"/series/{series_id}")["Instances"]}


def pixels(server, series_id):
    """The series' stored pixel values, slices ordered by InstanceNumber."""
    import numpy
    import pydicom
    slices = []
    for i in server.get(f"/series/{series_id}")["Instances"]:
        ds = pydicom.dcmread(io.BytesIO(server.get_bytes(f"/instances/{i}/file")))
        slices.append((int(ds.InstanceNumber), ds.pixel_array.astype(numpy.int32)))
    return numpy.stack([p for _, p in sorted(slices, key=lambda x: x[0])])


def write_fixture_model(parent, kind, name, **extra):
    """A model folder made by the fixture-model tool (ENHANCE_FIXTURE_MODEL): a CT denoiser
    of the given kind (for example mean3x3, wrong-shape), its manifest updated by `extra`."""
    manifest = {
        "name": name, "version": "0.1.0", "task": "denoise", "modalities": ["CT"],
        "intended_use": "integration test fixture", "archive": "model.pt",
        "input_normalization": {"method": "window", "low": -1024, "high": 3071},
    }
    manifest.update(extra)
    folder = os.path.join(parent, name)
    shutil.rmtree(folder, ignore_errors=True)
    subprocess.run([FIXTURE, kind, parent, json.dumps(manifest)], check=True, capture_output=True)
    return folder


def dciodvfy_errors(data, directory, name):
    """The lines dicom3tools' dciodvfy reports as errors for one DICOM file (written to
    directory/name)."""
    path = os.path.join(directory, name)
    with open(path, "wb") as f:
        f.write(data)
    result = subprocess.run(["dciodvfy", path], capture_output=True, text=True)
    return [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("Error")]
