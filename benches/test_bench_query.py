"""Queries: `cdrq.query` vs the filter a skilled user writes by hand in
Polars, and vs hand-written DuckDB SQL on a native DuckDB table of the same
data (query time only, the matching records fetched as a Polars frame like
the other two deliver), for five query shapes; plus compiling a query and a
1000-record `cdrq.cdrapi` JSON page. One group per shape, and a
side-by-side table whose rounds alternate the three contenders, so that
this machine's drift lands on all of them alike."""

from __future__ import annotations

import os
import statistics
import time
from datetime import datetime, timezone

import duckdb
import polars as pl
import pytest

import cdrq
from cdrq.query import compile_query

from .gen_cdrs import records

N = int(os.environ.get("CDRQ_BENCH_QUERY_RECORDS", "5000000"))
ROUNDS = 5
SIDE_BY_SIDE_ROUNDS = int(os.environ.get("CDRQ_BENCH_QUERY_ROUNDS", "11"))
T0, T1 = datetime(2023, 11, 20, tzinfo=timezone.utc), datetime(2023, 11, 25, tzinfo=timezone.utc)
EXACT = [str(6000 + 7 * i) for i in range(20)]

SHAPES = {
    "exact": (
        "caller=" + ",".join(EXACT),
        lambda: pl.col("src").is_in(EXACT),
        "src IN (" + ",".join(f"'{v}'" for v in EXACT) + ")",
    ),
    "prefix": ("caller=07@", lambda: pl.col("src").str.starts_with("07"), "starts_with(src, '07')"),
    "ranges": (
        "caller=6100-6199,6300-6349",
        lambda: (
            (d := pl.col("src").str.replace_all(r"\D", "").cast(pl.Int64, strict=False)).is_between(6100, 6199)
            | d.is_between(6300, 6349)
        ),
        "(TRY_CAST(regexp_replace(src, '\\D', '', 'g') AS BIGINT) BETWEEN 6100 AND 6199"
        " OR TRY_CAST(regexp_replace(src, '\\D', '', 'g') AS BIGINT) BETWEEN 6300 AND 6349)",
    ),
    "wildcard": ("caller=_1@5", lambda: pl.col("src").str.contains(r"^.1.*5$"), "src LIKE '_1%5'"),
    "time_billsec": (
        "startTime=2023-11-20T00:00:00&endTime=2023-11-25T00:00:00&minDur=60",
        lambda: pl.col("start").is_between(T0, T1) & (pl.col("billsec") >= 60),
        "start BETWEEN TIMESTAMPTZ '2023-11-20 00:00:00+00' AND TIMESTAMPTZ '2023-11-25 00:00:00+00' AND billsec >= 60",
    ),
}


@pytest.fixture(scope="module")
def frame() -> pl.DataFrame:
    df = records(N).with_columns(
        pl.col("AcctId", "duration", "billsec").cast(pl.Int64),
        pl.col("start").str.to_datetime("%Y-%m-%d %H:%M:%S", time_zone="UTC"),
        pl.lit("record").alias("cdr_kind"),
    )
    return df.with_columns(pl.col(c).replace("", None) for c in df.columns if df.schema[c] == pl.String)


@pytest.fixture(scope="module")
def duck(frame, tmp_path_factory):
    path = tmp_path_factory.mktemp("duck") / "cdrs.parquet"
    frame.write_parquet(path)
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute(f"CREATE TABLE cdrs AS SELECT * FROM '{path}'")
    return con


@pytest.mark.parametrize("shape", SHAPES)
def test_cdrq_query(benchmark, frame, shape):
    benchmark.group = f"query-{shape}"
    qs, by_hand, _ = SHAPES[shape]
    out = benchmark.pedantic(cdrq.query, args=(frame, qs), rounds=ROUNDS, warmup_rounds=1)
    assert out["AcctId"].to_list() == frame.filter(by_hand())["AcctId"].to_list()


@pytest.mark.parametrize("shape", SHAPES)
def test_polars_by_hand(benchmark, frame, shape):
    benchmark.group = f"query-{shape}"
    _, by_hand, _ = SHAPES[shape]
    benchmark.pedantic(lambda: frame.filter(by_hand()), rounds=ROUNDS, warmup_rounds=1)


def duckdb_route(duck, sql: str):
    query = f"SELECT * FROM cdrs WHERE {sql} ORDER BY AcctId"
    return lambda: duck.sql(query).pl()


@pytest.mark.parametrize("shape", SHAPES)
def test_duckdb_sql(benchmark, duck, frame, shape):
    benchmark.group = f"query-{shape}"
    _, by_hand, sql = SHAPES[shape]
    rows = benchmark.pedantic(duckdb_route(duck, sql), rounds=ROUNDS, warmup_rounds=1)
    assert rows["AcctId"].to_list() == frame.filter(by_hand())["AcctId"].to_list()


def test_side_by_side(frame, duck):
    """Per shape: rounds alternate cdrq, Polars by hand and DuckDB; the
    table gives min / median (ms) and cdrq's ratios."""
    print(f"\nqueries over {frame.height:,} records, {SIDE_BY_SIDE_ROUNDS} alternating rounds (ms, min / median)")
    print("| shape | cdrq | Polars by hand | DuckDB | cdrq ÷ by hand | cdrq ÷ DuckDB |")
    print("|---|---:|---:|---:|---:|---:|")
    for shape, (qs, by_hand, sql) in SHAPES.items():
        routes = {
            "cdrq": lambda qs=qs: cdrq.query(frame, qs),
            "hand": lambda by_hand=by_hand: frame.filter(by_hand()),
            "duck": duckdb_route(duck, sql),
        }
        times: dict[str, list[float]] = {k: [] for k in routes}
        for r in range(SIDE_BY_SIDE_ROUNDS + 1):
            order = list(routes)[r % 3 :] + list(routes)[: r % 3]
            for name in order:
                t0 = time.perf_counter()
                routes[name]()
                if r:  # the first round warms up
                    times[name].append(time.perf_counter() - t0)
        lo = {k: min(v) * 1e3 for k, v in times.items()}
        mid = {k: statistics.median(v) * 1e3 for k, v in times.items()}
        cells = [f"{lo[k]:.1f} / {mid[k]:.1f}" for k in routes]
        ratios = [f"{lo['cdrq'] / lo[k]:.2f} / {mid['cdrq'] / mid[k]:.2f}" for k in ("hand", "duck")]
        print(f"| {shape} | " + " | ".join(cells + ratios) + " |")


def test_compile_query(benchmark):
    benchmark.group = "compile"
    qs = "format=json&caller=5300,5302-5304,_4@&callee=5@&startTime=2013-07-01T00:00:00&endTime=now&minDur=8"
    benchmark(compile_query, qs)
    assert benchmark.stats["median"] < 1e-3


def test_cdrapi_json_page(benchmark, frame):
    benchmark.group = "cdrapi"
    body = benchmark.pedantic(
        cdrq.cdrapi, args=(frame.head(200_000), "format=json&caller=6@&numRecords=1000"), rounds=ROUNDS
    )
    assert body.count('"main_cdr"') == 1000
