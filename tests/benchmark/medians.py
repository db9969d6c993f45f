# SPDX-License-Identifier: GPL-3.0-or-later
"""What the benchmarks print for repeated measurements."""
import statistics


def summary(values, digits=2):
    """'median (min-max)' of `values`, to `digits` decimals."""
    return (f"{statistics.median(values):.{digits}f} "
            f"({min(values):.{digits}f}-{max(values):.{digits}f})")
