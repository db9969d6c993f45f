#!/usr/bin/python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""Cluster throughput: the same work on 1, 2 and 3 Orthanc Enhance nodes sharing one
PostgreSQL index and one RabbitMQ queue, all on this machine's loopback (a throw-away
PostgreSQL and RabbitMQ per run, as in tests/integration/test_cluster.py).

SERIES CT phantom series of SLICES slices (ROWS x ROWS) are C-STOREd round-robin to the
nodes by SENDERS storescu processes at once, so that the sending is not the bound. Printed per node count: the work's wall time (first instance
sent -> last series finished, from the claims table's clock), series and slices per
minute, each series' latency (its last instance stored -> its claim finished; includes
Orthanc's StableAge), how the series were shared between the nodes, and the speed-up
over one node. Every node gets cores/nodes LibTorch threads, so that the nodes share
this machine's cores instead of oversubscribing them: on one machine the bound is its
cores, and more nodes can only add overhead; on separate machines each node brings its
own cores.

Then the claim itself: pgbench runs the claim and the finish statements of
plugin/ClaimStore.cpp (same SQL) from 1 and 8 concurrent clients for 10 s each against
a throw-away PostgreSQL, and prints claims per second and the latency of one claim and
finish: what the database costs per series, and where it would bound a cluster.

    tests/benchmark/cluster_benchmark.py [--build build] [--model ct-denoise]
        [--nodes 1,2,3] [--series 12] [--slices 16] [--rows 256] [--stable-age 1]
        [--senders 4] [--claims-only]
"""
import argparse
import collections
import concurrent.futures
import os
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))


def run(args, nodes_count, phantoms):
    from cluster_harness import POSTGRESQL_INDEX, PostgresServer, RabbitServer
    from orthanc_harness import OrthancServer, series_of_uid, wait_for
    import pydicom

    threads = max(1, (os.cpu_count() or 1) // nodes_count)
    with tempfile.TemporaryDirectory(prefix="enhance-cluster-bench-") as tmp, \
            PostgresServer() as pg, RabbitServer() as mq:
        nodes = []
        try:
            for i in range(nodes_count):
                node = OrthancServer(name=f"NODE{i}", stable_age=args.stable_age, extra_config={
                    "DatabaseServerIdentifier": f"node{i}",
                    "StorageDirectory": os.path.join(tmp, "storage"),
                    "PostgreSQL": pg.orthanc_config(),
                    "Plugins": [POSTGRESQL_INDEX, os.environ["ENHANCE_PLUGIN"]],
                    "Enhance": {
                        "ModelsDirectories": [os.path.join(ROOT, "models")],
                        "Threads": threads, "EarlyStartMB": 0,
                        "Rules": [{"Name": "ct", "Modalities": ["CT"], "Task": "denoise",
                                   "Model": args.model}],
                        "Cluster": {"Enable": True, "Broker": {"Port": mq.port}}}})
                nodes.append(node)
                node.start(timeout=120)
            for node in nodes:
                wait_for(lambda: node.get("/enhance/system")["Cluster"]["Broker"]["Consuming"], 60,
                         what="consuming")
            start = time.time()
            sent = {}

            def send(i):
                node = nodes[i % nodes_count]
                node.store_files(phantoms[i])
                uid = pydicom.dcmread(phantoms[i][0], stop_before_pixels=True).SeriesInstanceUID
                sent[series_of_uid(node, uid)] = time.time()
            with concurrent.futures.ThreadPoolExecutor(args.senders) as pool:
                list(pool.map(send, range(len(phantoms))))

            def rows():
                return pg.sql("SELECT series_id, state, owner, EXTRACT(EPOCH FROM updated) "
                              "FROM enhance_series_claims")
            wait_for(lambda: sum(r[1] == "done" for r in rows()) == len(phantoms), 3600, interval=1,
                     what="every series processed")
            finished = {r[0]: float(r[3]) for r in rows()}
            owners = collections.Counter(r[2] for r in rows())
            failed = [r for r in rows() if r[1] != "done"]
            if failed:
                raise RuntimeError(f"not done: {failed}")
            wall = max(finished.values()) - start
            latencies = [finished[s] - sent[s] for s in sent]
            return wall, latencies, owners, threads
        finally:
            for node in nodes:
                node.cleanup()


# The statements of plugin/ClaimStore.cpp (kClaim, kFinish) on random series IDs.
CLAIM_SCRIPT = """\\set s random(1, 1000000)
INSERT INTO enhance_series_claims AS c (series_id, state, owner, lease_until, claimed_update, attempts, detail, updated) VALUES ('bench-' || :s, 'claimed', 'bench-' || :client_id, now() + make_interval(secs => 30), '20261203T000000', 1, '', now()) ON CONFLICT (series_id) DO UPDATE SET state = 'claimed', owner = EXCLUDED.owner, lease_until = EXCLUDED.lease_until, claimed_update = EXCLUDED.claimed_update, attempts = c.attempts + 1, detail = '', updated = now() WHERE c.state <> 'claimed' OR c.lease_until < now() OR c.owner = EXCLUDED.owner RETURNING attempts;
UPDATE enhance_series_claims SET state = 'done', done_update = claimed_update, detail = '', lease_until = now(), updated = now() WHERE series_id = 'bench-' || :s AND owner = 'bench-' || :client_id AND state = 'claimed';
"""

CREATE_TABLE = """CREATE TABLE IF NOT EXISTS enhance_series_claims (series_id TEXT PRIMARY KEY,
state TEXT NOT NULL, owner TEXT NOT NULL, lease_until TIMESTAMPTZ NOT NULL,
claimed_update TEXT NOT NULL, done_update TEXT NOT NULL DEFAULT '',
attempts INTEGER NOT NULL DEFAULT 0, detail TEXT NOT NULL DEFAULT '',
updated TIMESTAMPTZ NOT NULL DEFAULT now())"""


def claims_benchmark():
    import re
    import subprocess
    from cluster_harness import PostgresServer
    with PostgresServer() as pg, tempfile.TemporaryDirectory(prefix="enhance-pgbench-") as tmp:
        pg.sql(CREATE_TABLE)
        script = os.path.join(tmp, "claim.sql")
        with open(script, "w") as f:
            f.write(CLAIM_SCRIPT)
        print("\n| pgbench clients | claims + finishes per second | latency of one claim and finish (ms) |")
        print("|---|---|---|")
        for clients in (1, 8):
            result = subprocess.run(
                ["pgbench", "-h", "127.0.0.1", "-p", str(pg.port), "-U", pg.user, "-n", "-f", script,
                 "-c", str(clients), "-j", str(min(clients, 2)), "-T", "10", pg.database],
                capture_output=True, text=True, env=dict(os.environ, PGPASSWORD=pg.password), timeout=120)
            if result.returncode != 0:
                raise RuntimeError(result.stderr)
            tps = float(re.search(r"tps = ([0-9.]+)", result.stdout).group(1))
            latency = float(re.search(r"latency average = ([0-9.]+) ms", result.stdout).group(1))
            print(f"| {clients} | {tps:.0f} | {latency:.2f} |", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--build", default=os.path.join(ROOT, "build"))
    parser.add_argument("--model", default="ct-denoise")
    parser.add_argument("--nodes", default="1,2,3")
    parser.add_argument("--series", type=int, default=12)
    parser.add_argument("--slices", type=int, default=16)
    parser.add_argument("--rows", type=int, default=256)
    parser.add_argument("--stable-age", type=int, default=1)
    parser.add_argument("--senders", type=int, default=4, help="storescu processes at once")
    parser.add_argument("--claims-only", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("ENHANCE_PLUGIN", os.path.join(args.build, "plugin", "libOrthancEnhance.so"))
    os.environ.setdefault("ENHANCE_PHANTOM", os.path.join(args.build, "tools", "enhance-make-phantom"))
    from orthanc_harness import make_phantom
    if args.claims_only:
        claims_benchmark()
        return

    with tempfile.TemporaryDirectory(prefix="enhance-cluster-phantoms-") as tmp:
        phantoms = [make_phantom(os.path.join(tmp, f"s{i}"), rows=args.rows, columns=args.rows,
                                 slices=args.slices, seed=500 + i) for i in range(args.series)]
        print(f"{args.series} series of {args.slices} slices {args.rows}x{args.rows}, model "
              f"{args.model}, StableAge {args.stable_age} s, {os.cpu_count()} cores\n")
        print("| nodes | LibTorch threads per node | wall time (s) | series/min | slices/s "
              "| latency per series, median (min-max) s | series per node | speed-up |")
        print("|---|---|---|---|---|---|---|---|")
        base = None
        for count in [int(n) for n in args.nodes.split(",")]:
            wall, latencies, owners, threads = run(args, count, phantoms)
            base = base or wall
            shares = ", ".join(str(owners[f"node{i}"]) for i in range(count))
            print(f"| {count} | {threads} | {wall:.1f} | {60 * args.series / wall:.1f} "
                  f"| {args.series * args.slices / wall:.1f} "
                  f"| {statistics.median(latencies):.1f} ({min(latencies):.1f}-{max(latencies):.1f}) "
                  f"| {shares} | {base / wall:.2f}x |", flush=True)
    claims_benchmark()


if __name__ == "__main__":
    main()
