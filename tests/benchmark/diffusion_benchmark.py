#!/usr/bin/python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""End-to-end benchmark of a diffusion model in a real Orthanc on loopback: a 64-slice
256x256 T1-weighted head MR (mricron-data's ch2, padded to 256x256) is C-STOREd with
storescu and routed by a rule to mr2ct-diffusion; the time from the last instance stored
to both derived series (the synthetic CT and its uncertainty map) stored, split at the
moment Orthanc declared the series stable, and the job's stage timings. Each repeat
deletes the derived series first, so the model runs again (same pixels).

Prints a Markdown table (medians, min-max).

    tests/benchmark/diffusion_benchmark.py [--build build] [--model mr2ct-diffusion]
        [--slices 64] [--size 256] [--repeats 3] [--stable-age 1] [--threads N]
"""
import argparse
import datetime
import os
import shutil
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))

from medians import summary  # noqa: E402 (this folder, on the path as the script's own)


def job_created(job):
    """When Orthanc created the job (UTC, microseconds): when the series became stable."""
    created = datetime.datetime.strptime(job["CreationTime"], "%Y%m%dT%H%M%S.%f")
    return created.replace(tzinfo=datetime.timezone.utc).timestamp()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--build", default=os.path.join(ROOT, "build"))
    parser.add_argument("--model", default="mr2ct-diffusion")
    parser.add_argument("--slices", type=int, default=64)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--stable-age", type=int, default=1)
    parser.add_argument("--threads", type=int, default=0, help="Enhance.Threads (0: the default)")
    args = parser.parse_args()
    os.environ.setdefault("ENHANCE_PLUGIN", os.path.join(args.build, "plugin", "libOrthancEnhance.so"))
    from orthanc_harness import (OrthancServer, logged_on_failure, make_head_mr, series_of_uid,
                                 wait_for)

    tmp = tempfile.mkdtemp(prefix="enhance-diffusion-benchmark-")
    models = os.path.join(tmp, "models")
    shutil.copytree(os.path.join(ROOT, "models", args.model), os.path.join(models, args.model))
    files = make_head_mr(os.path.join(tmp, "mr"), "--count", str(args.slices), "--size",
                         str(args.size))
    enhance = {"ModelsDirectories": [models], "Device": "cpu",
               "Rules": [{"Name": "synthetic-ct", "Modalities": ["MR"], "Task": "mr2ct",
                          "Model": args.model}]}
    if args.threads:
        enhance["Threads"] = args.threads
    server = OrthancServer(stable_age=args.stable_age, extra_config={"Enhance": enhance})
    rows = []
    with logged_on_failure(server, tmp):
        server.start(timeout=300)
        model = server.get(f"/enhance/models/{args.model}")
        for repeat in range(args.repeats):
            started = time.time()
            server.store_files(files)
            stored = time.time()
            import pydicom
            source = series_of_uid(server, pydicom.dcmread(files[0], stop_before_pixels=True).SeriesInstanceUID)

            def finished():
                for job in server.get("/jobs?expand"):
                    if (job["State"] in ("Success", "Failure")
                            and job["Content"].get("SourceSeries") == source
                            and job["ID"] not in seen):
                        return job
                return None
            seen = {r["job"] for r in rows}
            job = wait_for(finished, timeout=1800, interval=0.2, what="the diffusion job")
            done = time.time()
            if job["State"] != "Success":
                raise SystemExit(f"the job failed: {job['Content']}")
            content = job["Content"]
            rows.append({"job": job["ID"], "send": stored - started, "total": done - stored,
                         "stable": job_created(job) - stored, "after": done - job_created(job),
                         "timings": content.get("Timings", {}), "uncertainty": content.get("Uncertainty", {})})
            print(f"repeat {repeat + 1}: {done - stored:.1f} s from the last instance stored to "
                  f"both derived series stored", flush=True)
            for series in (content["DerivedSeries"], content["UncertaintySeries"]):
                server.request("DELETE", f"/series/{series}")
            server.request("DELETE", f"/series/{source}")

    print(f"\n{args.model} {model.get('Version', '')}: {model.get('Parameters', '')}")
    print(f"{args.slices} MR slices of {args.size}x{args.size}, C-STORE by storescu, StableAge "
          f"{args.stable_age} s, {os.cpu_count()} CPUs; {args.repeats} runs\n")
    print("| figure | seconds, median (min-max) |\n|---|---|")
    print(f"| C-STORE of the series | {summary([r['send'] for r in rows], 1)} |")
    print(f"| last instance stored -> series stable (job created) | {summary([r['stable'] for r in rows], 1)} |")
    print(f"| job created -> synthetic CT and uncertainty map stored | {summary([r['after'] for r in rows], 1)} |")
    print(f"| **last instance stored -> both derived series stored** | **{summary([r['total'] for r in rows], 1)}** |")
    print(f"| per slice, end to end | {summary([r['total'] / args.slices for r in rows], 2)} |")
    for stage in sorted(rows[0]["timings"]):
        values = [r["timings"].get(stage) for r in rows if isinstance(r["timings"].get(stage), (int, float))]
        if values:
            print(f"| job stage: {stage} | {summary(values, 2)} |")
    u = rows[0]["uncertainty"]
    if u:
        print(f"\nUncertainty inside the body (first run): median {u['Median']:.1f} HU, 99th "
              f"percentile {u['Percentile99']:.1f} HU, fraction above {u['Threshold']:g} HU "
              f"{u['FractionAbove']:.3f}")

if __name__ == "__main__":
    main()
