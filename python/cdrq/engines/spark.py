"""cdrq on Apache Spark (≥ 4.0): the Rust readers as a Python data source,
and queries compiled to Spark expressions.

``pip install cdrq[spark]`` (pyspark, and pyarrow for the batches Spark
takes). Then::

    import cdrq.engines.spark
    cdrq.engines.spark.register(spark)
    df = spark.read.format("cdrq").option("tz", "Europe/Berlin").load("s3a://…/cdrs/*.csv")
    legs = cdrq.engines.spark.spark_query(df, "caller=5300,6300-6399&minDur=8", order_by="AcctId")

``.option("columns", "AcctId,src,billsec")`` builds only those columns;
``.option("query", qs)`` hands a query to the Rust reader, which drops the
records it cannot match before Spark sees them (then filter with
``to_spark(qs)`` or ``spark_query`` for the exact rows).

Partitions: one per file; a CDR API CSV larger than ``splitBytes``
(default 128 MiB) split into byte ranges, each read from its first line
start (the Rust reader takes the header from the file's start); a large
JSON file split at true element starts of its record array (found by one
parse on the driver that builds nothing). Each
partition runs the Rust reader on the executor and hands Spark Arrow
batches. ``.option("rejects", "true")`` returns the lenient mode's
rejected records (source, line, column, reason, raw) instead of the rows.
The query side is :func:`cdrq.to_sql` for dialect ``spark`` — the same
plan, as a sqlglot tree — turned into a Column.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import polars as pl
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.datasource import DataSource, DataSourceReader, InputPartition

from cdrq import _core
from cdrq.engines.sql import condition_of, to_expression
from cdrq.query import now_us
from cdrq.read import REJECT_SCHEMA


def register(spark: SparkSession) -> None:
    """Makes ``spark.read.format("cdrq")`` available."""
    spark.dataSource.register(CdrqDataSource)


def to_spark(qs: str, now: datetime | None = None, groups: Mapping[str, Sequence[str]] | None = None) -> Column:
    """The query's filter as a Spark Column (paging and order: :func:`spark_query`).
    Times are written with their offset, so the session's zone does not matter."""
    condition = to_expression(qs, now=now, groups=groups, tz="UTC", where_only=True)
    return F.expr(condition.sql(dialect="spark"))


def spark_query(
    df: DataFrame,
    qs: str,
    now: datetime | None = None,
    groups: Mapping[str, Sequence[str]] | None = None,
    *,
    order_by: str | None = None,
    cdrapi: bool = False,
) -> DataFrame:
    """``df`` filtered, ordered (by ``order_by``; Spark keeps no archive
    order — ``F.monotonically_increasing_id()`` taken right after the read
    is the file order) and paged as ``cdrq.query`` would; ``cdrapi`` takes
    the UCM's rules (its parameters only, pages of at most 1000)."""
    from cdrq.query import page, plan_of

    plan = plan_of(qs, now, groups, library=not cdrapi)
    out = df.filter(F.expr(condition_of(plan, "UTC").sql(dialect="spark")))
    if plan.descending and order_by is None:
        raise _core.CdrqError("order=desc needs order_by: Spark keeps no archive order")
    if order_by is not None:
        out = out.orderBy(F.col(order_by).desc() if plan.descending else F.col(order_by).asc())
    offset, count = page(plan, clamp=cdrapi)
    if offset is not None:
        out = out.offset(offset)
    if count is not None:
        out = out.limit(count)
    return out


@dataclass
class Split(InputPartition):
    path: str
    byte_range: tuple[int, int] | None


class CdrqDataSource(DataSource):
    """``spark.read.format("cdrq")``: options ``format`` (default auto),
    ``tz`` (default UTC), ``rejects`` (``true``: the rejected records),
    ``splitBytes``, ``query`` (pushed into the reader), ``now_us``,
    ``columns`` (a comma list: only those are built)."""

    @classmethod
    def name(cls) -> str:
        return "cdrq"

    def files(self) -> list[str]:
        path = self.options.get("path")
        if not path:
            raise _core.CdrqError("load(path) is required")
        if os.path.isdir(path):
            return sorted(str(p) for p in _walk(path))
        return sorted(glob.glob(path, recursive=True)) or [path]

    def columns(self) -> dict[str, pl.DataType]:
        from cdrq.scan import dtype_of

        if self.options.get("rejects", "false").lower() == "true":
            return dict(REJECT_SCHEMA)
        names: dict[str, None] = {}
        for f in self.files():
            columns, _ = _core.column_names(f, format=self.options.get("format", "auto"))
            names.update(dict.fromkeys(columns))
        # Projection: only these columns are built (and cross into Spark).
        chosen = [c.strip() for c in self.options.get("columns", "").split(",") if c.strip()]
        unknown = [c for c in chosen if c not in names]
        if unknown:
            raise _core.CdrqError(f"no such column(s): {', '.join(unknown)}")
        return {n: dtype_of(n, "UTC") for n in (chosen or names)}

    def schema(self) -> str:
        ddl = []
        for name, dtype in self.columns().items():
            kind = "TIMESTAMP" if isinstance(dtype, pl.Datetime) else "BIGINT" if dtype == pl.Int64 else "STRING"
            ddl.append(f"`{name}` {kind}")
        return ", ".join(ddl)

    def reader(self, schema: Any) -> DataSourceReader:
        # Spark's option names are case-insensitive.
        options = {k.lower(): v for k, v in self.options.items()}
        return CdrqReader(options, self.files(), self.columns())


class CdrqReader(DataSourceReader):
    def __init__(self, options: dict[str, str], files: list[str], columns: dict[str, pl.DataType]) -> None:
        self.options, self.files, self.columns = options, files, columns

    def partitions(self) -> list[Split]:
        split = int(self.options.get("splitbytes", str(128 << 20)))
        parts: list[Split] = []
        for f in self.files:
            size = os.path.getsize(f)
            fmt = self.format_of(f) if size > split and not _compressed(f) else None
            if fmt == "ucm-csv":
                parts.extend(Split(f, (a, min(a + split, size))) for a in range(0, size, split))
            elif fmt in ("ucm-json", "portsip-json") and (
                ranges := _core.json_ranges(f, format=fmt, target_bytes=split)
            ):
                # Element starts found by one parse on the driver.
                parts.extend(Split(f, tuple(r)) for r in ranges)
            else:
                parts.append(Split(f, None))
        return parts

    def format_of(self, path: str) -> str:
        return _core.column_names(path, format=self.options.get("format", "auto"))[1]

    def read(self, partition: Split) -> Iterator[Any]:
        from cdrq.scan import ZONE_MARGIN_US, window_frame

        rejects_only = self.options.get("rejects", "false").lower() == "true"
        tz = self.options.get("tz", "UTC")
        # A query given as an option is applied in the Rust reader: records
        # it cannot match never reach Spark (a superset is kept; the exact
        # filter is the query's own Column, applied after).
        query = None if rejects_only else self.options.get("query")
        now = int(self.options.get("now_us", "0")) or now_us(None)
        # Compiled where the partition is read: a plan does not travel to executors.
        plan = None if query is None else _core.compile_query(query, now_us=now, library=True)
        scanner = _core.Scanner(
            partition.path,
            format=self.options.get("format", "auto"),
            on_error="collect" if rejects_only else "raise",
            tz_label="UTC" if tz == "UTC" else None,
            byte_range=partition.byte_range,
            plan=plan,
            margin_us=0 if tz == "UTC" else ZONE_MARGIN_US,
            columns=None if rejects_only else list(self.columns),
        )
        for stream, rejects in iter(scanner.next_window, None):
            if rejects_only:
                frame = pl.DataFrame(rejects, schema=REJECT_SCHEMA, orient="row")
            else:
                frame = window_frame(stream, tz, self.columns)
                frame = frame.with_columns(
                    pl.col(n).dt.convert_time_zone("UTC") for n, t in frame.schema.items() if isinstance(t, pl.Datetime)
                )
            if frame.height:
                table = frame.to_arrow(compat_level=pl.CompatLevel.oldest())
                yield from table.cast(arrow_schema(frame.schema)).to_batches()


def arrow_schema(schema: pl.Schema) -> Any:
    """The Arrow types Spark's Python data sources take."""
    import pyarrow as pa

    def arrow_type(dtype: pl.DataType) -> Any:
        if isinstance(dtype, pl.Datetime):
            return pa.timestamp("us", tz="UTC")
        return pa.int64() if dtype == pl.Int64 else pa.string()

    return pa.schema([(name, arrow_type(dtype)) for name, dtype in schema.items()])


def _walk(path: str) -> Iterator[str]:
    for root, _, names in os.walk(path):
        for n in names:
            if not n.startswith("."):
                yield os.path.join(root, n)


def _compressed(path: str) -> bool:
    """gzip or zstd: byte ranges of it mean nothing."""
    with open(path, "rb") as f:
        head = f.read(4)
    return head[:2] == b"\x1f\x8b" or head == b"\x28\xb5\x2f\xfd"
