"""`cdrq.to_sql`: the plan as SQL (sqlglot), run by DuckDB over the Parquet
of the same frame, gives the rows `cdrq.query` gives, in the same order."""

from __future__ import annotations

import os

import duckdb
import pytest
from hypothesis import given, settings
from test_grammar_agreement import GROUPS, NOW, frames, queries

import cdrq
from cdrq.engines.sql import to_sql


def duck_ids(df, qs, tmp_path) -> list[int]:
    path = tmp_path / "cdrs.parquet"
    df.write_parquet(path)
    con = duckdb.connect()
    con.execute(f"CREATE VIEW cdrs AS SELECT * FROM read_parquet('{path}')")
    plan = qs if isinstance(qs, cdrq.Plan) else cdrq.compile_query(qs, NOW)
    sql = to_sql(plan, "duckdb", order_by="AcctId")
    return [row[0] for row in con.execute(f'SELECT "AcctId" FROM ({sql})').fetchall()]


@settings(max_examples=int(os.environ.get("CDRQ_SQL_EXAMPLES", "40")))
@given(frames(), queries())
def test_duckdb_gives_the_rows_polars_gives(tmp_path_factory, df, qs):
    plan = cdrq.compile_query(qs, NOW, GROUPS)  # once, for both engines
    expected = cdrq.query(df, plan)["AcctId"].to_list()
    assert duck_ids(df, plan, tmp_path_factory.mktemp("sql")) == expected


@pytest.mark.parametrize(
    "qs",
    [
        "caller=99999999999999999990-99999999999999999999",  # past any integer type
        "caller=@&callee=0-5",  # null is the empty string for @ and ranges
        "caller=a_c,5@,@7,@3@",
        "callerName=ann&status=busy,failed",
        "caller=5300&order=desc&numRecords=2&offset=1",
    ],
)
def test_listed_cases(tmp_path, qs):
    import polars as pl

    df = pl.DataFrame(
        {
            "AcctId": [1, 2, 3, 4, 5, 6],
            "src": ["99999999999999999995", None, "abc", "5300", "5300", "0-3"],
            "dst": [None, "4", "x7", "z3z", "5", ""],
            "start": [None] * 6,
            "billsec": [1, 2, 3, 4, 5, 6],
            "disposition": ["BUSY", "FAILED", "ANSWERED", "CONGESTION", "BUSY", "NO ANSWER"],
            "caller_name": ["Ann", None, "joANNa", "Bob", "ann", None],
            "cdr_kind": ["record", "sub", None, "record", "sub", "main"],
        },
        schema_overrides={"start": pl.Datetime("us", "UTC")},
    )
    assert duck_ids(df, qs, tmp_path) == cdrq.query(df, qs)["AcctId"].to_list()


def test_other_dialects_and_literals_only():
    hostile = "caller=1'%3B DROP TABLE cdrs--"
    with pytest.raises(cdrq.QueryError):
        to_sql(hostile)
    sql = to_sql("callerName=o'brien", "spark")
    assert "'o''brien'" in sql or "'o\\'brien'" in sql
    assert "RLIKE" in to_sql("caller=_1@", "spark")
    assert "REGEXP_LIKE" in to_sql("caller=_1@", "trino")
    with pytest.raises(cdrq.CdrqError, match="order_by"):
        to_sql("order=desc")
