#!/usr/bin/python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""Compares two folders of DICOM files, one series each, element by element, leaving out
what is new on every run: UIDs (value representation UI), dates and times (DA, TM, DT)
and the File Meta Information. Instances are matched by InstanceNumber. Prints each
difference and exits 1 when there is one, so that two builds, or two runs of one model,
can be shown to write the same derived series.

Usage: tools/compare_series.py FOLDER_A FOLDER_B"""
import pathlib
import sys

import pydicom

VOLATILE_VRS = {"UI", "DA", "TM", "DT"}


def by_instance_number(folder):
    instances = {}
    for path in sorted(pathlib.Path(folder).glob("*")):
        if path.is_file():
            ds = pydicom.dcmread(path)
            instances[int(ds.InstanceNumber)] = ds
    return instances


def elements(dataset, prefix=""):
    """(path, value) of every element outside the volatile VRs, sequences walked."""
    for element in dataset:
        path = f"{prefix}{element.tag}"
        if element.VR == "SQ":
            for index, item in enumerate(element.value):
                yield from elements(item, f"{path}[{index}].")
        elif element.VR not in VOLATILE_VRS:
            yield path, element.value


def main(a, b):
    left, right = by_instance_number(a), by_instance_number(b)
    differences = []
    if sorted(left) != sorted(right):
        differences.append(f"instance numbers differ: {sorted(left)} against {sorted(right)}")
    for number in sorted(set(left) & set(right)):
        x, y = dict(elements(left[number])), dict(elements(right[number]))
        for path in sorted(set(x) | set(y)):
            if x.get(path) != y.get(path):
                shown = [str(v)[:60] if path in d else "(absent)" for d, v in ((x, x.get(path)), (y, y.get(path)))]
                differences.append(f"instance {number}, {path}: {shown[0]} against {shown[1]}")
    for line in differences:
        print(line)
    print(f"{len(set(left) & set(right))} instance(s) compared, {len(differences)} difference(s)")
    return 1 if differences else 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1], sys.argv[2]))
