# SPDX-License-Identifier: GPL-3.0-or-later
"""A real PostgreSQL and a real RabbitMQ for cluster tests, each in a temporary folder on
free loopback ports, started and always stopped by the test (use them as context
managers). Debian's packages: postgresql-15 and rabbitmq-server.

PostgreSQL refuses to run as root: when the test runs as root, the server runs as the
`postgres` account the package creates, in a folder given to it.
"""
import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time

from orthanc_harness import free_port

PG_BIN = "/usr/lib/postgresql/15/bin"
RABBITMQ_SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"
POSTGRESQL_INDEX = "/usr/share/orthanc/plugins/libOrthancPostgreSQLIndex.so"


def port_open(port):
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def wait_port(port, process, timeout, what, log):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}:\n{log()}")
        if port_open(port):
            return
        time.sleep(0.2)
    raise RuntimeError(f"{what} did not listen on port {port} within {timeout} s:\n{log()}")


def stop_group(process, sig, timeout):
    if process is None or process.poll() is not None:
        return
    try:
        os.killpg(process.pid, sig)
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    except ProcessLookupError:
        pass


class ServerProcess:
    """What the servers below share: a log, and use as a context manager (started on
    entry, always stopped and its folder removed on exit)."""
    workdir = None
    log_path = None

    def setup(self):
        return self.start()

    def log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()[-4000:]
        except OSError:
            return ""

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self):
        try:
            return self.setup()
        except BaseException:
            self.cleanup()
            raise

    def __exit__(self, *exc):
        self.cleanup()
        return False


class PostgresServer(ServerProcess):
    """A throw-away PostgreSQL cluster (initdb) with a password-protected user and database."""

    def __init__(self, user="orthanc", password="orthanc-test", database="orthanc"):
        self.user, self.password, self.database = user, password, database
        self.port = free_port()
        self.workdir = tempfile.mkdtemp(prefix="enhance-pg-")
        self.data = os.path.join(self.workdir, "data")
        self.log_path = os.path.join(self.workdir, "postgres.log")
        self.process = None
        self.as_postgres = os.geteuid() == 0
        if self.as_postgres:
            account = pwd.getpwnam("postgres")
            os.chown(self.workdir, account.pw_uid, account.pw_gid)
        pwfile = os.path.join(self.workdir, "pw")
        with open(pwfile, "w") as f:
            f.write(password + "\n")
        if self.as_postgres:
            os.chown(pwfile, account.pw_uid, account.pw_gid)
        self._run([f"{PG_BIN}/initdb", "-D", self.data, "-U", user, "--pwfile", pwfile,
                   "--auth-host=scram-sha-256", "--auth-local=trust", "-E", "UTF8"])

    def _command(self, argv):
        return ["runuser", "-u", "postgres", "--", *argv] if self.as_postgres else argv

    def _run(self, argv):
        result = subprocess.run(self._command(argv), capture_output=True, text=True, timeout=120,
                                cwd=self.workdir)
        if result.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed: {result.stdout}\n{result.stderr}")
        return result.stdout

    def start(self):
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            self._command([f"{PG_BIN}/postgres", "-D", self.data, "-p", str(self.port),
                           "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={self.workdir}",
                           "-c", "max_connections=100", "-c", "fsync=off"]),
            stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir, start_new_session=True)
        log.close()
        wait_port(self.port, self.process, 60, "PostgreSQL", self.log)
        for _ in range(50):  # listening precedes accepting connections by a moment
            if subprocess.run(self._command([f"{PG_BIN}/pg_isready", "-h", "127.0.0.1", "-p", str(self.port)]),
                              capture_output=True).returncode == 0:
                break
            time.sleep(0.2)
        return self

    def create_database(self):
        self.sql(f"CREATE DATABASE {self.database}", database="postgres")

    def sql(self, statement, database=None):
        """Runs SQL through psql over TCP with the password; returns the rows as tuples."""
        env = dict(os.environ, PGPASSWORD=self.password)
        result = subprocess.run(
            ["psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user, "-d", database or self.database,
             "-At", "-F", "\t", "-v", "ON_ERROR_STOP=1", "-c", statement],
            capture_output=True, text=True, timeout=60, env=env)
        if result.returncode != 0:
            raise RuntimeError(f"psql failed: {result.stderr}")
        return [tuple(line.split("\t")) for line in result.stdout.splitlines() if line]

    def stop(self):
        stop_group(self.process, signal.SIGINT, 30)  # fast shutdown
        self.process = None

    def orthanc_config(self):
        """The PostgreSQL section for Orthanc's index plugin (several writers: Lock false)."""
        return {"EnableIndex": True, "EnableStorage": False, "Host": "127.0.0.1", "Port": self.port,
                "Database": self.database, "Username": self.user, "Password": self.password,
                "Lock": False, "MaximumConnectionRetries": 30, "ConnectionRetryInterval": 1}

    def setup(self):
        self.start()
        self.create_database()
        return self


class RabbitServer(ServerProcess):
    """A RabbitMQ node of its own (node name, ports, data and log folders, Erlang cookie),
    listening on loopback only. Its data survive stop() and start() (durable queues)."""

    def __init__(self):
        self.port = free_port()
        self.dist_port = free_port()
        self.epmd_port = free_port()
        self.workdir = tempfile.mkdtemp(prefix="enhance-rabbitmq-")
        self.log_path = os.path.join(self.workdir, "rabbitmq.log")
        self.name = f"enhance{self.port}@localhost"
        with open(os.path.join(self.workdir, "rabbitmq.conf"), "w") as f:
            f.write(f"listeners.tcp.default = 127.0.0.1:{self.port}\n"
                    "loopback_users = none\n")
        with open(os.path.join(self.workdir, "enabled_plugins"), "w") as f:
            f.write("[].\n")
        self.env = dict(
            os.environ,
            HOME=self.workdir,
            RABBITMQ_NODENAME=self.name,
            RABBITMQ_NODE_IP_ADDRESS="127.0.0.1",
            RABBITMQ_NODE_PORT=str(self.port),
            RABBITMQ_DIST_PORT=str(self.dist_port),
            ERL_EPMD_PORT=str(self.epmd_port),
            ERL_EPMD_ADDRESS="127.0.0.1",
            RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}",
            RABBITMQ_MNESIA_BASE=os.path.join(self.workdir, "mnesia"),
            RABBITMQ_LOG_BASE=os.path.join(self.workdir, "log"),
            RABBITMQ_CONFIG_FILE=os.path.join(self.workdir, "rabbitmq"),
            RABBITMQ_ENABLED_PLUGINS_FILE=os.path.join(self.workdir, "enabled_plugins"),
            RABBITMQ_PID_FILE=os.path.join(self.workdir, "rabbitmq.pid"),
        )
        self.process = None

    def start(self, timeout=90):
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen([RABBITMQ_SERVER], env=self.env, stdout=log,
                                        stderr=subprocess.STDOUT, cwd=self.workdir,
                                        start_new_session=True)
        log.close()
        wait_port(self.port, self.process, timeout, "RabbitMQ", self.log)
        return self

    def stop(self):
        stop_group(self.process, signal.SIGTERM, 60)
        self.process = None

    def kill(self):
        stop_group(self.process, signal.SIGKILL, 10)
        self.process = None

    def cleanup(self):
        self.stop()
        # The Erlang port mapper the node started detaches from it: end it too.
        subprocess.run(["epmd", "-kill"], env=self.env, capture_output=True, timeout=30)
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    cmdline = f.read()
                with open(f"/proc/{pid}/environ", "rb") as f:
                    environ = f.read()
            except OSError:
                continue
            if b"epmd" in cmdline and f"ERL_EPMD_PORT={self.epmd_port}".encode() in environ:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)
        super().cleanup()
