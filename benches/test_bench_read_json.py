"""Reading UCM JSON: cdrq vs the routes a user would write by hand.

Group "json-flat" (`{"cdr": [...]}`): ``cdrq.read`` (typed) vs ``orjson`` +
``polars.DataFrame`` (strings) vs ``polars.read_json`` + ``explode`` +
``unnest`` (strings). Group "json-nested" (`cdr_root`, main + legs):
``cdrq.read`` vs ``orjson`` + flattening the legs by hand + ``polars.DataFrame``.
``test_side_by_side_json`` alternates the contenders round by round and
checks they return the same rows; ``test_json_thread_scaling`` prints the
1 → N threads table.
"""

from __future__ import annotations

import statistics

import polars as pl
import pytest

import cdrq

from .byhand import orjson_flat, orjson_nested, polars_flat
from .measure import peak_memory, ratio_table, run, same_rows, side_by_side, thread_table

#: The columns every contender must agree on, row for row.
CHECKED = ["AcctId", "src", "dst", "start", "billsec", "session"]


@pytest.mark.benchmark(group="json-flat")
def test_cdrq_read_flat(benchmark, json_archives):
    df = run(benchmark, cdrq.read, json_archives[0])
    assert df.schema["AcctId"] == pl.Int64


@pytest.mark.benchmark(group="json-flat")
def test_orjson_dataframe_flat(benchmark, json_archives):
    df = run(benchmark, orjson_flat, json_archives[0])
    assert df.height > 0


@pytest.mark.benchmark(group="json-flat")
def test_polars_read_json_flat(benchmark, json_archives):
    df = run(benchmark, polars_flat, json_archives[0])
    assert df.height > 0


@pytest.mark.benchmark(group="json-nested")
def test_cdrq_read_nested(benchmark, json_archives):
    df = run(benchmark, cdrq.read, json_archives[1])
    assert set(df["cdr_kind"].unique()) == {"main", "sub"}


@pytest.mark.benchmark(group="json-nested")
def test_orjson_dataframe_nested(benchmark, json_archives):
    df = run(benchmark, orjson_nested, json_archives[1])
    assert df.height > 0


def as_text_times(frame: pl.DataFrame) -> pl.DataFrame:
    """cdrq's typed times as the archive writes them, to compare with strings."""
    return frame.with_columns(pl.col("start").dt.strftime("%Y-%m-%d %H:%M:%S"))


def test_side_by_side_json(json_archives):
    """Rounds alternate the contenders (after a warm-up round whose results
    are compared row for row); min / median and the ratios to cdrq."""
    flat, nested = json_archives
    groups = {
        flat: {
            "cdrq.read": lambda: cdrq.read(flat),
            "orjson + polars.DataFrame": lambda: orjson_flat(flat),
            "polars.read_json + explode + unnest": lambda: polars_flat(flat),
        },
        nested: {
            "cdrq.read": lambda: cdrq.read(nested),
            "orjson + legs by hand + polars.DataFrame": lambda: orjson_nested(nested),
        },
    }
    for path, routes in groups.items():
        results: dict[str, pl.DataFrame] = {}

        def keep(name, frame, results=results):
            results[name] = as_text_times(frame) if name.startswith("cdrq") else frame

        times = side_by_side(routes, rounds=5, same=keep)
        # Not `cdr_kind`: cdrq makes a call of a main leg alone one `record`
        # row (docs/query-language.md §5); the by-hand route calls it `main`.
        columns = CHECKED + (["leg"] if path == nested else [])
        same_rows(results, columns)
        print(f"\n{path.name}, {path.stat().st_size / 1e6:.0f} MB, 5 alternating rounds:")
        print(ratio_table(times, path.stat().st_size / 1e6, "cdrq.read"))
        cdrq_median = statistics.median(times["cdrq.read"])
        assert all(statistics.median(t) > 0 for t in times.values()) and cdrq_median > 0


def test_json_thread_scaling(json_archives):
    flat, nested = json_archives
    thread_table(f"cdrq.read({flat.name})", lambda n: cdrq.read(flat, threads=n))
    thread_table(f"cdrq.read({nested.name})", lambda n: cdrq.read(nested, threads=n))


@pytest.mark.benchmark(group="memory")
def test_peak_memory_json(benchmark, json_archives):
    flat, nested = json_archives
    report = peak_memory(
        {
            "cdrq-flat": ("cdrq.read(path)", flat),
            "orjson-flat": ("__import__('byhand').orjson_flat(__import__('pathlib').Path(path))", flat),
            "polars-flat": ("__import__('byhand').polars_flat(path)", flat),
            "cdrq-nested": ("cdrq.read(path)", nested),
        }
    )
    benchmark.extra_info.update(report)
    benchmark.pedantic(lambda: None, rounds=1)
