"""Reading a UCM CSV archive: cdrq vs what a user would otherwise do.

Side by side in one run (group "read"):
- ``cdrq.read`` on the UCM file itself (typed, quirks handled);
- ``polars.read_csv(twin, infer_schema=False)``: the RFC-clean twin, all
  strings — less work than cdrq does (no typing, no quirks);
- ``polars.read_csv(twin, try_parse_dates=True)``: the twin, typed.

``test_peak_memory`` reads in a fresh process per contender and records peak
RSS against the frame's ``estimated_size()``.
"""

from __future__ import annotations

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


@pytest.mark.benchmark(group="memory")
def test_peak_memory_csv(benchmark, archive):
    path, twin = archive
    report = peak_memory(
        {
            "cdrq": ("cdrq.read(path)", path),
            "polars-strings": ("pl.read_csv(path, infer_schema=False)", twin),
            "polars-typed": ("pl.read_csv(path, try_parse_dates=True)", twin),
        }
    )
    benchmark.extra_info.update(report)
    benchmark.pedantic(lambda: None, rounds=1)
