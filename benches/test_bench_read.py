"""Reading a UCM CSV archive: cdrq vs what a user would otherwise do.

Side by side in one run (group "read"):
- ``cdrq.read`` on the UCM file itself (typed, quirks handled);
- ``polars.read_csv(twin, infer_schema=False)``: the RFC-clean twin, all
  strings — less work than cdrq does (no typing, no quirks);
- ``polars.read_csv(twin, try_parse_dates=True)``: the twin, typed.

``test_side_by_side_ownership`` alternates the default (the frame owns its
memory: the file is read, not mapped), ``memory_map=True`` (the frame's
strings point into the mapped file), both on one thread (the parser's own
speed), and Polars all-strings, round by round.
``test_peak_memory`` reads in a fresh process per contender and records peak
RSS against the frame's ``estimated_size()``.
"""

from __future__ import annotations

import os
import statistics
import time

import polars as pl
import pytest

import cdrq

from .measure import peak_memory, run


@pytest.mark.benchmark(group="read")
def test_cdrq_read_ucm(benchmark, archive):
    path, _ = archive
    df = run(benchmark, cdrq.read, path)
    assert df.schema["start"] == pl.Datetime("us", "UTC")


@pytest.mark.benchmark(group="read")
def test_polars_read_twin_all_strings(benchmark, archive):
    _, twin = archive
    df = run(benchmark, lambda p: pl.read_csv(p, infer_schema=False), twin)
    assert df.schema["start"] == pl.String


@pytest.mark.benchmark(group="read")
def test_polars_read_twin_typed(benchmark, archive):
    _, twin = archive
    df = run(benchmark, lambda p: pl.read_csv(p, try_parse_dates=True), twin)
    assert df.schema["AcctId"] == pl.Int64


def test_side_by_side_ownership(archive):
    """Rounds alternate the three contenders (after one warm-up round); the
    table gives min / median seconds and cdrq's ratios to Polars."""
    path, twin = archive
    routes = {
        "cdrq.read (owned, default)": lambda: cdrq.read(path),
        "cdrq.read(memory_map=True)": lambda: cdrq.read(path, memory_map=True),
        "cdrq.read(threads=1)": lambda: cdrq.read(path, threads=1),
        "cdrq.read(threads=1, memory_map=True)": lambda: cdrq.read(path, threads=1, memory_map=True),
        "polars.read_csv(twin, infer_schema=False)": lambda: pl.read_csv(twin, infer_schema=False),
    }
    times: dict[str, list[float]] = {k: [] for k in routes}
    rounds = 5
    reference = None
    for r in range(rounds + 1):
        order = list(routes)[r % len(routes) :] + list(routes)[: r % len(routes)]
        for name in order:
            t0 = time.perf_counter()
            frame = routes[name]()
            if r:
                times[name].append(time.perf_counter() - t0)
            # Every contender returns the same rows (Polars: as strings).
            if r == 0:
                rows = frame.select("AcctId", "src", "clid", "lastdata", "session").cast(pl.String)
                assert reference is None or rows.equals(reference), name
                reference = rows
            del frame
    polars = times["polars.read_csv(twin, infer_schema=False)"]
    mb = path.stat().st_size / 1e6
    print(f"\n{mb:.0f} MB CSV, {rounds} alternating rounds (s, min / median; MB/s of the median)")
    print(f"load average (1 min) at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print("| contender | min / median | MB/s | ÷ Polars all strings (min / median) |")
    print("|---|---:|---:|---:|")
    for name, t in times.items():
        lo, mid = min(t), statistics.median(t)
        ratio = f"{lo / min(polars):.2f} / {mid / statistics.median(polars):.2f}"
        print(f"| {name} | {lo:.2f} / {mid:.2f} | {mb / mid:.0f} | {ratio} |")


@pytest.mark.benchmark(group="memory")
def test_peak_memory_csv(benchmark, archive):
    path, twin = archive
    report = peak_memory(
        {
            "cdrq": ("cdrq.read(path)", path),
            "cdrq-mmap": ("cdrq.read(path, memory_map=True)", path),
            "polars-strings": ("pl.read_csv(path, infer_schema=False)", twin),
            "polars-typed": ("pl.read_csv(path, try_parse_dates=True)", twin),
        }
    )
    benchmark.extra_info.update(report)
    benchmark.pedantic(lambda: None, rounds=1)
