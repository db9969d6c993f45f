#!/usr/bin/python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""What a model's domain check costs in a real Orthanc on loopback, against the model's own
inference, as a job reports them (Timings.DomainCheck and Timings.Inference).

A series of each length is stored once: for an MR model a T1-weighted head (mricron-data's
ch2, 181 x 217 pixels, with 3% Rician noise), for a CT model a 512 x 512 phantom. Each
repeat posts a job for it to the model (REST, "DomainCheck": "warn") and deletes the
derived series it made, so that each job runs: the check scores the series' selected
slices as they are decoded, then the model runs. The Orthanc is started fresh, so the first
job of a length is the first time the node runs that model and that check on such slices,
as after a restart; it is reported apart from the later ones.

With --against-off, each repeat is a pair of jobs for the series, one with the check and
one without ("DomainCheck": "off"), in alternating order: what the check adds to the time
from the first slice's decoding to the end of inference, and to the series' whole
processing (fetching to storing), against the model's inference without it (medians of
the pairs' differences). The check's own time (Timings.DomainCheck) is not all it adds, nor
all it costs: it moves when the other work runs (the model's threads, the encoding and
storing that overlap inference), and the whole processing is what a series waits for.

With --interleave, one Orthanc serves every model, and the jobs go in turns: each repeat
posts one job for every model and length, in order, as a node's mixed traffic would, so
that each job follows jobs of other models and shapes (the first job of each is still
reported apart).

With --rest, the check as an administrator calls it, GET /enhance/series/{id}/domain?Model=
(the score without the model), timed by the client from request to answer, in turns with
two routes that do next to nothing: Orthanc's own GET /system, and the plugin's GET
/enhance/models/{name}, whose difference from it is what any plugin route costs (the
thread it runs on, see plugin/RestSupport.cpp). The first call of each is reported apart.

Prints a Markdown table (medians, min-max).

    tests/benchmark/domain_benchmark.py [--build build] [--model mr-denoise]...
        [--slices 8,32] [--repeats 4] [--models models] [--interleave | --against-off | --rest]

--models names the folder the models are loaded from (default: the repository's), so that
a recalibrated copy can be compared with the shipped checks on the same build.
"""
import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))

from medians import summary  # noqa: E402 (this folder, on the path as the script's own)


def source_series(model, folder, slices, seed):
    from orthanc_harness import make_head_mr, make_phantom
    if model.startswith("ct"):
        return make_phantom(folder, rows=512, columns=512, slices=slices, seed=seed)
    return make_head_mr(folder, "--first", str(max(0, 90 - slices // 2)), "--count",
                        str(slices), "--rician", "0.03", "--seed", str(seed))


def job_content(o, model, series, check="warn"):
    """The content of one job ("DomainCheck": `check`), its derived series deleted so that
    the next job for the series runs."""
    from orthanc_harness import wait_for_job
    job = wait_for_job(o, o.post(f"/enhance/series/{series}", {
        "Task": o.get(f"/enhance/models/{model}")["Task"], "Model": model,
        "Options": {"DomainCheck": check}})["ID"], timeout=600)
    if job["State"] != "Success":
        raise RuntimeError(job["Content"].get("ErrorMessage", job))
    content = job["Content"]
    # Otherwise the next job finds this one's derived series and runs nothing.
    o.request("DELETE", f"/series/{content['DerivedSeries']}")
    return content


def run_job(o, model, series):
    """(check seconds, inference seconds, slices scored) of one job."""
    content = job_content(o, model, series)
    return (content["Timings"]["DomainCheck"], content["Timings"]["Inference"],
            content["Domain"]["Slices"])


def decoded_and_inferred(content):
    """Seconds from the first slice's decoding to the end of inference (the check, which
    scores slices as they are decoded, included)."""
    return content["Timings"]["Decode"] + content["Timings"]["Inference"]


def processed(content):
    """Seconds of the series' processing: fetching, decoding (with the check), inference,
    and the encoding and storing left after it (the rest overlaps inference)."""
    t = content["Timings"]
    return t["Fetch"] + t["Decode"] + t["Inference"] + t["AfterInference"]


def run_against_off(args, tmp, model):
    """[(slices, pairs)] for one model in a node of its own: each pair a job with the check
    and one without ("off"), in alternating order, after a first pair left out."""
    rows = []
    with start_node(args) as o:
        for slices in lengths(args):
            series = store(o, tmp, model, slices)
            pairs = []
            for repeat in range(args.repeats + 1):
                first, second = ("warn", "off") if repeat % 2 == 0 else ("off", "warn")
                jobs = {first: job_content(o, model, series, first)}
                jobs[second] = job_content(o, model, series, second)
                if repeat > 0:  # the first pair prepares the shape for both
                    pairs.append((jobs["warn"], jobs["off"]))
            rows.append((slices, pairs))
    return rows


def print_against_off(args, tmp, models):
    print("| model | slices | scored | check (s) | inference without (s) | added to decoding "
          "and inference (s) | added to the whole processing (s) | whole added / inference "
          "without |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for model in models:
        for slices, pairs in run_against_off(args, tmp, model):
            inference = [f["Timings"]["Inference"] for _, f in pairs]
            added = [decoded_and_inferred(w) - decoded_and_inferred(f) for w, f in pairs]
            whole = [processed(w) - processed(f) for w, f in pairs]
            print(f"| {model} | {slices} | {pairs[0][0]['Domain']['Slices']} | "
                  f"{summary([w['Timings']['DomainCheck'] for w, _ in pairs], 4)} | "
                  f"{summary(inference, 4)} | {summary(added, 4)} | {summary(whole, 4)} | "
                  f"{100.0 * statistics.median(whole) / statistics.median(inference):.1f}% |")


def timed(o, path):
    """Seconds from sending a GET to reading its answer."""
    start = time.perf_counter()
    o.request("GET", path)
    return time.perf_counter() - start


def print_rest(args, tmp, models):
    """The REST routes' times, each repeat calling every route once, in turns."""
    print("| route | slices | first call (ms) | later calls (ms) |")
    print("| --- | --- | --- | --- |")
    with start_node(args) as o:
        routes = [("GET /system", "-", "/system")]
        for model in models:
            routes.append((f"GET /enhance/models/{model}", "-", f"/enhance/models/{model}"))
            for slices in lengths(args):
                series = store(o, tmp, model, slices)
                routes.append((f"GET /enhance/series/{{id}}/domain?Model={model}", slices,
                               f"/enhance/series/{series}/domain?Model={model}"))
        times = {path: [] for _, _, path in routes}
        for _ in range(args.repeats):
            for _, _, path in routes:
                times[path].append(1000.0 * timed(o, path))
        for name, slices, path in routes:
            print(f"| {name} | {slices} | {times[path][0]:.2f} | {summary(times[path][1:], 2)} |")


def start_node(args):
    from orthanc_harness import OrthancServer
    return OrthancServer(extra_config={"Enhance": {
        "ModelsDirectories": [os.path.abspath(args.models)], "Device": "cpu",
        "Enable": False}})


def store(o, tmp, model, slices):
    from orthanc_harness import store_series
    return store_series(o, source_series(model, os.path.join(tmp, f"{model}-{slices}"),
                                         slices, 40 + slices))


def lengths(args):
    return [int(s) for s in args.slices.split(",") if s]


def run_model(args, tmp, model):
    """[(slices, runs)] for one model, in a node of its own, the repeats of a length in a
    row."""
    rows = []
    with start_node(args) as o:
        for slices in lengths(args):
            series = store(o, tmp, model, slices)
            rows.append((slices, [run_job(o, model, series) for _ in range(args.repeats)]))
    return rows


def run_interleaved(args, tmp, models):
    """{model: [(slices, runs)]} in one node, the jobs in turns over models and lengths."""
    with start_node(args) as o:
        stored = [(m, n, store(o, tmp, m, n)) for m in models for n in lengths(args)]
        runs = {(m, n): [] for m, n, _ in stored}
        for _ in range(args.repeats):
            for m, n, series in stored:
                runs[(m, n)].append(run_job(o, m, series))
    return {m: [(n, runs[(m, n)]) for n in lengths(args)] for m in models}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--build", default=os.path.join(ROOT, "build"))
    parser.add_argument("--model", action="append",
                        help="a shipped model with a domain check (default: mr-denoise)")
    parser.add_argument("--models", default=os.path.join(ROOT, "models"))
    parser.add_argument("--slices", default="8,32")
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--interleave", action="store_true",
                        help="one node for every model, the jobs in turns")
    parser.add_argument("--rest", action="store_true",
                        help="the REST route that answers the score, against routes that do "
                             "next to nothing")
    parser.add_argument("--against-off", action="store_true",
                        help="pairs of jobs with the check and without, in turns: what the "
                             "check adds to a series' time")
    args = parser.parse_args()
    if args.repeats < 2:
        parser.error("--repeats must be at least 2 (the first job is reported apart)")
    os.environ.setdefault("ENHANCE_PLUGIN", os.path.join(args.build, "plugin",
                                                         "libOrthancEnhance.so"))
    os.environ.setdefault("ENHANCE_PHANTOM", os.path.join(args.build, "tools",
                                                          "enhance-make-phantom"))
    print(f"{os.cpu_count()} cores, "
          f"load {open('/proc/loadavg').read().split()[0]} at the start\n")
    for wanted, report in ((args.against_off, print_against_off), (args.rest, print_rest)):
        if not wanted:
            continue
        tmp = tempfile.mkdtemp(prefix="enhance-domain-bench-")
        try:
            report(args, tmp, args.model or ["mr-denoise"])
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return
    print("| model | slices | scored | first job: check (s) | inference (s) | "
          "check / inference | later jobs: check (s) | inference (s) | check / inference |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    tmp = tempfile.mkdtemp(prefix="enhance-domain-bench-")
    try:
        models = args.model or ["mr-denoise"]
        interleaved = run_interleaved(args, tmp, models) if args.interleave else None
        for model in models:
            rows = interleaved[model] if interleaved else run_model(args, tmp, model)
            for slices, runs in rows:
                check, inference, scored = runs[0]
                later = runs[1:]
                shares = [100.0 * c / i for c, i, _ in later]
                # The check to a tenth of a millisecond: it takes about ten on 8 slices.
                print(f"| {model} | {slices} | {scored} | {check:.4f} | {inference:.3f} | "
                      f"{100.0 * check / inference:.1f}% | "
                      f"{summary([c for c, _, _ in later], 4)} | "
                      f"{summary([i for _, i, _ in later], 3)} | {summary(shares, 1)}% |")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
