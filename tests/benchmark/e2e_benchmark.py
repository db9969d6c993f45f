#!/usr/bin/python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""End-to-end benchmark in a real Orthanc on loopback.

Single series: series of 512x512 CT phantom slices are C-STOREd with storescu; for each,
the time from the last instance stored to the derived series stored (and to forwarded,
with --forward, to a second Orthanc acting as the PACS), split at the moment Orthanc
declared the series stable (the job's creation time), the job's stage timings, the
ratios of end-to-end and of stable-to-stored time to inference time, and Orthanc's
resident memory: idle with the models loaded, and peak (VmHWM).

Concurrency: N series are sent at once by N storescu processes; total throughput,
per-series latency (last instance of the series stored -> its derived series stored)
and peak memory.

Prints Markdown tables (medians, min-max).

    tests/benchmark/e2e_benchmark.py [--build build] [--model ct-denoise]
        [--slices 64,256,512] [--repeats 3] [--concurrency 1,4,16]
        [--concurrent-slices 32] [--forward] [--stable-age 1] [--early-start-mb 0,512]
        [--storage-cache-mb N]
"""
import argparse
import datetime
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))

from medians import summary  # noqa: E402 (this folder, on the path as the script's own)


def rss_mib(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def job_created(job):
    """When Orthanc created the job, in seconds since the epoch: Orthanc reports it in UTC
    with microseconds. The plugin submits the job within milliseconds of Orthanc's
    StableSeries event, so this is when the series became stable."""
    created = datetime.datetime.strptime(job["CreationTime"], "%Y%m%dT%H%M%S.%f")
    return created.replace(tzinfo=datetime.timezone.utc).timestamp()


# The job's progress (percent) at the end of each stage: fetch and decode run together
# up to 19% (SeriesEnhancer's shares scaled by the pipeline's 95%), inference up to 85.5%,
# encoding and storing up to 95%, forwarding up to 100%.
PHASES = [(19, "fetch + decode"), (85.5, "inference"), (95, "encode + store"),
          (101, "forward")]


class MemorySampler:
    """Samples Orthanc's resident memory and the job's stage every 0.1 s; keeps the peak
    of each stage (before the job runs: "receive")."""

    def __init__(self, orthanc):
        self.orthanc = orthanc
        self.peaks = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def phase(self):
        jobs = series_jobs(self.orthanc)
        running = [j for j in jobs if j["State"] == "Running"]
        if not running:
            return "receive" if not jobs else None
        progress = running[0].get("Progress", 0)
        return next(name for limit, name in PHASES if progress < limit)

    def run(self):
        while not self.stop.is_set():
            try:
                phase = self.phase()
                rss = rss_mib(self.orthanc.process.pid, "VmRSS")
                if phase:
                    self.peaks[phase] = max(self.peaks.get(phase, 0), rss)
            except Exception:  # the server may be stopping
                pass
            time.sleep(0.1)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()


def series_jobs(orthanc):
    """Every EnhanceSeries job, expanded."""
    return [j for j in orthanc.get("/jobs?expand") if j.get("Type") == "EnhanceSeries"]


def run_single(args, tmp, slices, repeat, config, pacs_factory):
    from orthanc_harness import OrthancServer, make_phantom, wait_for
    folder = os.path.join(tmp, f"{slices}-{repeat}")
    files = make_phantom(folder, rows=512, columns=512, slices=slices, seed=500 + repeat)
    pacs = pacs_factory() if args.forward else None
    try:
        if pacs:
            pacs.start()
            config = dict(config)
            config["DicomModalities"] = {"PACS": ["PACS", "127.0.0.1", pacs.dicom_port]}
        with OrthancServer(extra_config=config, stable_age=args.stable_age) as o:
            idle = rss_mib(o.process.pid, "VmRSS")
            marks = {}

            def finished():
                for job in series_jobs(o):
                    content = job.get("Content", {})
                    if content.get("DerivedSeries") and "derived" not in marks:
                        marks["derived"] = time.time()
                    if job["State"] in ("Success", "Failure"):
                        return job
                return None
            with MemorySampler(o) as sampler:
                o.store_files(files)
                stored = time.time()
                job = wait_for(finished, timeout=3600, interval=0.05, what="the job")
            done = time.time()
            if job["State"] != "Success":
                raise RuntimeError(job["Content"].get("ErrorMessage"))
            marks.setdefault("derived", done)
            if pacs:
                count = len(pacs.get("/instances"))
                if count != slices:
                    raise RuntimeError(f"the PACS received {count} of {slices} instances")
            stable = job_created(job)
            return {
                "derived": marks["derived"] - stored,
                "stable": stable - stored,
                "after_stable": marks["derived"] - stable,
                "forwarded": done - stored if pacs else None,
                "timings": job["Content"]["Timings"],
                "early": job["Content"].get("PrecomputedSlices", 0),
                "idle": idle,
                "peak": rss_mib(o.process.pid, "VmHWM"),
                "phases": sampler.peaks,
            }
    finally:
        if pacs:
            pacs.cleanup()
        shutil.rmtree(folder, ignore_errors=True)


def run_concurrent(args, tmp, count, config):
    from orthanc_harness import OrthancServer, make_phantom
    folders = []
    series = []
    for i in range(count):
        folder = os.path.join(tmp, f"c{count}-{i}")
        folders.append(folder)
        series.append(make_phantom(folder, rows=512, columns=512, slices=args.concurrent_slices,
                                   seed=900 + i))
    try:
        with OrthancServer(extra_config=config, stable_age=args.stable_age) as o:
            idle = rss_mib(o.process.pid, "VmRSS")
            start = time.monotonic()
            processes = [subprocess.Popen(
                ["storescu", "-aet", "MODALITY", "-aec", o.aet, "127.0.0.1", str(o.dicom_port),
                 *files], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for files in series]
            last_stored = {}
            derived_at = {}
            while len(derived_at) < count:
                now = time.monotonic()
                for i, p in enumerate(processes):
                    if i not in last_stored and p.poll() is not None:
                        if p.returncode != 0:
                            raise RuntimeError(f"storescu failed: {p.stderr.read().decode()}")
                        last_stored[i] = now
                jobs = series_jobs(o)
                for job in jobs:
                    if job["State"] == "Failure":
                        raise RuntimeError(job["Content"].get("ErrorMessage"))
                    if job["State"] == "Success":
                        derived_at.setdefault(job["Content"]["SourceSeries"], now)
                if now - start > 7200:
                    raise RuntimeError("the series were not processed within 2 hours")
                time.sleep(0.1)
            end = max(derived_at.values())
            # Each job's source series is matched to the storescu process that sent it.
            import pydicom
            sender = {pydicom.dcmread(files[0], stop_before_pixels=True).SeriesInstanceUID: i
                      for i, files in enumerate(series)}
            per_series = []
            for series_id, at in derived_at.items():
                uid = o.get(f"/series/{series_id}")["MainDicomTags"]["SeriesInstanceUID"]
                per_series.append(at - last_stored[sender[uid]])
            return {
                "total": end - start,
                "slices_per_s": count * args.concurrent_slices / (end - start),
                "latency": per_series,
                "idle": idle,
                "peak": rss_mib(o.process.pid, "VmHWM"),
            }
    finally:
        for folder in folders:
            shutil.rmtree(folder, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--build", default=os.path.join(ROOT, "build"))
    parser.add_argument("--model", default="ct-denoise")
    parser.add_argument("--slices", default="64")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--concurrency", default="",
                        help="numbers of series queued at once, e.g. 1,4,16")
    parser.add_argument("--concurrent-slices", type=int, default=32)
    parser.add_argument("--forward", action="store_true",
                        help="forward each derived series to a second Orthanc by C-STORE")
    parser.add_argument("--stable-age", type=int, default=1)
    parser.add_argument("--storage-cache-mb", type=int, default=None,
                        help="Orthanc's MaximumStorageCacheSize (default: Orthanc's, 128)")
    parser.add_argument("--early-start-mb", default="0,512",
                        help="values of Enhance.EarlyStartMB to compare (0: no slice is "
                             "computed before the series is stable)")
    parser.add_argument("--cpu-precision", default="auto", choices=["auto", "float"],
                        help="Enhance.CpuPrecision: auto (bf16 or int8 where the model allows it and "
                             "the processor has it) or float")
    args = parser.parse_args()
    os.environ.setdefault("ENHANCE_PLUGIN", os.path.join(args.build, "plugin", "libOrthancEnhance.so"))
    os.environ.setdefault("ENHANCE_PHANTOM", os.path.join(args.build, "tools", "enhance-make-phantom"))
    from orthanc_harness import OrthancServer

    modes = [int(m) for m in args.early_start_mb.split(",")]

    def configuration(destinations, early):
        rule = {"Name": "bench", "Modalities": ["CT"], "Task": "denoise", "Model": args.model,
                "Destinations": destinations}
        config = {"Enhance": {"ModelsDirectories": [os.path.join(ROOT, "models")],
                              "Rules": [rule], "EarlyStartMB": early,
                              "CpuPrecision": args.cpu_precision}}
        if args.storage_cache_mb is not None:
            config["MaximumStorageCacheSize"] = args.storage_cache_mb
        return config
    cache = ("Orthanc's default" if args.storage_cache_mb is None
             else f"{args.storage_cache_mb} MB")
    print(f"model {args.model}, CpuPrecision {args.cpu_precision}, "
          f"StableAge {args.stable_age} s, storage cache {cache}, "
          f"{os.cpu_count()} cores, "
          f"load {open('/proc/loadavg').read().split()[0]} at the start\n")
    tmp = tempfile.mkdtemp(prefix="enhance-bench-")
    try:
        sizes = [int(s) for s in args.slices.split(",") if s]
        phases = []
        if sizes:
            print(f"Single series, {args.repeats} runs per size:\n")
            print("Inference-only time: the job's inference stage with EarlyStartMB 0 (every "
                  "slice computed after the series is stable).\n")
            print("Stable: when Orthanc declared the series stable (StableAge after the last "
                  "instance, counted by Orthanc in whole seconds) and the job was created.\n")
            print("| slices | EarlyStartMB | last stored -> derived stored (s) | "
                  "last stored -> stable (s) | stable -> derived stored (s) | "
                  "inference in the job (s) | slices computed early | "
                  "end-to-end / inference-only | stable -> derived / inference-only | "
                  "slices/s | fetch + decode (s) | encode (s) | "
                  "store (s) | after inference (s) | " +
                  ("forwarded (s) | " if args.forward else "") +
                  "decoded series (MiB) | Orthanc idle RSS (MiB) | Orthanc peak RSS (MiB) |")
            print("| --- " * (17 + (1 if args.forward else 0)) + "|")
        for slices in sizes:
            reference = None
            for early_mb in modes:
                config = configuration(["PACS"] if args.forward else [], early_mb)
                runs = [run_single(args, tmp, slices, r, config,
                                   lambda: OrthancServer(name="PACS", plugin=False))
                        for r in range(args.repeats)]
                derived = [r["derived"] for r in runs]
                inference = [r["timings"]["Inference"] for r in runs]
                if reference is None or early_mb == 0:
                    reference = statistics.median(inference)
                ratios = [d / reference for d in derived]
                stable = [r["stable"] for r in runs]
                after_stable = [r["after_stable"] for r in runs]
                pipeline = [a / reference for a in after_stable]
                fetch = [r["timings"]["Fetch"] + r["timings"]["Decode"] for r in runs]
                encode = [r["timings"]["Encode"] for r in runs]
                store = [r["timings"]["Store"] for r in runs]
                after = [r["timings"].get("AfterInference", 0) for r in runs]
                early = [r["early"] for r in runs]
                row = (f"| {slices} | {early_mb} | {summary(derived)} | {summary(stable)} | "
                       f"{summary(after_stable)} | {summary(inference)} | "
                       f"{statistics.median(early):.0f} | {summary(ratios)} | "
                       f"{summary(pipeline)} | "
                       f"{slices / statistics.median(derived):.2f} | {summary(fetch)} | "
                       f"{summary(encode)} | {summary(store)} | {summary(after)} | ")
                if args.forward:
                    row += f"{summary([r['forwarded'] for r in runs])} | "
                row += (f"{slices * 512 * 512 * 4 / 2**20:.0f} | "
                        f"{summary([r['idle'] for r in runs], 0)} | "
                        f"{summary([r['peak'] for r in runs], 0)} |")
                print(row, flush=True)
                phases.append((slices, early_mb, runs))

        if phases:
            names = ["receive"] + [name for _, name in PHASES]
            print("\nOrthanc's resident memory above idle at the peak of each stage (MiB; "
                  "sampled every 0.1 s, medians):\n")
            print("| slices | EarlyStartMB | " + " | ".join(names) + " |")
            print("| --- | --- | " + "--- | " * len(names))
            for slices, early_mb, runs in phases:
                cells = []
                for name in names:
                    values = [r["phases"][name] - r["idle"] for r in runs if name in r["phases"]]
                    cells.append(f"{statistics.median(values):.0f}" if values else "-")
                print(f"| {slices} | {early_mb} | " + " | ".join(cells) + " |", flush=True)

        counts = [int(c) for c in args.concurrency.split(",") if c]
        if counts:
            print(f"\nSeries queued at once, {args.concurrent_slices} slices each, "
                  f"EarlyStartMB {modes[-1]}:\n")
            print("| series | total (s) | slices/s | per-series latency (s) | "
                  "Orthanc idle RSS (MiB) | Orthanc peak RSS (MiB) |")
            print("| --- | --- | --- | --- | --- | --- |")
        for count in counts:
            r = run_concurrent(args, tmp, count, configuration([], modes[-1]))
            print(f"| {count} | {r['total']:.1f} | {r['slices_per_s']:.2f} | "
                  f"{summary(r['latency'], 1)} | {r['idle']:.0f} | {r['peak']:.0f} |", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
