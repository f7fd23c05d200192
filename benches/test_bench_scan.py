"""Scanning a large archive with a selective query: `cdrq.scan` +
`cdrq.query` vs `polars.scan_csv` on the clean twin + the same filter by
hand vs DuckDB `read_csv` + SQL, side by side in one run (group "scan");
peak RSS of each in a fresh process; the scan against `cdrq.read` + the
same query at three selectivities (0.1 %, 5 %, 50 %), with the scan's peak
RSS at each; JSON and XML scans against reads at the same selectivities;
and the 1 → N threads tables of reading and of scan + query.

The archive is generated once into benches/.data (CDRQ_BENCH_SCAN_RECORDS,
default 3.2 M records ≈ 1 GB, and its twin of the same size; 16 000 000
for the 5 GB run).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import polars as pl
import pytest

import cdrq

from .gen_cdrs import cached_big_archive
from .measure import ratio_table, side_by_side, thread_table

#: Queries keeping about 0.1 %, 5 % and 50 % of the generated records.
SELECTIVITIES = {"0.1 %": "caller=6001&minDur=450", "5 %": "caller=6000-6024", "50 %": "caller=6000-6249"}

N = int(os.environ.get("CDRQ_BENCH_SCAN_RECORDS", "3200000"))
QS = "caller=6001,6100-6109&minDur=600"
SQL = (
    "SELECT * FROM read_csv('{twin}', types={{'src': 'VARCHAR', 'dst': 'VARCHAR'}}) "
    "WHERE (src = '6001' OR (length(src) = 4 AND src BETWEEN '6100' AND '6109')) AND billsec >= 600"
)


def by_hand(twin: Path) -> pl.LazyFrame:
    src = pl.col("src")
    lf = pl.scan_csv(twin, schema_overrides={"src": pl.String, "dst": pl.String}, try_parse_dates=True)
    return lf.filter(
        ((src == "6001") | ((src.str.len_bytes() == 4) & src.is_between(pl.lit("6100"), pl.lit("6109"))))
        & (pl.col("billsec") >= 600)
    )


# Each gives the selected records' AcctIds (DuckDB: every column fetched).
CONTENDERS = {
    "cdrq": lambda path, twin: cdrq.query(cdrq.scan(path), QS).collect(engine="streaming")["AcctId"].to_list(),
    "polars": lambda path, twin: by_hand(twin).collect(engine="streaming")["AcctId"].to_list(),
    "duckdb": lambda path, twin: [r[0] for r in duckdb.sql(SQL.format(twin=twin)).fetchall()],
}


@pytest.fixture(scope="module")
def big() -> tuple[Path, Path]:
    return cached_big_archive(N, Path(__file__).parent / ".data")


@pytest.mark.parametrize("contender", CONTENDERS)
def test_scan_selective_query(benchmark, big, contender):
    benchmark.group = "scan"
    out = benchmark.pedantic(CONTENDERS[contender], args=big, rounds=2, iterations=1)
    size = big[0].stat().st_size / 1e6
    benchmark.extra_info.update(mb=round(size), mb_per_s=round(size / benchmark.stats["median"]), rows=len(out))
    assert 0 < len(out) < N // 100
    if contender == "cdrq":
        assert out == CONTENDERS["polars"](*big)


PEAK = """
import sys, json
from pathlib import Path
sys.path.insert(0, sys.argv[4])
from benches.test_bench_scan import CONTENDERS
out = CONTENDERS[sys.argv[1]](Path(sys.argv[2]), Path(sys.argv[3]))
peak = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM"))
print(json.dumps({"peak_mb": peak / 1e3, "rows": len(out)}))
"""


def test_scan_peak_memory(benchmark, big):
    benchmark.group = "scan-memory"
    path, twin = big
    report = {}
    for name in CONTENDERS:
        done = subprocess.run(
            [sys.executable, "-c", PEAK, name, str(path), str(twin), str(Path(__file__).parent.parent)],
            capture_output=True,
            check=True,
            text=True,
        )
        report[name] = json.loads(done.stdout.strip().splitlines()[-1])  # DuckDB may draw a progress bar first
    print("\npeak RSS (MB):", {k: round(v["peak_mb"]) for k, v in report.items()})
    benchmark.extra_info.update(report)
    benchmark.pedantic(lambda: None, rounds=1)
    assert report["cdrq"]["peak_mb"] < 2000


def test_scan_against_read(big):
    """Per selectivity, `cdrq.read` + the query against `cdrq.scan` + the
    query, alternated round by round; both must return the same frame."""
    path, _ = big
    mb = path.stat().st_size / 1e6
    for label, qs in SELECTIVITIES.items():
        routes = {
            "cdrq.query(cdrq.read(…))": lambda qs=qs: cdrq.query(cdrq.read(path), qs),
            "cdrq.query(cdrq.scan(…)).collect(streaming)": lambda qs=qs: cdrq.query(cdrq.scan(path), qs).collect(
                engine="streaming"
            ),
        }
        results: dict[str, pl.DataFrame] = {}
        times = side_by_side(routes, rounds=3, same=lambda name, df, results=results: results.__setitem__(name, df))
        read, scanned = results.values()
        assert read.height > 0 and scanned.equals(read)
        print(f"\n{label} ({qs}: {read.height} of {N} rows), {mb:.0f} MB, 3 alternating rounds:")
        print(ratio_table(times, mb, "cdrq.query(cdrq.read(…))"))


@pytest.mark.parametrize("kind", ["flat JSON", "nested JSON", "XML"])
def test_json_and_xml_scan_against_read(json_archives, xml_archive, kind, monkeypatch):
    """JSON and XML name their columns only once all is read. Per
    selectivity (and without a query), alternated round by round:
    `cdrq.read` + the query, the scan + the query, and the scan as it was
    before its columns were learnt by the run's own reading (a first pass
    that builds nothing: what it still does past `PREFETCH_BYTES`)."""
    path = {"flat JSON": json_archives[0], "nested JSON": json_archives[1], "XML": xml_archive}[kind]
    mb = path.stat().st_size / 1e6
    scan_module = sys.modules["cdrq.scan"]
    learnt = scan_module.PREFETCH_BYTES

    def scanned(qs: str, budget: int) -> pl.DataFrame:
        monkeypatch.setattr(scan_module, "PREFETCH_BYTES", budget)
        frame = cdrq.scan(path)
        return (cdrq.query(frame, qs) if qs else frame).collect(engine="streaming")

    for label, qs in {**SELECTIVITIES, "100 % (no query)": ""}.items():
        routes = {
            "read + query": lambda qs=qs: cdrq.query(cdrq.read(path), qs) if qs else cdrq.read(path),
            "scan + query": lambda qs=qs: scanned(qs, learnt),
            "scan + query, a pass first": lambda qs=qs: scanned(qs, 0),
        }
        results: dict[str, pl.DataFrame] = {}
        times = side_by_side(routes, rounds=3, same=lambda name, df, results=results: results.__setitem__(name, df))
        read, *scans = results.values()
        assert read.height > 0 and all(scan.equals(read) for scan in scans)
        print(f"\n{kind}, {label} ({qs or 'no query'}: {read.height} rows), {mb:.0f} MB, 3 alternating rounds:")
        print(ratio_table(times, mb, "read + query"))


PEAK_BY_CONSUMER = """
import sys, json, tempfile, cdrq, polars as pl
lf = cdrq.query(cdrq.scan(sys.argv[1]), sys.argv[2]) if sys.argv[2] else cdrq.scan(sys.argv[1])
with tempfile.TemporaryDirectory() as out:
    if sys.argv[3] == "sink_parquet":
        lf.sink_parquet(f"{out}/kept.parquet")
    elif sys.argv[3] == "sink_csv":
        lf.sink_csv(f"{out}/kept.csv")
    else:
        lf.group_by("dst").agg(pl.len(), pl.col("duration").sum()).collect(engine="streaming")
peak = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM"))
print(json.dumps({"peak_mb": peak / 1e3}))
"""


def test_scan_peak_memory_by_selectivity(big):
    """Peak RSS of scan + query in a fresh process, the rows kept consumed
    by a streaming aggregation (what is measured is the scan's own memory)
    or written by `sink_parquet` / `sink_csv` (Polars then holds a dozen
    or so of the frames the scan hands over), and of the scan without a
    query writing every row. Target: 0.5 GB whatever the query."""
    path, _ = big
    report: dict[str, dict[str, float]] = {}
    for label, qs in {**SELECTIVITIES, "100 % (no query)": ""}.items():
        for consumer in ("group_by", "sink_parquet", "sink_csv"):
            done = subprocess.run(
                [sys.executable, "-c", PEAK_BY_CONSUMER, str(path), qs, consumer],
                capture_output=True,
                check=True,
                text=True,
            )
            report.setdefault(label, {})[consumer] = json.loads(done.stdout.strip().splitlines()[-1])["peak_mb"]
    print(f"\npeak RSS of scan + query, {path.stat().st_size / 1e9:.1f} GB (MB):", report)
    assert max(max(r.values()) for r in report.values()) < 500


def test_thread_scaling(big):
    """1 → N threads: reading the CSV whole, and scan + the selective query."""
    path, _ = big
    thread_table(f"cdrq.read({path.name})", lambda n: cdrq.read(path, threads=n), rounds=2)
    thread_table(
        f"cdrq.query(cdrq.scan({path.name}), {QS!r})",
        lambda n: cdrq.query(cdrq.scan(path, threads=n), QS).collect(engine="streaming"),
        rounds=2,
    )
