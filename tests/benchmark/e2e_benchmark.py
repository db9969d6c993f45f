#!/usr/bin/python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""End-to-end benchmark in a real Orthanc on loopback: series of 512x512 CT phantom slices
are C-STOREd with storescu; for each, the time from the last instance stored to the derived
series stored, the job's stage timings, the ratio of end-to-end to inference time, and
Orthanc's peak resident memory. Prints a Markdown table (medians, min-max).

    tests/benchmark/e2e_benchmark.py --build build [--model ct-denoise] [--slices 64,256]
                                     [--repeats 3] [--stable-age 1]
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))


def peak_rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def summary(values):
    return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--build", default=os.path.join(ROOT, "build"))
    parser.add_argument("--model", default="ct-denoise")
    parser.add_argument("--slices", default="64")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--stable-age", type=int, default=1)
    args = parser.parse_args()
    os.environ.setdefault("ENHANCE_PLUGIN", os.path.join(args.build, "plugin", "libOrthancEnhance.so"))
    os.environ.setdefault("ENHANCE_PHANTOM", os.path.join(args.build, "tools", "enhance-make-phantom"))
    from orthanc_harness import OrthancServer, make_phantom, wait_for

    config = {"Enhance": {"ModelsDirectories": [os.path.join(ROOT, "models")],
                          "Rules": [{"Name": "bench", "Modalities": ["CT"], "Task": "denoise",
                                     "Model": args.model}]}}
    print(f"model {args.model}, StableAge {args.stable_age} s, {args.repeats} series per size, "
          f"{os.cpu_count()} cores, load {open('/proc/loadavg').read().split()[0]}\n")
    print("| slices | last stored -> derived stored (s) | minus StableAge (s) | inference (s) | "
          "end-to-end / inference | slices/s | Orthanc peak RSS (MiB) |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    tmp = tempfile.mkdtemp(prefix="enhance-bench-")
    try:
        for slices in [int(s) for s in args.slices.split(",")]:
            latency, inference, rss = [], [], []
            for repeat in range(args.repeats):
                files = make_phantom(os.path.join(tmp, f"{slices}-{repeat}"), rows=512, columns=512,
                                     slices=slices, seed=500 + repeat)
                with OrthancServer(extra_config=config, stable_age=args.stable_age) as o:
                    o.store_files(files)
                    stored = time.monotonic()

                    def done():
                        for j in o.get("/jobs"):
                            info = o.get(f"/jobs/{j}")
                            if info["Type"] == "EnhanceSeries" and info["State"] in ("Success", "Failure"):
                                return info
                        return None
                    job = wait_for(done, timeout=3600, interval=0.05, what="the job")
                    latency.append(time.monotonic() - stored)
                    if job["State"] != "Success":
                        raise RuntimeError(job["Content"].get("ErrorMessage"))
                    inference.append(job["Content"]["Timings"]["Inference"])
                    rss.append(peak_rss_mib(o.process.pid))
                shutil.rmtree(os.path.join(tmp, f"{slices}-{repeat}"), ignore_errors=True)
            ratios = [l / i for l, i in zip(latency, inference)]
            net = [l - args.stable_age for l in latency]
            print(f"| {slices} | {summary(latency)} | {summary(net)} | {summary(inference)} | "
                  f"{summary(ratios)} | {slices / statistics.median(latency):.2f} | {summary(rss)} |")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
