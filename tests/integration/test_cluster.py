# SPDX-License-Identifier: GPL-3.0-or-later
"""Cluster mode with real components on loopback: a throw-away PostgreSQL (initdb), a
RabbitMQ node of its own, and three Orthanc nodes with the plugin on one PostgreSQL index
and one storage folder (cluster_harness.py). Everything is stopped by the test.

- 30 series sent by C-STORE spread over the three nodes, some split across two nodes:
  each gets exactly one complete derived series, made by one job on one node.
- kill -9 of the node storing a derived series: another node takes the series over once
  the lease expires and completes the same derived series; the killed node, restarted,
  does not process it again.
- The broker stopped mid-run (series sent meanwhile are kept and published when it is
  back) and started again: every series ends with one complete derived series.
- A node stopped gracefully while it processes a series: its claim is released at once and
  another node completes the series.
- Messages no node can handle (not JSON, no series) go to the dead-letter queue, counted
  in GET /enhance/system and the Prometheus metrics.
- PostgreSQL refusing new connections for a few seconds, the claims' connections cut, while
  a series is processed: the nodes reconnect and finish. (Orthanc's own index connections
  stay up: how Orthanc's PostgreSQL plugin rides out a restart of the server is its own.)
"""
import os
import re
import shutil
import sys
import tempfile
import time
import unittest

import pydicom

from cluster_harness import POSTGRESQL_INDEX, PostgresServer, RabbitServer
from orthanc_harness import OrthancServer, make_phantom, series_of_uid, wait_for

PLUGIN = os.environ.get("ENHANCE_PLUGIN", "")
STORE_FAULT = os.environ.get("ENHANCE_STORE_FAULT", "")
LEASE = 6
STABLE_AGE = 2


class ClusterTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="enhance-cluster-")
        cls.addClassCleanup(shutil.rmtree, cls.tmp, True)
        cls.pg = PostgresServer()
        cls.addClassCleanup(cls.pg.cleanup)
        cls.pg.start()
        cls.pg.create_database()
        cls.mq = RabbitServer()
        cls.addClassCleanup(cls.mq.cleanup)
        cls.mq.start()
        cls.storage = os.path.join(cls.tmp, "storage")
        cls.nodes = []
        for i in range(3):
            node = OrthancServer(name=f"NODE{i}", stable_age=STABLE_AGE, extra_config={
                "DatabaseServerIdentifier": f"node{i}",
                "StorageDirectory": cls.storage,
                "PostgreSQL": cls.pg.orthanc_config(),
                "Plugins": [POSTGRESQL_INDEX, PLUGIN, STORE_FAULT],
                "JobsHistorySize": 500,
                "Enhance": {
                    "Rules": [{"Name": "ct", "Modalities": ["CT"], "Task": "denoise",
                               "Model": "classical-gaussian"}],
                    "Cluster": {"Enable": True, "Broker": {"Port": cls.mq.port},
                                "LeaseSeconds": LEASE}}})
            cls.addClassCleanup(node.cleanup)
            node.start()  # one after the other: the first creates the index's tables
            cls.nodes.append(node)
        for node in cls.nodes:
            wait_for(lambda: node.get("/enhance/system")["Cluster"]["Broker"]["Consuming"], 60,
                     what=f"{node.aet} consuming from the broker")
        cls.seed = 100

    def run(self, result=None):
        """Prints the nodes' and the broker's logs when a test fails."""
        failures = len(result.failures) + len(result.errors) if result else 0
        outcome = super().run(result)
        if result and len(result.failures) + len(result.errors) > failures:
            for node in self.nodes:
                sys.stderr.write(f"--- log of Orthanc {node.aet} ---\n{node.failure_report()[-3000:]}\n")
                lines = [line for line in node.log().splitlines() if "Enhance: cluster" in line]
                sys.stderr.write(f"--- cluster lines of {node.aet} ---\n" + "\n".join(lines[-40:]) + "\n")
                if node.process is not None:
                    try:
                        status = node.get("/enhance/system")["Cluster"]
                        sys.stderr.write(f"--- cluster status of {node.aet} ---\n{status}\n")
                    except Exception as e:  # the report must not hide the failure
                        sys.stderr.write(f"--- no cluster status from {node.aet}: {e}\n")
            sys.stderr.write(f"--- RabbitMQ ---\n{self.mq.log()}\n")
        return outcome

    # -- helpers ---------------------------------------------------------------
    def phantom(self, slices, rows=64):
        ClusterTest.seed += 1
        folder = os.path.join(self.tmp, f"series{self.seed}")
        files = make_phantom(folder, rows=rows, columns=rows, slices=slices, seed=self.seed)
        uid = pydicom.dcmread(files[0], stop_before_pixels=True).SeriesInstanceUID
        return files, uid

    def claims(self):
        return {row[0]: {"state": row[1], "owner": row[2], "attempts": int(row[3])}
                for row in self.pg.sql("SELECT series_id, state, owner, attempts FROM enhance_series_claims")}

    def live_node(self):
        return next(n for n in self.nodes if n.process is not None)

    def derived_of(self, source):
        node = self.live_node()
        study = node.get(f"/series/{source}")["ParentStudy"]
        return [s for s in node.get(f"/studies/{study}")["Series"] if s != source]

    def wait_all_done(self, sources, timeout):
        def done():
            claims = self.claims()
            return all(claims.get(s, {}).get("state") == "done" for s in sources)
        wait_for(done, timeout, interval=1, what=f"{len(sources)} series processed by the cluster")

    def assert_one_complete_derived_series(self, source, slices):
        node = self.live_node()
        derived = self.derived_of(source)
        self.assertEqual(len(derived), 1, f"series {source}: derived series {derived}")
        instances = node.get(f"/series/{derived[0]}")["Instances"]
        self.assertEqual(len(instances), slices, f"series {source}: incomplete derived series")
        uids = {node.get(f"/instances/{i}/simplified-tags")["SOPInstanceUID"] for i in instances}
        self.assertEqual(len(uids), slices, f"series {source}: duplicate instances")
        tags = node.get(f"/instances/{instances[0]}/simplified-tags")
        self.assertTrue(tags["ImageType"].startswith("DERIVED"))
        return derived[0], sorted(instances)

    def pipeline_jobs(self, source):
        """Jobs, on every running node, that ran the pipeline on `source` (not those handed
        back to the cluster after a restart)."""
        jobs = []
        for node in self.nodes:
            if node.process is None:
                continue
            for job in node.get("/jobs?expand"):
                content = job.get("Content", {})
                if (job["Type"] == "EnhanceSeries" and content.get("SourceSeries") == source
                        and not content.get("HandedToCluster")):
                    jobs.append((node.aet, job))
        return jobs

    def dead_letters(self):
        """The bodies of the messages in the dead-letter queue, which stay there (read without
        acknowledgement, they go back when the connection closes)."""
        import pika
        connection = pika.BlockingConnection(pika.ConnectionParameters(host="127.0.0.1", port=self.mq.port))
        try:
            channel = connection.channel()
            bodies = []
            while True:
                method, _, body = channel.basic_get("orthanc-enhance.series.dead", auto_ack=False)
                if method is None:
                    return bodies
                bodies.append(body)
        finally:
            connection.close()

    def set_store_delay(self, milliseconds):
        mode = {"Mode": "delay", "DelayMs": milliseconds} if milliseconds else {"Mode": "off"}
        for node in self.nodes:
            if node.process is not None:
                node.request("PUT", "/enhance-test/store-fault", mode)

    # -- tests -----------------------------------------------------------------
    def test_1_thirty_series_over_three_nodes_each_enhanced_once(self):
        slices = 4
        sources = []
        for i in range(30):
            files, uid = self.phantom(slices)
            first = self.nodes[i % 3]
            if i % 5 == 4:  # split: half of the instances to one node, half to the next
                first.store_files(files[:2])
                self.nodes[(i + 1) % 3].store_files(files[2:])
            else:
                first.store_files(files)
            sources.append(series_of_uid(first, uid))
        self.wait_all_done(sources, timeout=240)
        owners = set()
        claims = self.claims()
        for source in sources:
            self.assert_one_complete_derived_series(source, slices)
            self.assertEqual(claims[source]["attempts"], 1, claims[source])
            owners.add(claims[source]["owner"])
        self.assertGreaterEqual(len(owners), 2, "one node did all the work")
        # Exactly one pipeline job per series over the whole cluster (the split series'
        # second announcement and every duplicate were acknowledged without a job).
        wait_for(lambda: all(j["State"] == "Success" for s in sources for _, j in self.pipeline_jobs(s)),
                 60, what="the jobs to end")
        for source in sources:
            self.assertEqual(len(self.pipeline_jobs(source)), 1, source)
        for node in self.nodes:
            cluster = node.get("/enhance/system")["Cluster"]
            self.assertTrue(cluster["Broker"]["Consuming"], cluster)
            self.assertEqual(cluster["Broker"]["DeadLetters"], 0, cluster)
            self.assertEqual(cluster["Unpublished"], 0, cluster)
        wait_for(lambda: self.nodes[0].get("/enhance/system")["Cluster"]["Broker"]["QueueDepth"] == 0,
                 30, what="an empty queue")
        metrics = self.nodes[0].request("GET", "/tools/metrics-prometheus").decode()
        self.assertIn("orthanc_enhance_cluster_queue_depth", metrics)

    def test_2_a_killed_node_series_is_completed_by_another_node(self):
        slices = 16
        self.set_store_delay(250)
        try:
            files, uid = self.phantom(slices, rows=96)
            self.nodes[0].store_files(files)
            source = series_of_uid(self.nodes[0], uid)

            def half_stored():
                for s in self.derived_of(source):
                    if 0 < len(self.nodes[0].get(f"/series/{s}")["Instances"]) < slices // 2:
                        claim = self.claims().get(source)
                        return claim and claim["state"] == "claimed" and claim
                return None
            claim = wait_for(half_stored, 120, interval=0.1, what="a half-stored derived series")
            victim = next(n for n in self.nodes if f"node{self.nodes.index(n)}" == claim["owner"])
            victim.kill()
            self.wait_all_done([source], timeout=120)
        finally:
            self.set_store_delay(0)
        after = self.claims()[source]
        self.assertNotEqual(after["owner"], claim["owner"])
        self.assertEqual(after["attempts"], 2, after)
        derived, instances = self.assert_one_complete_derived_series(source, slices)
        taker = self.nodes[int(after["owner"][-1])]
        self.assertIn(f"claimed series {source} (attempt 2: the lease of {claim['owner']} expired",
                      taker.log())

        # The killed node comes back: it does not process the series again.
        victim.start()
        wait_for(lambda: victim.get("/enhance/system")["Cluster"]["Broker"]["Consuming"], 60,
                 what="the restarted node consuming")
        time.sleep(STABLE_AGE + 3)
        ran_here = [j for aet, j in self.pipeline_jobs(source) if aet == victim.aet]
        self.assertEqual(ran_here, [], "the restarted node processed the series again")
        self.assertEqual(self.derived_of(source), [derived])
        self.assertEqual(sorted(self.live_node().get(f"/series/{derived}")["Instances"]), instances)
        self.assertEqual(self.claims()[source]["attempts"], 2)

    def test_3_broker_restarted_mid_run(self):
        slices = 8
        self.set_store_delay(100)
        try:
            sources = []
            for i in range(6):
                files, uid = self.phantom(slices)
                self.nodes[i % 3].store_files(files)
                sources.append(series_of_uid(self.nodes[i % 3], uid))
            wait_for(lambda: any(c["state"] == "claimed" for c in self.claims().values()), 60,
                     interval=0.2, what="a series being processed")
            self.mq.stop()
            # Stable while the broker is down: kept by the node and published later.
            files, uid = self.phantom(slices)
            self.nodes[1].store_files(files)
            sources.append(series_of_uid(self.nodes[1], uid))
            wait_for(lambda: self.nodes[1].get("/enhance/system")["Cluster"]["Unpublished"] >= 1, 60,
                     what="the node keeping a series it cannot publish")
            cluster = self.nodes[1].get("/enhance/system")["Cluster"]
            self.assertFalse(cluster["Broker"]["Consuming"])
            self.assertTrue(cluster["Broker"]["LastError"])
            self.mq.start()
            self.wait_all_done(sources, timeout=240)
        finally:
            self.set_store_delay(0)
        for source in sources:
            self.assert_one_complete_derived_series(source, slices)
        wait_for(lambda: self.nodes[1].get("/enhance/system")["Cluster"]["Unpublished"] == 0, 30,
                 what="nothing left unpublished")

    def test_4_postgresql_refusing_connections_for_a_while(self):
        """The database refuses new connections and the claims' connections are cut (a
        restarted pooler, max_connections reached) while a series is processed: the node
        reconnects, renews and records the outcome once it may connect again."""
        slices = 8
        self.set_store_delay(400)
        try:
            files, uid = self.phantom(slices)
            self.nodes[2].store_files(files)
            source = series_of_uid(self.nodes[2], uid)
            wait_for(lambda: self.claims().get(source, {}).get("state") == "claimed", 60,
                     interval=0.2, what="the series being processed")
            self.pg.sql(f"ALTER DATABASE {self.pg.database} ALLOW_CONNECTIONS false", database="postgres")
            try:
                self.pg.sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                            "WHERE application_name = 'orthanc-enhance'", database="postgres")
                time.sleep(4)
                refused = [n for n in self.nodes if n.process is not None and
                           not n.get("/enhance/system")["Cluster"]["Database"]["Connected"]]
                self.assertTrue(refused, "no node noticed the database refusing connections")
            finally:
                self.pg.sql(f"ALTER DATABASE {self.pg.database} ALLOW_CONNECTIONS true", database="postgres")
            self.wait_all_done([source], timeout=120)
        finally:
            self.set_store_delay(0)
        self.assert_one_complete_derived_series(source, slices)
        self.assertEqual(len(self.pipeline_jobs(source)), 1)

    def test_5_a_stopped_node_gives_its_series_back_at_once(self):
        """docker stop or a service restart: the node releases its claim as it stops, and
        another node takes the series without waiting for the lease."""
        slices = 16
        self.set_store_delay(250)
        try:
            files, uid = self.phantom(slices, rows=96)
            self.nodes[1].store_files(files)
            source = series_of_uid(self.nodes[1], uid)
            claim = wait_for(lambda: (c := self.claims().get(source)) and c["state"] == "claimed" and c,
                             60, interval=0.1, what="the series being processed")
            owner = self.nodes[int(claim["owner"][-1])]
            stopped_at = time.monotonic()
            owner.stop()
            taken = wait_for(lambda: (c := self.claims().get(source)) and c["attempts"] == 2 and c,
                             60, interval=0.1, what="another node claiming the series")
            self.assertNotEqual(taken["owner"], claim["owner"])
            self.assertLess(time.monotonic() - stopped_at, LEASE + 5)
            self.wait_all_done([source], timeout=120)
            self.assertIn("released it", self.nodes[int(taken["owner"][-1])].log())
        finally:
            self.set_store_delay(0)
        self.assert_one_complete_derived_series(source, slices)
        owner.start()
        wait_for(lambda: owner.get("/enhance/system")["Cluster"]["Broker"]["Consuming"], 60,
                 what="the restarted node consuming")

    def test_6_a_message_no_node_can_handle_goes_to_the_dead_letters(self):
        import pika
        # Killed, stopped and restarted nodes and a restarted broker in the tests before
        # must not have sent any series' message to the dead letters.
        self.assertEqual(self.dead_letters(), [])
        connection = pika.BlockingConnection(pika.ConnectionParameters(host="127.0.0.1", port=self.mq.port))
        try:
            channel = connection.channel()
            for body in (b"not JSON", b'{"Series": 3}'):
                channel.basic_publish(exchange="", routing_key="orthanc-enhance.series", body=body,
                                      properties=pika.BasicProperties(delivery_mode=2))
        finally:
            connection.close()
        wait_for(lambda: self.nodes[0].get("/enhance/system")["Cluster"]["Broker"]["DeadLetters"] == 2, 60,
                 what="two dead letters")
        logs = "".join(node.log() for node in self.nodes)
        self.assertIn("a message that names no series goes to the dead letters "
                      "(orthanc-enhance.series.dead): not JSON", logs)
        wait_for(lambda: re.search(r"^orthanc_enhance_cluster_dead_letters 2(\.0*)?\b",
                                   self.nodes[0].request("GET", "/tools/metrics-prometheus").decode(),
                                   re.M), 30, what="the dead letters in the metrics")


if __name__ == "__main__":
    unittest.main()
