"""cdrq: telephone call detail records into Polars, queried like the PBX.

>>> import cdrq
>>> df = cdrq.read(b"1,,6039,6011,from-internal,x,c,d,Dial,,2015-11-10 17:58:47,,2015-11-10 17:58:51,4,0,"
...                b"NO ANSWER,DOCUMENTATION,1.1,Internal,6039,6011,s")
>>> df.select("AcctId", "src", "duration").row(0)
(1, '6039', 4)
"""

from typing import Any

from cdrq._core import CdrqError, ParseError, QueryError, __version__
from cdrq.analytics import calls, concurrency, peak_concurrency, rate, report
from cdrq.convert import convert
from cdrq.database import read_database
from cdrq.query import Pattern, Plan, compile_pattern, compile_query, query
from cdrq.read import FORMATS, custom_columns, read
from cdrq.render import cdrapi, render, render_bytes
from cdrq.scan import ScanRejects, scan, scan_errors
from cdrq.sources import SkippedFileWarning


def to_sql(qs: "str | Plan", dialect: str = "duckdb", **options: Any) -> str:
    """The query string as SQL for ``dialect``: see :func:`cdrq.engines.sql.to_sql`
    (imported on first use, as it needs sqlglot: ``pip install cdrq[sql]``)."""
    from cdrq.engines.sql import to_sql as compile_to_sql

    return compile_to_sql(qs, dialect, **options)


__all__ = [
    "FORMATS",
    "CdrqError",
    "ParseError",
    "Pattern",
    "Plan",
    "QueryError",
    "ScanRejects",
    "SkippedFileWarning",
    "__version__",
    "calls",
    "cdrapi",
    "compile_pattern",
    "compile_query",
    "concurrency",
    "convert",
    "custom_columns",
    "peak_concurrency",
    "query",
    "rate",
    "read",
    "read_database",
    "render",
    "render_bytes",
    "report",
    "scan",
    "scan_errors",
    "to_sql",
]
