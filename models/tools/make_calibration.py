#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""Writes a model's calibration input: the network inputs on which the node compares a
lower precision's output with float's at load (the manifest's "low_precision" section).

    make_calibration.py MODEL_DIR SERIES_DIR [--slices 4] [--size 192] [--noise F] [--seed S]
                        [--out calibration.pt]

SERIES_DIR holds a DICOM series like those the model takes (for the CT models, a
training phantom from `enhance-simulate-ct --dicom DIR --seed 1000`; for the MR models, a
head from the training subjects). The series is normalised as the manifest's
input_normalization says (a window as is; percentiles over the voxels above the series'
2nd percentile, close to the node's own body mask), the centre SIZE x SIZE of SLICES
evenly spaced slices is cut, each with the neighbours the model takes as channels, and
the tensor [SLICES, C, SIZE, SIZE] is written with torch.save. With --noise F, Rician
noise of F times the series' maximum is added first (for MR templates, which are averages
of many scans and far smoother than what a scanner sends). The calibration only has to be
like the model's inputs; it is never used to measure image quality.
"""
import argparse
import json
import os

import numpy as np
import pydicom
import torch


def read_series(folder):
    slices = []
    for name in sorted(os.listdir(folder)):
        try:
            ds = pydicom.dcmread(os.path.join(folder, name))
        except Exception:
            continue
        if "PixelData" not in ds:
            continue
        values = ds.pixel_array.astype(np.float32) * float(getattr(ds, "RescaleSlope", 1))
        values += float(getattr(ds, "RescaleIntercept", 0))
        slices.append((float(ds.ImagePositionPatient[2]), values))
    if not slices:
        raise SystemExit(f"{folder}: no DICOM image found")
    slices.sort(key=lambda s: s[0])
    return np.stack([s[1] for s in slices])


def normalise(volume, spec):
    method = spec["method"]
    if method == "none":
        return volume
    if method == "window":
        low, high = spec["low"], spec["high"]
    elif method == "percentile":
        body = volume[volume > np.percentile(volume, 2)]
        low, high = np.percentile(body, spec["low"]), np.percentile(body, spec["high"])
    else:
        mean, sd = volume.mean(), volume.std()
        return (volume - mean) / max(sd, 1e-6)
    return (volume - low) / (high - low)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model")
    parser.add_argument("series")
    parser.add_argument("--slices", type=int, default=4)
    parser.add_argument("--size", type=int, default=192)
    parser.add_argument("--noise", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", default="calibration.pt")
    args = parser.parse_args()
    with open(os.path.join(args.model, "manifest.json")) as f:
        manifest = json.load(f)
    context = int(manifest.get("slice_context", 0))
    through = int(manifest.get("scale", {}).get("through_plane", 1)) if isinstance(
        manifest.get("scale"), dict) else 1
    channels = 2 * max(1, context) if through > 1 else 2 * context + 1
    volume = read_series(args.series)
    if args.noise > 0:
        rng = np.random.default_rng(args.seed)
        sigma = args.noise * float(volume.max())
        volume = np.hypot(volume + rng.normal(0, sigma, volume.shape),
                          rng.normal(0, sigma, volume.shape)).astype(np.float32)
    volume = normalise(volume, manifest["input_normalization"])
    slices, rows, columns = volume.shape
    size = min(args.size, rows, columns)
    size -= size % int(manifest.get("size_multiple", 1))
    top, left = (rows - size) // 2, (columns - size) // 2
    items = []
    for k in np.linspace(0, slices - 1, args.slices).round().astype(int):
        first = k - channels // 2
        picked = [volume[min(max(first + c, 0), slices - 1)] for c in range(channels)]
        items.append(np.stack(picked)[:, top:top + size, left:left + size])
    tensor = torch.from_numpy(np.ascontiguousarray(np.stack(items), dtype=np.float32))
    out = args.out if os.path.isabs(args.out) else os.path.join(args.model, args.out)
    torch.save(tensor, out)
    print(f"wrote {list(tensor.shape)} to {out}")


if __name__ == "__main__":
    main()
