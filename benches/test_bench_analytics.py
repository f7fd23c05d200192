"""Calls, KPIs, concurrency and rating (issue 18), side by side with what
a user writes by hand, in one run, the order of the contenders rotating:

- ``report`` (by trunk, per hour) and ``concurrency`` over a frame in
  memory (CDRQ_BENCH_ANALYTICS_ROWS, default 1 M legs; every fourth leg a
  transfer's second leg) vs the same aggregations in Polars by hand;
- ``rate`` with CDRQ_BENCH_RATE_PREFIXES (default 100 000) prefixes over
  the calls vs the by-hand longest-prefix joins in DuckDB and Polars
  (every prefix length of each number joined, the longest kept);
- ``report``, ``peak_concurrency`` and ``concurrency(every="1h")`` of a
  ``cdrq.scan`` of a generated archive (CDRQ_BENCH_ANALYTICS_SCAN_RECORDS,
  default 1 M records ≈ 300 MB; 16 M ≈ 5 GB) in a fresh process, peak RSS
  asserted under 2 GB.

Every contender's rows are asserted equal. ``-s`` prints the tables.
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

from .gen_cdrs import cached_big_archive, records
from .measure import ratio_table, side_by_side

ROWS = int(os.environ.get("CDRQ_BENCH_ANALYTICS_ROWS", "1000000"))
PREFIXES = int(os.environ.get("CDRQ_BENCH_RATE_PREFIXES", "100000"))
SCAN_RECORDS = int(os.environ.get("CDRQ_BENCH_ANALYTICS_SCAN_RECORDS", "1000000"))
ROUNDS = int(os.environ.get("CDRQ_BENCH_ROUNDS", "5"))


def typed(raw: pl.DataFrame) -> pl.DataFrame:
    """Generated records typed as ``cdrq.read`` types them; every fourth
    leg joins the call before it, and called numbers look international."""
    h = pl.int_range(pl.len(), dtype=pl.Int64) * 2_654_435_761 % 1_000_000_007
    return (
        raw.with_columns(pl.all().replace("", None))
        .with_columns(
            pl.col("AcctId", "duration", "billsec").cast(pl.Int64),
            pl.col("start", "answer", "end").str.to_datetime("%Y-%m-%d %H:%M:%S", time_unit="us", time_zone="UTC"),
            session=pl.when(pl.int_range(pl.len()) % 4 == 3).then(pl.col("session").shift(1)).otherwise("session"),
            dst=pl.when(pl.col("src_trunk_name").is_null())
            .then("00" + (h % 10**11).cast(pl.String).str.zfill(11))
            .otherwise("dst"),
            cdr_kind=pl.lit("record"),
            leg=pl.lit(0, pl.Int64),
        )
        .rechunk()
    )


@pytest.fixture(scope="module")
def legs() -> pl.DataFrame:
    return typed(records(ROWS))


def report_by_hand(df: pl.DataFrame) -> pl.DataFrame:
    """`cdrq.report(df, by="trunk", every="1h")` written out: legs into
    calls, then the KPIs."""
    calls = (
        df.lazy()
        .group_by("session")
        .agg(
            talk=pl.col("billsec").sum(),
            any_answered=(pl.col("disposition") == "ANSWERED").any(),
            last=pl.col("disposition").last(),
            start=pl.col("start").min(),
            src_trunk=pl.col("src_trunk_name").first(ignore_nulls=True),
            dst_trunk=pl.col("dst_trunk_name").first(ignore_nulls=True),
        )
        .select(
            trunk=pl.coalesce("src_trunk", "dst_trunk"),
            period=pl.col("start").dt.truncate("1h"),
            talk="talk",
            disposition=pl.when("any_answered").then(pl.lit("ANSWERED")).otherwise("last"),
        )
    )
    answered = pl.col("disposition") == "ANSWERED"
    talk = pl.col("talk").filter(answered)
    return (
        calls.group_by("trunk", "period")
        .agg(
            calls=pl.len(),
            answered=answered.sum(),
            asr=answered.sum() / pl.len(),
            acd=talk.sum() / answered.sum(),
            talk_total=talk.sum(),
            talk_avg=talk.mean(),
            talk_p50=talk.quantile(0.5, "linear"),
            talk_p95=talk.quantile(0.95, "linear"),
            short_calls=(answered & (pl.col("talk") < 10)).sum(),
            missed=(pl.col("disposition") == "NO ANSWER").sum(),
            busy=(pl.col("disposition") == "BUSY").sum(),
            failed=pl.col("disposition").is_in(["FAILED", "CONGESTION"]).sum(),
        )
        .sort("trunk", "period", nulls_last=True)
        .collect()
    )


def concurrency_by_hand(df: pl.DataFrame) -> pl.DataFrame:
    """The step function by hand: calls, then +1/-1 events sorted (ends
    first at the same instant), a running sum, one row per change."""
    calls = df.lazy().group_by("session").agg(start=pl.col("start").min(), end=pl.col("end").max())
    calls = calls.filter(pl.col("start") < pl.col("end"))
    events = pl.concat([calls.select(time="start", delta=pl.lit(1)), calls.select(time="end", delta=pl.lit(-1))])
    return (
        events.group_by("time")
        .agg(pl.col("delta").sum())
        .sort("time")
        .select("time", calls=pl.col("delta").cum_sum())
        .filter(pl.col("calls") != pl.col("calls").shift(1, fill_value=0))
        .collect()
    )


def show(title: str, times: dict, mb: float, base: str) -> None:
    print(f"\n{title}\n{ratio_table(times, mb, base)}")


def test_report_and_concurrency_in_memory(legs):
    mb = legs.estimated_size() / 1e6

    def same(expected):
        def check(name, result):
            assert result.equals(expected, null_equal=True), name

        return check

    expected = report_by_hand(legs)
    assert expected["calls"].sum() == legs["session"].n_unique()
    times = side_by_side(
        {
            "cdrq.report": lambda: cdrq.report(legs, by="trunk", every="1h"),
            "polars by hand": lambda: report_by_hand(legs),
        },
        rounds=ROUNDS,
        same=same(expected),
    )
    show(f"report by trunk per hour, {legs.height:,} legs", times, mb, "polars by hand")
    expected = concurrency_by_hand(legs)
    times = side_by_side(
        {"cdrq.concurrency": lambda: cdrq.concurrency(legs), "polars by hand": lambda: concurrency_by_hand(legs)},
        rounds=ROUNDS,
        same=same(expected),
    )
    show(f"concurrency (step function), {legs.height:,} legs", times, mb, "polars by hand")


def rate_table(n: int) -> pl.DataFrame:
    """``n`` distinct international prefixes, 3 to 9 digits, with rates."""
    h = pl.int_range(n * 3, dtype=pl.Int64) * 2_654_435_761 % 1_000_000_007
    prefixes = ("00" + (h % 10_000_000).cast(pl.String)).str.slice(0, 3 + h % 7)
    table = pl.select(prefix=prefixes).unique(maintain_order=True).head(n)
    return table.with_columns(rate=(pl.int_range(pl.len()) % 97 + 1) / 100, increment=pl.lit("60/60"))


RATE_SQL = """
WITH candidates AS (
    SELECT c.call, substr(c.dst, 1, k) AS prefix, k
    FROM calls c, range(1, 20) AS t(k) WHERE k <= length(c.dst)
), best AS (
    SELECT call, arg_max(r.prefix, k) AS prefix FROM candidates JOIN rates r USING (prefix) GROUP BY call
)
SELECT c.call, b.prefix, r.rate,
       CASE WHEN b.prefix IS NULL THEN NULL WHEN c.talk <= 0 THEN 0.0
            ELSE r.rate * (CASE WHEN c.talk <= 60 THEN 60 ELSE 60 + ceil((c.talk - 60) / 60) * 60 END) / 60 END AS cost
FROM calls c LEFT JOIN best b USING (call) LEFT JOIN rates r USING (prefix)
"""


def rate_duckdb(calls: pl.DataFrame, rates: pl.DataFrame) -> pl.DataFrame:
    con = duckdb.connect()
    con.register("calls", calls.select("call", "dst", "talk"))
    con.register("rates", rates)
    return con.sql(RATE_SQL).pl()


def rate_polars(calls: pl.DataFrame, rates: pl.DataFrame) -> pl.DataFrame:
    c = calls.lazy().select("call", "dst", "talk")
    best = (
        c.with_columns(k=pl.int_ranges(1, pl.col("dst").str.len_bytes() + 1))
        .explode("k")
        .with_columns(prefix=pl.col("dst").str.slice(0, pl.col("k")))
        .join(rates.lazy().select("prefix"), on="prefix")
        .group_by("call")
        .agg(pl.col("prefix").sort_by("k").last())
    )
    talk = pl.col("talk")
    billed = pl.when(talk <= 60).then(60).otherwise(60 + ((talk - 60 + 59) // 60) * 60)
    return (
        c.join(best, on="call", how="left")
        .join(rates.lazy().select("prefix", "rate"), on="prefix", how="left")
        .select(
            "call",
            "prefix",
            "rate",
            cost=pl.when(pl.col("prefix").is_null())
            .then(None)
            .when(talk <= 0)
            .then(0.0)
            .otherwise(pl.col("rate") * billed / 60),
        )
        .collect()
    )


def test_rate(legs):
    calls = cdrq.calls(legs)
    rates = rate_table(PREFIXES)

    def mine() -> pl.DataFrame:
        return cdrq.rate(calls, rates).select("call", "prefix", "rate", "cost")

    # No contender sorts (a sort of 3.75 M call ids is a fixed cost that
    # says nothing of the rating): the rows are compared in call order.
    expected = mine().sort("call")
    assert expected["prefix"].null_count() < expected.height

    def same(name, result):
        result = result.sort("call")
        assert result.select("call", "prefix").equals(expected.select("call", "prefix")), name
        cost = (result["cost"] - expected["cost"]).abs().max()
        assert cost is None or cost < 1e-9, name

    times = side_by_side(
        {
            "cdrq.rate": mine,
            "duckdb by hand": lambda: rate_duckdb(calls, rates),
            "polars by hand": lambda: rate_polars(calls, rates),
        },
        rounds=ROUNDS,
        same=same,
    )
    show(
        f"rate: {rates.height:,} prefixes over {calls.height:,} calls", times, calls.estimated_size() / 1e6, "cdrq.rate"
    )


SCAN = """
import json, sys, time, cdrq
def peak():
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM")) / 1e3
t = time.perf_counter()
kpis = cdrq.report(cdrq.scan(sys.argv[1]), by="trunk", every="1h")
t_report = time.perf_counter() - t
t = time.perf_counter()
peak_calls = cdrq.peak_concurrency(cdrq.scan(sys.argv[1]))
t_peak = time.perf_counter() - t
t = time.perf_counter()
hourly = cdrq.concurrency(cdrq.scan(sys.argv[1]), every="1h")
t_hourly = time.perf_counter() - t
print(json.dumps({"calls": int(kpis["calls"].sum()), "peak": int(peak_calls["peak"][0]),
                  "hourly_peak": int(hourly["peak"].max()), "report_s": t_report, "peak_s": t_peak,
                  "hourly_s": t_hourly, "peak_rss_mb": peak()}))
"""


def test_scan_in_bounded_memory():
    path, _ = cached_big_archive(SCAN_RECORDS, Path(__file__).parent / ".data")
    out = subprocess.run([sys.executable, "-c", SCAN, str(path)], capture_output=True, check=True, text=True)
    r = json.loads(out.stdout)
    mb = path.stat().st_size / 1e6
    print(
        f"\nscan of {mb:,.0f} MB ({SCAN_RECORDS:,} records): report by trunk per hour {r['report_s']:.1f} s, "
        f"peak_concurrency {r['peak_s']:.1f} s, concurrency per hour {r['hourly_s']:.1f} s, "
        f"peak RSS {r['peak_rss_mb']:.0f} MB"
    )
    assert r["calls"] == SCAN_RECORDS  # the generator gives every record its own session
    assert r["hourly_peak"] == r["peak"]
    assert r["peak_rss_mb"] < 2000
