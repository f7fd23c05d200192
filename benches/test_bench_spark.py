"""Spark local[N]: the cdrq data source (the query pushed into its reader
with ``.option("query", …)``) + `to_spark` vs Spark's own CSV
reader on the clean twin + the same filter written by hand in PySpark, for
N = 1 and every power of two up to the cores; the scaling table and the
ratio at each N are printed and recorded."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from .gen_cdrs import cached_archive, cached_big_archive

pytest.importorskip("pyspark")

#: 2 M records ≈ 624 MB by default; CDRQ_BENCH_SPARK_RECORDS=32000000 ≈ 10 GB.
RECORDS = int(os.environ.get("CDRQ_BENCH_SPARK_RECORDS", "2000000"))
QS = "caller=6001,6100-6109&minDur=600"


def session(cores: int):
    from pyspark.sql import SparkSession

    os.environ["PYSPARK_PYTHON"] = sys.executable
    spark = (
        SparkSession.builder.master(f"local[{cores}]")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.driver.memory", "4g")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def cdrq_route(spark, path: Path) -> int:
    import cdrq.engines.spark

    cdrq.engines.spark.register(spark)
    df = spark.read.format("cdrq").option("splitBytes", str(32 << 20)).option("query", QS).load(str(path))
    return df.filter(cdrq.engines.spark.to_spark(QS)).count()


def spark_route(spark, twin: Path) -> int:
    from pyspark.sql import functions as F

    df = spark.read.option("header", "true").option("inferSchema", "false").csv(str(twin))
    src, billsec = F.col("src"), F.col("billsec").cast("long")
    in_range = (F.length(src) == 4) & (src >= F.lit("6100")) & (src <= F.lit("6109"))
    return df.filter(((src == "6001") | in_range) & (billsec >= 600)).count()


def test_spark_data_source_vs_spark_csv(benchmark):
    data = Path(__file__).parent / ".data"
    big = RECORDS > 4_000_000  # written in batches; no warm-up round on such sizes
    path, twin = cached_big_archive(RECORDS, data) if big else cached_archive(RECORDS, data)
    cores = os.cpu_count() or 1
    table = {}
    for n in sorted({1, 2, 4, 8, 16, cores} & set(range(1, cores + 1))):
        spark = session(n)
        try:
            times = {}
            for name, route, source in [("cdrq", cdrq_route, path), ("spark-csv", spark_route, twin)]:
                if not big:
                    route(spark, source)  # warm-up: the JVM, the Python workers, the page cache
                start = time.perf_counter()
                count = route(spark, source)
                times[name] = time.perf_counter() - start
                times[f"{name}-rows"] = count
        finally:
            spark.stop()
        assert times["cdrq-rows"] == times["spark-csv-rows"]
        table[n] = {k: round(v, 2) for k, v in times.items()}
    base = table[min(table)]
    for row in table.values():
        row["cdrq_speedup"] = round(base["cdrq"] / row["cdrq"], 2)
        row["spark_csv_speedup"] = round(base["spark-csv"] / row["spark-csv"], 2)
        row["cdrq_vs_spark_csv"] = round(row["spark-csv"] / row["cdrq"], 2)
    print("\nspark local[N] (s):", table)
    benchmark.extra_info.update(table={str(k): v for k, v in table.items()}, mb=round(path.stat().st_size / 1e6))
    benchmark.pedantic(lambda: None, rounds=1)
