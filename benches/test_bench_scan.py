"""Scanning a large archive with a selective query: `cdrq.scan` +
`cdrq.query` vs `polars.scan_csv` on the clean twin + the same filter by
hand vs DuckDB `read_csv` + SQL, side by side in one run (group "scan");
peak RSS of each in a fresh process; and cdrq's thread scaling.

The archive is generated once into benches/.data (CDRQ_BENCH_SCAN_RECORDS,
default 16 M records ≈ 5 GB, and its twin of the same size).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import polars as pl
import pytest

import cdrq

from .gen_cdrs import cached_big_archive

N = int(os.environ.get("CDRQ_BENCH_SCAN_RECORDS", "16000000"))
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


def test_scan_thread_scaling(benchmark, big):
    benchmark.group = "scan-threads"
    path, _ = big
    cores = os.cpu_count() or 1
    counts = sorted({1, 2, 4, 8, 16, cores} & set(range(1, cores + 1)))
    seconds = {}
    for threads in counts:
        start = time.perf_counter()
        cdrq.query(cdrq.scan(path, threads=threads), QS).collect(engine="streaming")
        seconds[threads] = time.perf_counter() - start
    table = {t: {"s": round(s, 2), "speedup": round(seconds[1] / s, 2)} for t, s in seconds.items()}
    print("\nthreads → seconds, speed-up:", table)
    benchmark.extra_info.update(table={str(k): v for k, v in table.items()}, cores=cores)
    benchmark.pedantic(lambda: None, rounds=1)
