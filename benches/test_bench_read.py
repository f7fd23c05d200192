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

import json
import subprocess
import sys

import polars as pl
import pytest

import cdrq

ROUNDS = 3


def run(benchmark, fn, path):
    size_mb = path.stat().st_size / 1e6
    df = benchmark.pedantic(fn, args=(path,), rounds=ROUNDS, iterations=1, warmup_rounds=1)
    benchmark.extra_info.update(mb=round(size_mb), mb_per_s=round(size_mb / benchmark.stats["median"]))
    return df


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


MEASURE = """
import json, resource, sys, polars as pl, cdrq
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
kind, path = sys.argv[1], sys.argv[2]
if kind == "cdrq":
    df = cdrq.read(path)
elif kind == "polars-strings":
    df = pl.read_csv(path, infer_schema=False)
else:
    df = pl.read_csv(path, try_parse_dates=True)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
status = dict(line.split(":", 1) for line in open("/proc/self/status"))
kb = lambda key: int(status[key].split()[0])
# estimated_size() counts string bytes only; every string also has a 16-byte view.
views = 16 * df.height * sum(dtype == pl.String for dtype in df.schema.values())
print(json.dumps({
    "peak_mb": peak / 1e3, "import_mb": base / 1e3, "frame_mb": df.estimated_size() / 1e6,
    "frame_with_views_mb": (df.estimated_size() + views) / 1e6,
    "rss_anon_mb": kb("RssAnon") / 1e3, "rss_file_mb": kb("RssFile") / 1e3,
}))
"""


@pytest.mark.benchmark(group="memory")
def test_peak_memory(benchmark, archive):
    path, twin = archive
    report = {}
    for kind, source in [("cdrq", path), ("polars-strings", twin), ("polars-typed", twin)]:
        out = subprocess.run(
            [sys.executable, "-c", MEASURE, kind, str(source)], capture_output=True, check=True
        )
        r = json.loads(out.stdout)
        r["peak_over_frame"] = round((r["peak_mb"] - r["import_mb"]) / r["frame_mb"], 2)
        report[kind] = r
    benchmark.extra_info.update(report)
    print("\nMB: peak RSS | after import | estimated_size | + views | RssAnon | RssFile | (peak-import)/est")
    for kind, r in report.items():
        print(
            f"  {kind:15} {r['peak_mb']:6.0f} {r['import_mb']:5.0f} {r['frame_mb']:6.0f} "
            f"{r['frame_with_views_mb']:6.0f} {r['rss_anon_mb']:6.0f} {r['rss_file_mb']:6.0f} "
            f"{r['peak_over_frame']:5.2f}"
        )
    benchmark.pedantic(lambda: None, rounds=1)
    assert report["cdrq"]["frame_mb"] > 0
