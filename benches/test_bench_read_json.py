"""Reading UCM JSON: cdrq vs the routes a user would write by hand.

Group "json-flat" (`{"cdr": [...]}`): ``cdrq.read`` (typed) vs ``orjson`` +
``polars.DataFrame`` (strings) vs ``polars.read_json`` + ``explode`` +
``unnest`` (strings). Group "json-nested" (`cdr_root`, main + legs):
``cdrq.read`` vs ``orjson`` + flattening the legs by hand + ``polars.DataFrame``.
"""

from __future__ import annotations

import re

import orjson
import polars as pl
import pytest

import cdrq

ROUNDS = 3
LEG = re.compile(r"sub_cdr_(\d+)")


def run(benchmark, fn, path):
    size_mb = path.stat().st_size / 1e6
    df = benchmark.pedantic(fn, args=(path,), rounds=ROUNDS, iterations=1, warmup_rounds=1)
    benchmark.extra_info.update(mb=round(size_mb), mb_per_s=round(size_mb / benchmark.stats["median"]))
    return df


def orjson_flat(path):
    return pl.DataFrame(orjson.loads(path.read_bytes())["cdr"])


def polars_flat(path):
    return pl.read_json(path).explode("cdr").unnest("cdr")


def orjson_nested(path):
    rows = []
    for call in orjson.loads(path.read_bytes())["cdr_root"]:
        if not call:
            continue
        if main := call.get("main_cdr"):
            rows.append({**main, "cdr_kind": "main", "leg": 0})
        legs = sorted((int(m.group(1)), v) for k, v in call.items() if (m := LEG.fullmatch(k)) and v)
        rows.extend({**leg, "cdr_kind": "sub", "leg": n} for n, leg in legs)
    return pl.DataFrame(rows)


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
