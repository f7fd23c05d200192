"""Reading UCM JSON: cdrq vs the routes a user would write by hand.

Group "json-flat" (`{"cdr": [...]}`): ``cdrq.read`` (typed) vs ``orjson`` +
``polars.DataFrame`` (strings) vs ``polars.read_json`` + ``explode`` +
``unnest`` (strings). Group "json-nested" (`cdr_root`, main + legs):
``cdrq.read`` vs ``orjson`` + flattening the legs by hand + ``polars.DataFrame``.
"""

from __future__ import annotations

import polars as pl
import pytest

import cdrq

from .byhand import orjson_flat, orjson_nested, polars_flat
from .measure import peak_memory, run


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
