# SPDX-License-Identifier: GPL-3.0-or-later
"""The container deployment, built and run for real with Debian's docker.io.

The test starts a Docker daemon of its own in a temporary folder (no bridge, no iptables
rules: nothing outside this machine's loopback is touched), makes the debian:12 base image
with debootstrap when the daemon lacks it (scripts/make-debian-image.sh, as an air-gapped
site would), builds the images from the repository's Dockerfiles, and runs
docker-compose.yml, alone and with docker-compose.postgresql.yml, through the host-network
override beside this file:

- a missing password is refused, by docker-compose and by the image itself;
- the final image has no compiler, no headers, and the plugin's libraries all resolve;
- the health check passes; a CT series sent by C-STORE comes back as a derived series;
- the container restarted keeps its data, and a job paused when it stopped is still
  there and runs to completion when resumed;
- with PostgreSQL, the index is in the database and the same round trip works.

The daemon, its containers, images and volumes, and its folder are removed at the end,
whatever happened. The image build time and size are printed.
"""
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest
import uuid

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
from orthanc_harness import (HttpError, OrthancClient, free_port, make_phantom,  # noqa: E402
                             series_of_uid, wait_for)

HERE = os.path.dirname(os.path.abspath(__file__))
IMAGE = "orthanc-enhance:0.1.0"
POSTGRES_IMAGE = "orthanc-enhance-postgresql:15"
ADMIN_PASSWORD = "container-test-" + uuid.uuid4().hex[:8]
POSTGRES_PASSWORD = "index-" + uuid.uuid4().hex[:8]


def run(command, env=None, timeout=600, check=True, cwd=ROOT):
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout,
                            cwd=cwd)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited with {result.returncode}:\n"
                           f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    return result


class DockerDaemon:
    """dockerd with its data, state and socket in `folder`: no bridge network, no iptables
    or masquerading rules. stop() ends it and what it started, and removes the folder.
    With `data_root` (ENHANCE_DOCKER_DATA_ROOT: a developer's rerun) its images and build
    cache are kept there between runs instead."""

    def __init__(self, folder, data_root=None):
        self.folder = folder
        self.data_root = data_root or os.path.join(folder, "data")
        self.socket = os.path.join(folder, "docker.sock")
        self.env = dict(os.environ, DOCKER_HOST=f"unix://{self.socket}")
        self.process = None

    def start(self, timeout=60):
        dockerd = shutil.which("dockerd") or "/usr/sbin/dockerd"
        if not os.path.exists(dockerd):
            raise RuntimeError("dockerd not found: install docker.io (scripts/install-deps.sh)")
        with open(os.path.join(self.folder, "dockerd.log"), "ab") as log:
            self.process = subprocess.Popen(
                [dockerd, "--data-root", self.data_root,
                 "--exec-root", os.path.join(self.folder, "exec"),
                 "--pidfile", os.path.join(self.folder, "dockerd.pid"),
                 "--host", f"unix://{self.socket}", "--bridge=none", "--iptables=false",
                 "--ip6tables=false", "--ip-masq=false", "--log-level=warn"],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while run(["docker", "version"], env=self.env, check=False).returncode != 0:
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"dockerd did not start:\n{self.log()[-4000:]}")
            time.sleep(0.5)

    def log(self):
        try:
            with open(os.path.join(self.folder, "dockerd.log"), errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            containers = run(["docker", "ps", "-aq"], env=self.env, check=False).stdout.split()
            if containers:
                run(["docker", "rm", "-f", *containers], env=self.env, check=False)
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        # Whatever the daemon left mounted under its folder (overlay layers, its state).
        mounts = []
        with open("/proc/self/mounts") as f:
            for line in f:
                point = line.split()[1]
                if point.startswith((self.folder + "/", self.data_root + "/")):
                    mounts.append(point)
        for point in sorted(mounts, key=len, reverse=True):
            subprocess.run(["umount", "-l", point], capture_output=True)
        shutil.rmtree(self.folder, ignore_errors=True)


class Deployment:
    """One docker-compose project of the repository's compose files plus the host-network
    override, with ports and configuration files of its own."""

    def __init__(self, daemon, folder, postgresql=False):
        self.daemon = daemon
        self.postgresql = postgresql
        self.project = f"enhance{uuid.uuid4().hex[:8]}"
        self.config = os.path.join(folder, self.project)
        os.makedirs(self.config)
        self.files = [self._without_published_ports("docker-compose.yml")]
        if postgresql:
            self.files.append(os.path.join(ROOT, "docker-compose.postgresql.yml"))
        self.files.append(os.path.join(HERE, "compose.host.yml"))
        if postgresql:
            self.files.append(os.path.join(HERE, "compose.host.postgresql.yml"))
        self.http_port, self.dicom_port, self.pg_port = free_port(), free_port(), free_port()
        self._write_configuration()
        self.env = dict(daemon.env, COMPOSE_PROJECT_NAME=self.project,
                        ENHANCE_ADMIN_PASSWORD=ADMIN_PASSWORD,
                        ENHANCE_POSTGRES_PASSWORD=POSTGRES_PASSWORD,
                        ENHANCE_TEST_CONFIG=self.config, ENHANCE_TEST_PGPORT=str(self.pg_port))
        self.orthanc = OrthancClient(f"http://127.0.0.1:{self.http_port}", "ENHANCE",
                                     self.dicom_port, ("admin", ADMIN_PASSWORD))

    def _without_published_ports(self, name):
        """A copy of the compose file without its `ports`: a container on the host's network
        publishes none, and docker-compose refuses both (an override file can add to a
        list but not remove it). Everything else is the shipped file's."""
        import yaml
        with open(os.path.join(ROOT, name)) as f:
            compose = yaml.safe_load(f)
        for service in compose["services"].values():
            service.pop("ports", None)
        copy = os.path.join(self.config, name)
        with open(copy, "w") as f:
            yaml.safe_dump(compose, f)
        return copy

    def _write_configuration(self):
        """The shipped container configuration with only its ports (and the database's
        address) changed: the services share the host's network here."""
        def rewrite(source, target, replacements):
            with open(os.path.join(ROOT, "orthanc-config", source)) as f:
                text = f.read()
            for pattern, value in replacements:
                text, count = re.subn(pattern, value, text)
                if count != 1:
                    raise AssertionError(f"{source}: {pattern} found {count} times, not once")
            with open(os.path.join(self.config, target), "w") as f:
                f.write(text)
        rewrite("docker.json", "orthanc.json",
                [(r'"HttpPort": 8042', f'"HttpPort": {self.http_port}'),
                 (r'"DicomPort": 4242', f'"DicomPort": {self.dicom_port}')])
        rewrite("docker-postgresql.json", "postgresql.json",
                [(r'"Host": "postgres"', '"Host": "127.0.0.1"'),
                 (r'"Port": 5432', f'"Port": {self.pg_port}')])

    def compose(self, *args, env=None, check=True, timeout=900):
        command = ["docker-compose", "--project-directory", ROOT]
        for name in self.files:
            command += ["-f", name]
        return run(command + list(args), env=env or self.env, check=check, timeout=timeout)

    def container(self, service):
        return self.compose("ps", "-q", service).stdout.strip()

    def health(self, service):
        state = json.loads(run(["docker", "inspect", "--format", "{{json .State}}",
                                self.container(service)], env=self.env).stdout)
        if state["Status"] not in ("running", "restarting"):
            raise AssertionError(f"{service} is {state['Status']} (exit code {state['ExitCode']})")
        return state.get("Health", {}).get("Status")

    def wait_healthy(self, service="orthanc", timeout=240):
        wait_for(lambda: self.health(service) == "healthy", timeout=timeout, interval=2,
                 what=f"the health check of {service}")

    def logs(self):
        return self.compose("logs", "--no-color", "--tail", "150", check=False).stdout

    def down(self):
        self.compose("down", "--volumes", "--timeout", "60", check=False)


def ct_series(folder, name, rows, slices, seed):
    return make_phantom(os.path.join(folder, name), rows=rows, columns=rows, slices=slices,
                        seed=seed)


def derived_series_of(client, source):
    """The other series of the source's study, once the source's series is processed."""
    study = client.get(f"/series/{source}")["ParentStudy"]
    return [s for s in client.get(f"/studies/{study}")["Series"] if s != source]


class ContainerTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.folder = tempfile.mkdtemp(prefix="enhance-containers-")
        cls.addClassCleanup(shutil.rmtree, cls.folder, True)
        cls.daemon = DockerDaemon(tempfile.mkdtemp(prefix="enhance-docker-"),
                                  os.environ.get("ENHANCE_DOCKER_DATA_ROOT"))
        cls.addClassCleanup(cls.daemon.stop)
        cls.daemon.start()
        run([os.path.join(ROOT, "scripts", "make-debian-image.sh")], env=cls.daemon.env,
            timeout=900)
        # Build both images once; each deployment below reuses them.
        builder = Deployment(cls.daemon, cls.folder, postgresql=True)
        started = time.monotonic()
        builder.compose("build", "orthanc", timeout=3000)
        orthanc_seconds = time.monotonic() - started
        started = time.monotonic()
        builder.compose("build", "postgres", timeout=900)
        postgres_seconds = time.monotonic() - started
        sizes = {image: int(run(["docker", "image", "inspect", "--format", "{{.Size}}", image],
                                env=cls.daemon.env).stdout) / 1e6
                 for image in (IMAGE, POSTGRES_IMAGE, "debian:12")}
        print(f"\nimage build: {IMAGE} {orthanc_seconds:.0f} s, {POSTGRES_IMAGE} "
              f"{postgres_seconds:.0f} s\nimage size: {IMAGE} {sizes[IMAGE]:.0f} MB, "
              f"{POSTGRES_IMAGE} {sizes[POSTGRES_IMAGE]:.0f} MB (debian:12 "
              f"{sizes['debian:12']:.0f} MB)", flush=True)

    def docker_run(self, *args, check=False):
        return run(["docker", "run", "--rm", "--network", "none", *args], env=self.daemon.env,
                   check=check, timeout=120)

    @contextlib.contextmanager
    def deployment(self, postgresql=False):
        """A Deployment, taken down with its volumes at the end; its logs on failure."""
        deployment = Deployment(self.daemon, self.folder, postgresql)
        try:
            yield deployment
        except BaseException:
            sys.stderr.write(f"--- docker-compose logs ---\n{deployment.logs()}\n")
            raise
        finally:
            deployment.down()

    def test_a_missing_password_is_refused(self):
        with self.deployment() as deployment:
            env = {k: v for k, v in deployment.env.items() if k != "ENHANCE_ADMIN_PASSWORD"}
            result = deployment.compose("up", "-d", env=env, check=False)
            self.assertNotEqual(result.returncode, 0)
            self.assertIn("set ENHANCE_ADMIN_PASSWORD", result.stderr)
            self.assertEqual(run(["docker", "ps", "-aq", "--filter",
                                  f"label=com.docker.compose.project={deployment.project}"],
                                 env=self.daemon.env).stdout.strip(), "")
            # The image itself, started without compose: Orthanc would take an empty password.
            result = self.docker_run(IMAGE)
            self.assertEqual(result.returncode, 64, result.stderr)
            self.assertIn("ENHANCE_ADMIN_PASSWORD is not set", result.stderr)
            pg_file = os.path.join(deployment.config, "postgresql.json")
            result = self.docker_run("-e", "ENHANCE_ADMIN_PASSWORD=x", "-v",
                                     f"{pg_file}:/etc/orthanc-enhance/postgresql.json:ro", IMAGE)
            self.assertEqual(result.returncode, 64, result.stderr)
            self.assertIn("ENHANCE_POSTGRES_PASSWORD is not set", result.stderr)
            result = self.docker_run("-e", "POSTGRES_USER=orthanc", "-e", "POSTGRES_DB=orthanc",
                                     POSTGRES_IMAGE)
            self.assertEqual(result.returncode, 64, result.stderr)
            self.assertIn("POSTGRES_PASSWORD is not set", result.stderr)

    def test_b_image_has_no_build_tools_and_every_library_resolves(self):
        script = ("for t in cc c++ g++ cmake ninja; do command -v $t && exit 1; done; "
                  "test ! -e /usr/include/torch || exit 2; "
                  "ldd /usr/share/orthanc/plugins-enhance/libOrthancEnhance.so "
                  "/usr/share/orthanc/plugins/libOrthancPostgreSQLIndex.so | "
                  "grep 'not found' && exit 3; "
                  "ls /usr/share/orthanc-enhance/models")
        result = self.docker_run("--entrypoint", "/bin/sh", IMAGE, "-c", script)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        for model in ("ct-denoise", "mr-superres-x2", "mr2ct"):
            self.assertIn(model, result.stdout.split())

    def test_c_single_node_round_trip_restart_with_queued_jobs(self):
        with self.deployment() as deployment:
            deployment.compose("up", "-d")
            # Host networking only: no bridge, no network of the project's own.
            networks = run(["docker", "network", "ls", "--format", "{{.Name}} {{.Driver}}"],
                           env=self.daemon.env).stdout.split("\n")
            self.assertEqual(sorted(n for n in networks if n), ["host host", "none null"])
            deployment.wait_healthy()
            client = deployment.orthanc
            self.assertIn("ct-denoise", [m["Name"] for m in client.get("/enhance/models")])
            with self.assertRaises(HttpError) as refused:
                OrthancClient(client.url, "ENHANCE", client.dicom_port,
                              ("admin", "wrong")).get("/system")
            self.assertEqual(refused.exception.status, 401)

            source = self.store(client, ct_series(deployment.config, "first", 128, 12, 1))
            derived = self.wait_derived(client, source, slices=12)
            tags = client.get(f"/instances/{client.get(f'/series/{derived}')['Instances'][0]}"
                              "/simplified-tags")
            self.assertTrue(tags["ImageType"].startswith("DERIVED"), tags["ImageType"])

            # Three series of 200 slices of 512 x 512; ConcurrentJobs 2: one waits. The first
            # job still pending or running is paused: a paused job is saved with Orthanc's
            # jobs when the container stops and must come back, paused, after the restart
            # (pausing, unlike racing the restart against a running job, does not depend on
            # how busy the machine is).
            sources = [self.store(client, ct_series(deployment.config, f"q{k}", 512, 200,
                                                    10 + k)) for k in range(3)]

            def enhance_jobs():
                return [j for j in client.get("/jobs?expand") if j["Type"] == "EnhanceSeries"]

            def settled(job_id):
                state = client.get(f"/jobs/{job_id}")["State"]
                return state if state in ("Paused", "Success", "Failure") else None

            def pause_one():
                for job in enhance_jobs():
                    if job["State"] not in ("Pending", "Running"):
                        continue
                    try:
                        client.request("POST", f"/jobs/{job['ID']}/pause", b"")
                    except HttpError:
                        continue  # it ended in between
                    if wait_for(lambda: settled(job["ID"]), timeout=120, interval=0.1,
                                what=f"job {job['ID']} to pause") == "Paused":
                        return job["ID"]
                return None
            paused = wait_for(pause_one, timeout=300, interval=0.1,
                              what="a job of the three series to pause")
            deployment.compose("restart", "orthanc", timeout=300)
            restarted = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
            deployment.wait_healthy()
            self.assertEqual(client.get(f"/jobs/{paused}")["State"], "Paused",
                             "the paused job did not survive the restart")
            client.request("POST", f"/jobs/{paused}/resume", b"")
            job = wait_for(lambda: settled(paused), timeout=600, interval=1,
                           what="the resumed job to end")
            self.assertEqual(job, "Success", client.get(f"/jobs/{paused}"))
            self.assertGreaterEqual(client.get(f"/jobs/{paused}")["CompletionTime"], restarted)
            for s in sources:
                self.wait_derived(client, s, slices=200)
            self.assertEqual(derived_series_of(client, source), [derived], "data lost at restart")

    def test_d_postgresql_index(self):
        with self.deployment(postgresql=True) as deployment:
            deployment.compose("up", "-d")
            deployment.wait_healthy("postgres")
            deployment.wait_healthy("orthanc")
            client = deployment.orthanc
            self.assertIsNotNone(client.get("/system").get("DatabaseBackendPlugin"))
            source = self.store(client, ct_series(deployment.config, "pg", 128, 12, 3))
            derived = self.wait_derived(client, source, slices=12)
            count = run(["docker", "exec", "-e", f"PGPASSWORD={POSTGRES_PASSWORD}",
                         deployment.container("postgres"), "psql", "-h", "127.0.0.1", "-p",
                         str(deployment.pg_port), "-U", "orthanc", "-d", "orthanc", "-tAc",
                         "SELECT count(*) FROM Resources WHERE resourceType = 2"],
                        env=self.daemon.env).stdout.strip()
            self.assertEqual(count, "2", "the two series are not in PostgreSQL's index")
            deployment.compose("restart", "orthanc", timeout=300)
            deployment.wait_healthy("orthanc")
            self.assertEqual(derived_series_of(client, source), [derived])

    def store(self, client, files):
        import pydicom
        client.store_files(files)
        uid = pydicom.dcmread(files[0], stop_before_pixels=True).SeriesInstanceUID
        return wait_for(lambda: series_of_uid(client, uid), timeout=30, what="the stored series")

    def wait_derived(self, client, source, slices):
        def complete():
            found = derived_series_of(client, source)
            if len(found) > 1:
                raise AssertionError(f"source {source} has {len(found)} derived series")
            if len(found) == 1 and len(client.get(f"/series/{found[0]}")["Instances"]) == slices:
                return found[0]
            return None
        return wait_for(complete, timeout=300, interval=1, what="the derived series")


if __name__ == "__main__":
    unittest.main()
