#!/usr/bin/python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""Scrolling benchmark of the compare view in Orthanc Explorer, in Debian's Chromium.

A real Orthanc on loopback holds a CT phantom series (512 slices of 512x512 by default)
and a series derived from it (classical-gaussian, fast); compare_view_scroll.mjs opens the
compare view and measures, per slice change, the time from the key press to both panes
drawn: scrolling through the series one slice at a time as fast as the view allows
(slices fetched ahead while the user looks), jumping to slices far away (nothing
fetched yet), and scrolling back over slices already seen (from the cache). It also counts
the main thread's long tasks (over 50 ms), which is what a frozen page would show.

Prints a Markdown table (median, 90th percentile, maximum in ms).

    tests/benchmark/compare_view_benchmark.py [--build build] [--slices 512] [--size 512]
        [--steps 200]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--build", default=os.path.join(ROOT, "build"))
    parser.add_argument("--slices", type=int, default=512)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--steps", type=int, default=200, help="slice changes per measurement")
    args = parser.parse_args()
    os.environ.setdefault("ENHANCE_PLUGIN", os.path.join(args.build, "plugin", "libOrthancEnhance.so"))
    os.environ.setdefault("ENHANCE_PHANTOM", os.path.join(args.build, "tools", "enhance-make-phantom"))
    import orthanc_harness as h

    with tempfile.TemporaryDirectory(prefix="enhance-compare-bench-") as tmp, \
            h.OrthancServer() as orthanc:
        started = time.monotonic()
        files = h.make_phantom(os.path.join(tmp, "ct"), rows=args.size, columns=args.size,
                               slices=args.slices, seed=7)
        source = h.store_series(orthanc, files)
        job = orthanc.post(f"/enhance/series/{source}", {"Task": "denoise", "Model": "classical-gaussian"})["ID"]
        done = h.wait_for_job(orthanc, job, timeout=1800)
        if done["State"] != "Success":
            raise SystemExit(f"the derived series could not be made: {done['Content']}")
        derived = done["Content"]["DerivedSeries"]
        print(f"prepared {args.slices} slices of {args.size}x{args.size} and the derived series "
              f"in {time.monotonic() - started:.0f} s", flush=True)
        env = dict(os.environ, ENHANCE_URL=orthanc.url, ENHANCE_SOURCE_SERIES=source,
                   ENHANCE_DERIVED_SERIES=derived, ENHANCE_STEPS=str(args.steps),
                   NODE_PATH=os.path.join(ROOT, "tests", "browser", "node_modules"),
                   PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD="1")
        result = subprocess.run(["node", os.path.join(HERE, "compare_view_scroll.mjs")], env=env,
                                cwd=os.path.join(ROOT, "tests", "browser"),
                                capture_output=True, text=True, timeout=1800)
        if result.returncode != 0:
            raise SystemExit(f"the browser run failed:\n{result.stdout}\n{result.stderr}")
        figures = json.loads(result.stdout.strip().splitlines()[-1])

    print(f"\nCompare view, {args.slices} slices of {args.size}x{args.size} (source and derived), "
          f"Chromium headless, {os.cpu_count()} cores\n")
    print("| scrolling | slice changes | median ms | 90th percentile ms | max ms |")
    print("| --- | --- | --- | --- | --- |")
    for name, label in (("sequential", "one slice at a time, as fast as drawn"),
                        ("jumps", "jumps to slices not fetched yet"),
                        ("cached", "back over slices already seen")):
        f = figures[name]
        print(f"| {label} | {f['count']} | {f['median']:.1f} | {f['p90']:.1f} | {f['max']:.1f} |")
    print(f"\nLong tasks (over 50 ms) on the page's main thread: {figures['longTasks']['count']}, "
          f"longest {figures['longTasks']['max']:.0f} ms")


if __name__ == "__main__":
    main()
