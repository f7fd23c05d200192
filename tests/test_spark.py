"""cdrq on Spark (local mode): the data source reads like `cdrq.read`, a
split CSV like an unsplit one, rejects on request; `spark_query` gives the
rows `cdrq.query` gives."""

from __future__ import annotations

import os
import shutil
import sys

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from test_grammar_agreement import GROUPS, NOW, frames, queries
from test_scan import csv_archive

import cdrq

pyspark = pytest.importorskip("pyspark")
from cdrq.engines import spark as cdrq_spark  # noqa: E402


@pytest.fixture(scope="module")
def spark():
    from pyspark.sql import SparkSession

    # Spark's Python workers must be this interpreter, which has cdrq.
    os.environ["PYSPARK_PYTHON"] = sys.executable
    session = (
        SparkSession.builder.master("local[2]")
        .appName("cdrq-tests")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .getOrCreate()
    )
    cdrq_spark.register(session)
    yield session
    session.stop()


def utc_rows(frame: pl.DataFrame) -> list[tuple]:
    """Rows as Spark returns them: times as naive UTC."""
    times = [n for n, t in frame.schema.items() if isinstance(t, pl.Datetime)]
    frame = frame.with_columns(pl.col(n).dt.convert_time_zone("UTC").dt.replace_time_zone(None) for n in times)
    return frame.rows()


@pytest.mark.parametrize(
    "name",
    [
        "ucm6510-fw1.0.2.5-cdrapi.csv",
        "ucm6xxx-fw1.0.11-cdrapi.csv",
        "ucm6100-fw1.0.x-cdrapi.json",
        "ucm6xxx-fw1.0.11-cdrapi-transfer.json",
        "portsip-v22-api-cdrs-response.partial.json",
    ],
)
def test_reads_every_sample_like_cdrq_read(spark, samples, name):
    df = spark.read.format("cdrq").option("tz", "Europe/Berlin").load(str(samples / name))
    expected = cdrq.read(samples / name, tz="Europe/Berlin")
    assert df.columns == expected.columns
    assert [tuple(r) for r in df.collect()] == utc_rows(expected)


def test_a_large_csv_is_split_and_reads_the_same(spark, tmp_path):
    path = tmp_path / "big.csv"
    path.write_text(csv_archive(3000))
    whole = spark.read.format("cdrq").load(str(path))
    split = spark.read.format("cdrq").option("splitBytes", "20000").load(str(path))
    assert split.rdd.getNumPartitions() > 5
    assert sorted(tuple(r) for r in split.collect()) == sorted(tuple(r) for r in whole.collect())
    assert split.count() == 3000


def test_a_large_json_is_split_at_element_starts(spark, tmp_path):
    path = tmp_path / "big.json"
    path.write_text(cdrq.render(cdrq.read(csv_archive(2000).encode()), "json"))
    split = spark.read.format("cdrq").option("splitBytes", "50000").load(str(path))
    assert split.rdd.getNumPartitions() > 5
    assert sorted(r["AcctId"] for r in split.select("AcctId").collect()) == list(range(1, 2001))
    assert sorted(tuple(r) for r in split.collect()) == sorted(utc_rows(cdrq.read(path)))


def test_rejects_on_request(spark, tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text(csv_archive(10).replace("\n4,", "\nx,", 1))
    rejects = spark.read.format("cdrq").option("rejects", "true").load(str(path)).collect()
    assert [(r["line"], r["raw"][:2]) for r in rejects] == [(5, "x,")]


@settings(max_examples=int(os.environ.get("CDRQ_SPARK_EXAMPLES", "12")), suppress_health_check=[HealthCheck.too_slow])
@given(frames(), queries())
def test_spark_query_gives_the_rows_polars_gives(spark, tmp_path_factory, df, qs):
    path = tmp_path_factory.mktemp("spark") / "cdrs.parquet"
    # An empty frame's columns have no type; give them theirs.
    text = {c: pl.String for c in ("src", "dst", "disposition", "caller_name", "cdr_kind")}
    df = df.cast({"AcctId": pl.Int64, "billsec": pl.Int64, **text})
    df.write_parquet(path)
    plan = cdrq.compile_query(qs, NOW, GROUPS)  # once, for both engines
    expected = cdrq.query(df, plan)["AcctId"].to_list()
    got = cdrq_spark.spark_query(spark.read.parquet(str(path)), plan, order_by="AcctId")
    assert [r["AcctId"] for r in got.select("AcctId").collect()] == expected
    shutil.rmtree(path.parent)


def test_cli_spark_engine_answers_like_polars(tmp_path):
    import subprocess

    path = tmp_path / "a.csv"
    path.write_text(csv_archive(300))
    cdrq.convert(path, tmp_path / "ds")
    cli = [sys.executable, "-m", "cdrq", "query"]
    for source, qs, library in [
        (path, "caller=5300-5320&format=json", False),
        (tmp_path / "ds", "minDur=80&order=desc", True),
    ]:
        flags = ["--library"] if library else []
        polars = subprocess.run([*cli, *flags, str(source), qs], capture_output=True, text=True)
        spark = subprocess.run([*cli, *flags, "--engine", "spark", str(source), qs], capture_output=True, text=True)
        assert spark.returncode == polars.returncode == 0, spark.stderr[-2000:]
        assert spark.stdout == polars.stdout


def test_a_query_option_filters_in_the_reader(spark, tmp_path):
    path = tmp_path / "a.csv"
    path.write_text(csv_archive(2000))
    qs = "caller=5300-5330&minDur=40"
    pushed = spark.read.format("cdrq").option("query", qs).option("columns", "AcctId,src,dst,billsec,cdr_kind,start")
    pushed = pushed.load(str(path))
    assert pushed.columns == ["AcctId", "src", "dst", "billsec", "cdr_kind", "start"]
    assert pushed.count() < 2000 // 3
    exact = cdrq_spark.spark_query(pushed, qs, order_by="AcctId")
    assert [r["AcctId"] for r in exact.select("AcctId").collect()] == cdrq.query(cdrq.read(path), qs)[
        "AcctId"
    ].to_list()
