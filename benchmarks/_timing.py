"""Summaries of repeated timings shared by the benchmarks."""


def percentiles(values):
    """(minimum, 25th percentile, median) of `values`: on a shared machine the
    low percentiles move least."""
    values = sorted(values)
    return values[0], values[len(values) // 4], values[len(values) // 2]
