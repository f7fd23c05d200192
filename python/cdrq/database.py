"""`cdrq.read_database`: the `cdr` table of a CDR database → the frame of
:func:`cdrq.read`.

Asterisk's database backends (cdr_pgsql, cdr_adaptive_odbc,
cdr_sqlite3_custom, FreePBX's ``asteriskcdrdb.cdr``) name a table's columns
as Asterisk's CDR variables. The result of the SQL is rendered as
headerless CSV and read as ``asterisk-custom`` with the result's column
names, so the one mapping of those names (the core's) serves files and
tables alike. Polars runs the SQL (``read_database`` / ``read_database_uri``);
an SQLite URI is opened with the standard library, read-only, so SQLite
needs nothing beyond Polars.
"""

from __future__ import annotations

import bisect
import csv
import functools
import io
import os
import re
import sqlite3
import urllib.parse
import urllib.request
from typing import Any, Literal, overload

import polars as pl

from cdrq._core import CdrqError, ParseError
from cdrq.read import REJECT_SCHEMA, OnError, read
from cdrq.zones import DEFAULT_TZ, check_tz

#: ``table=``: a plain name, or ``schema.name``, used unquoted (no dialect
#: quotes alike: MySQL's are backticks, the others' double quotes).
TABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*(?:\.[A-Za-z_][A-Za-z0-9_$]*)?")

#: How Asterisk writes a time, and what the reader parses.
ASTERISK_TIME = "%Y-%m-%d %H:%M:%S"

#: A float holding a whole number below this is written as an integer
#: (``duration`` in a ``float`` or ``real`` column: ``40``, not ``40.0``).
_EXACT_FLOAT = 2**53

#: Columns cdr_pgsql writes as epoch seconds when the table declares them
#: numeric (cdr/cdr_pgsql.c: a time into an int or float column).
_EPOCH_TIMES = frozenset({"start", "answer", "end", "calldate"})

#: How much of a query the source name quotes.
_QUERY_SHOWN = 60


@overload
def read_database(
    connection: Any,
    table: str | None = ...,
    *,
    query: Any = ...,
    tz: str | None = ...,
    on_error: Literal["raise"] = ...,
    encoding: str = ...,
) -> pl.DataFrame: ...
@overload
def read_database(
    connection: Any,
    table: str | None = ...,
    *,
    query: Any = ...,
    tz: str | None = ...,
    on_error: Literal["collect"],
    encoding: str = ...,
) -> tuple[pl.DataFrame, pl.DataFrame]: ...
def read_database(
    connection: Any,
    table: str | None = None,
    *,
    query: Any = None,
    tz: str | None = DEFAULT_TZ,
    on_error: OnError = "raise",
    encoding: str = "utf8",
) -> pl.DataFrame | tuple[pl.DataFrame, pl.DataFrame]:
    """Read the CDRs of a database table (or of a query) into the frame
    :func:`cdrq.read` gives.

    ``connection``: a DB-API connection (``sqlite3.connect(...)``), a
    SQLAlchemy engine or connection, an ADBC connection — anything
    ``polars.read_database`` takes — or a URI string as
    ``polars.read_database_uri`` takes (``postgresql://user:pw@host/db``;
    those need ``connectorx`` or an ADBC driver). ``sqlite:///path/to/Master.db``
    (the path after ``sqlite://``) is opened read-only with Python's
    ``sqlite3``.
    ``table`` (default ``cdr``): a plain name or ``schema.name``; or
    ``query``: any SQL (text, or a SQLAlchemy statement) whose result's
    columns are named as Asterisk's CDR variables (``src``, ``start``,
    ``calldate``, …), run as given. Names
    that are no CDR variable become text columns; a result with none is an
    error.
    ``tz``: the zone of the table's wall-clock times, as for ``read`` (a
    column of times with a zone is converted to it). ``on_error`` as for
    ``read``: a reject's ``source`` names the database and the table
    (``sqlite:///var/log/asterisk/master.db#cdr``), ``line`` the row of the
    result (1-based) and ``column`` its column (1-based).
    ``encoding``: for text the database hands over as bytes that are not
    UTF-8 (SQLite TEXT written in another encoding, BLOBs): ``"utf8"``
    rejects the row, ``"utf8-lossy"`` replaces the bytes with U+FFFD, a
    legacy label (``"latin-1"``) decodes the table's text as that (when any
    of it is not UTF-8).
    """
    if on_error not in ("raise", "collect"):
        raise CdrqError(f"on_error must be 'raise' or 'collect', not {on_error!r}")
    check_tz(tz)
    sql, what = _statement(table, query)
    frame, where = _fetch(connection, sql, what)
    source = f"{where}#{what}"
    _check_cdr_columns(frame.columns, source)
    text = _as_text(frame, tz, source)
    raw = any(dtype == pl.Binary for dtype in text.dtypes)
    # A lone value that is empty or blank would be a blank line, which the
    # reader skips: one column is quoted whole.
    lone = text.width == 1
    if raw:
        data = _raw_csv(text, quote_all=lone)
    else:
        buffer = io.BytesIO()
        text.write_csv(buffer, include_header=False, quote_style="always" if lone else "necessary")
        data = buffer.getvalue()
    data = _quote_markup_start(data)
    records, rejects = read(
        _Named(data, source),
        format="asterisk-custom",
        columns=frame.columns,
        tz=tz,
        on_error="collect",
        # Text the driver decoded is UTF-8 now; only raw bytes need `encoding`.
        encoding=encoding if raw else "utf8",
    )
    rejects = _by_row(rejects, text)
    if on_error == "collect":
        return records, rejects
    if rejects.height:
        raise _parse_error(rejects.row(0, named=True))
    return records


def _statement(table: str | None, query: Any) -> tuple[Any, str]:
    """The SQL to run and how the source name shows it."""
    if table is not None and query is not None:
        raise CdrqError("give table= or query=, not both")
    if query is not None:
        # SQL text, or a SQLAlchemy statement (Polars takes both).
        if not ((isinstance(query, str) and query.strip()) or hasattr(query, "compile")):
            raise CdrqError(f"query= must be SQL text, not {query!r}")
        shown = " ".join(str(query).split())
        if len(shown) > _QUERY_SHOWN:
            shown = shown[: _QUERY_SHOWN - 1] + "…"
        return query, f"({shown})"
    table = "cdr" if table is None else table
    if not isinstance(table, str) or not TABLE_NAME.fullmatch(table):
        raise CdrqError(
            f"table= must be a plain table name (letters, digits, _ and $, optionally schema.name), "
            f"not {table!r}: pass other SQL as query="
        )
    return f"SELECT * FROM {table}", table


def _fetch(connection: Any, sql: Any, what: str) -> tuple[pl.DataFrame, str]:
    """The result of ``sql`` as Polars types it, and the name of the database."""
    if isinstance(connection, str):
        return _fetch_uri(connection, sql, what)
    if isinstance(connection, (bytes, bytearray, os.PathLike)) or not any(
        hasattr(connection, method) for method in ("cursor", "execute", "connect")
    ):
        hint = (
            f" (an SQLite file? pass 'sqlite://{os.path.abspath(connection)}')"
            if isinstance(connection, os.PathLike)
            else ""
        )
        raise CdrqError(
            "connection must be a DB-API or SQLAlchemy connection or a URI string, "
            f"not {type(connection).__name__}{hint}"
        )
    where = _describe(connection)
    return _run(lambda: _read_connection(connection, sql), f"{where}#{what}"), where


def _fetch_uri(uri: str, sql: str, what: str) -> tuple[pl.DataFrame, str]:
    scheme = urllib.parse.urlsplit(uri).scheme
    if "://" not in uri or not scheme:
        hint = f" (an SQLite file? pass 'sqlite://{os.path.abspath(uri)}')" if os.path.isfile(uri) else ""
        raise CdrqError(f"connection {uri!r} is not a URI such as sqlite:///path/to/master.db{hint}")
    secrets = _secrets(uri)
    where = _hide(uri, secrets)
    if scheme == "sqlite":
        path = uri[len("sqlite://") :]
        if path.startswith("//"):  # SQLAlchemy's absolute form, sqlite:////abs/path
            path = "/" + path.lstrip("/")
        # Read-only: a wrong path is an error, not a new empty database.
        target = f"file:{urllib.request.pathname2url(path)}?mode=ro"
        try:
            connection = sqlite3.connect(target, uri=True)
        except sqlite3.Error as e:
            raise CdrqError(f"{where}: cannot open {path!r}: {e}") from e
        try:
            return _run(lambda: _read_connection(connection, sql), f"{where}#{what}"), where
        finally:
            connection.close()
    return _run(lambda: pl.read_database_uri(sql, uri), f"{where}#{what}", secrets), where


def _run(fetch: Any, source: str, secrets: list[str] | None = None) -> pl.DataFrame:
    """``fetch()``, any failure of the driver or Polars as a ``CdrqError``
    (``secrets`` blanked out of its message)."""
    try:
        return fetch()
    except CdrqError:
        raise
    except Exception as e:
        hint = " (a URI other than sqlite:// needs connectorx or an ADBC driver)" if isinstance(e, ImportError) else ""
        error = CdrqError(f"{source}: {type(e).__name__}: {_hide(str(e), secrets or [])}{hint}")
        # The driver's own error may spell the password out: not chained then.
        raise error from (None if secrets else e)


def _read_connection(connection: Any, sql: str) -> pl.DataFrame:
    """``polars.read_database``, with two ways around what it cannot type:
    SQLite TEXT that is not UTF-8 (fetched again as bytes) and a column
    mixing bytes with other values (fetched by :func:`_fetch_rows`)."""
    try:
        # Every row typed: SQLite lets one column hold numbers and text.
        return pl.read_database(sql, connection, infer_schema_length=None)
    except sqlite3.OperationalError as e:
        sqlite = connection if isinstance(connection, sqlite3.Connection) else getattr(connection, "connection", None)
        if "decode" not in str(e) or not isinstance(sqlite, sqlite3.Connection):
            raise
        previous = sqlite.text_factory
        sqlite.text_factory = bytes
        try:
            return _fetch_rows(connection, sql)
        finally:
            sqlite.text_factory = previous
    except (pl.exceptions.SchemaError, pl.exceptions.ComputeError):
        if not hasattr(connection, "cursor"):
            raise
        return _fetch_rows(connection, sql)


def _fetch_rows(connection: Any, sql: str) -> pl.DataFrame:
    """The rows of ``sql`` by the DB-API itself: a column holding bytes is
    a ``Binary`` column (its other values as their text), the others typed
    by Polars."""
    cursor = connection.cursor()
    try:
        cursor.execute(sql)
        names = [d[0] for d in cursor.description or ()]
        rows = cursor.fetchall()
    finally:
        cursor.close()
    columns = list(zip(*rows, strict=True)) if rows else [()] * len(names)
    series = []
    for name, values in zip(names, columns, strict=True):
        if any(isinstance(v, bytes) for v in values):
            values = [v if v is None or isinstance(v, bytes) else str(v).encode() for v in values]
            series.append(pl.Series(name, values, pl.Binary))
        else:
            series.append(pl.Series(name, values, strict=False))
    return pl.DataFrame(series)


@functools.cache
def _model_columns() -> frozenset[str]:
    """The columns of every Asterisk-family frame (the core's mapping)."""
    return frozenset(read(b"", format="asterisk-custom").columns)


def _check_cdr_columns(names: list[str], source: str) -> None:
    """A result none of whose columns the core maps to the data model is
    no CDR table: an error, not a frame of nulls."""
    probe = read(_Named(b"", source), format="asterisk-custom", columns=names)
    unknown = [c for c in probe.columns if c not in _model_columns()]
    if len(unknown) == len(names):
        raise CdrqError(
            f"{source}: no CDR column in the result ({', '.join(names)}): "
            "its columns must be named as Asterisk's CDR variables (src, dst, start, calldate, …)"
        )


def _as_text(frame: pl.DataFrame, tz: str | None, source: str) -> pl.DataFrame:
    """Every column as text as Asterisk writes it (times ``YYYY-MM-DD
    HH:MM:SS``, whole numbers without ``.0``), except bytes that are not
    UTF-8, which stay ``Binary``."""
    columns = []
    for name, dtype in frame.schema.items():
        column = pl.col(name)
        if dtype == pl.String:
            columns.append(column)
            continue
        if isinstance(dtype, pl.Datetime):
            if dtype.time_zone is not None and tz is not None:
                column = column.dt.convert_time_zone(tz)
            columns.append(column.dt.strftime(ASTERISK_TIME))
            continue
        if dtype.is_numeric() and name.lower() in _EPOCH_TIMES:
            # Epoch seconds (0: never, as for an unanswered call's answer).
            instant = pl.from_epoch(pl.when(column != 0).then(column).cast(pl.Float64).mul(1e6).cast(pl.Int64), "us")
            if tz is not None:
                instant = instant.dt.replace_time_zone("UTC").dt.convert_time_zone(tz)
            columns.append(instant.dt.strftime(ASTERISK_TIME))
            continue
        if dtype.is_float():
            whole = column.is_finite() & (column == column.round()) & (column.abs() < _EXACT_FLOAT)
            columns.append(
                pl.when(whole)
                .then(column.cast(pl.Int64, strict=False).cast(pl.String))
                .otherwise(column.cast(pl.String))
            )
            continue
        if dtype == pl.Binary:
            try:
                frame[name].cast(pl.String)
            except pl.exceptions.PolarsError:
                columns.append(column)  # not UTF-8: the reader decodes it by `encoding`
                continue
        columns.append(column.cast(pl.String))
    try:
        return frame.select(columns)
    except pl.exceptions.PolarsError as e:
        raise CdrqError(f"{source}: a column cannot be read as text: {e}") from e


def _quote_markup_start(data: bytes) -> bytes:
    """``data`` with its first field quoted when it begins like JSON or
    XML (``<``, ``{``, ``[``): the reader refuses such bytes as CSV, and a
    table's first value may be anything. Unquoted, the field holds no quote,
    comma or line break, so quoting it changes no value."""
    if data.lstrip()[:1] not in (b"<", b"{", b"["):
        return data
    end = min((i for i in (data.find(b","), data.find(b"\n")) if i >= 0), default=len(data))
    return b'"' + data[:end] + b'"' + data[end:]


def _raw_csv(frame: pl.DataFrame, quote_all: bool) -> bytes:
    """``frame`` (text and ``Binary`` columns) as RFC 4180 CSV, the bytes
    of ``Binary`` values as they are."""
    # Latin-1 maps each byte to one character and back, so the csv module
    # quotes bytes it never decodes.
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n", quoting=csv.QUOTE_ALL if quote_all else csv.QUOTE_MINIMAL)
    for row in frame.iter_rows():
        writer.writerow(
            [
                None if v is None else v.decode("latin-1") if isinstance(v, bytes) else v.encode().decode("latin-1")
                for v in row
            ]
        )
    return out.getvalue().encode("latin-1")


def _by_row(rejects: pl.DataFrame, text: pl.DataFrame) -> pl.DataFrame:
    """The reader's rejects (line and character of the CSV) with the row
    and column of the result instead."""
    if not rejects.height:
        return rejects
    # A value holding line breaks makes its record span several lines.
    breaks = [0] * text.height
    for name, dtype in text.schema.items():
        if dtype == pl.Binary:
            counts = [0 if v is None else v.count(b"\n") for v in text[name]]
        else:
            counts = text[name].str.count_matches("\n", literal=True).fill_null(0).to_list()
        breaks = [a + b for a, b in zip(breaks, counts, strict=True)]
    starts, line = [], 1
    for extra in breaks:
        starts.append(line)
        line += 1 + extra
    rows = []
    for reject in rejects.iter_rows(named=True):
        row = bisect.bisect_right(starts, reject["line"])
        rows.append(
            {
                **reject,
                "line": row,
                "column": _field_at(reject["raw"], reject["line"] - starts[row - 1], reject["column"]),
            }
        )
    return pl.DataFrame(rows, schema=REJECT_SCHEMA, orient="row")


def _field_at(raw: str, line_in_record: int, column: int) -> int | None:
    """The 1-based field of a CSV record holding character ``column``
    (1-based) of its line ``line_in_record`` (0-based)."""
    lines = raw.split("\n")
    if line_in_record >= len(lines):
        return None
    offset = sum(len(x) + 1 for x in lines[:line_in_record]) + column - 1
    field, quoted = 1, False
    for char in raw[:offset]:
        if char == '"':
            quoted = not quoted
        elif char == "," and not quoted:
            field += 1
    return field


def _parse_error(reject: dict[str, Any]) -> ParseError:
    """The ``ParseError`` the core raises, for a reject of the result (its
    message shows 300 characters of the record, as the core's does)."""
    raw = reject["raw"]
    shown = repr(raw) if len(raw) <= 300 else f"{raw[:300]!r}… {len(raw[300:].encode())} more bytes"
    error = ParseError(f"{reject['source']}:{reject['line']}:{reject['column']}: {reject['reason']} (record: {shown})")
    for key, value in reject.items():
        setattr(error, key, value)
    return error


def _describe(connection: Any) -> str:
    """The database a connection reads, for error messages and rejects."""
    if isinstance(connection, sqlite3.Cursor):
        connection = connection.connection
    if isinstance(connection, sqlite3.Connection):
        try:
            files = {name: path for _, name, path in connection.execute("PRAGMA database_list")}
        except sqlite3.Error:
            files = {}
        return f"sqlite://{files.get('main') or ':memory:'}"
    url = getattr(connection, "url", None) or getattr(getattr(connection, "engine", None), "url", None)
    if hasattr(url, "render_as_string"):  # SQLAlchemy
        return url.render_as_string(hide_password=True)
    kind = type(connection)
    return f"<{kind.__module__}.{kind.__qualname__}>"


def _secrets(uri: str) -> list[str]:
    """The passwords a URI holds: its user info's and a ``password=``
    parameter's, as written."""
    parts = urllib.parse.urlsplit(uri)
    userinfo = parts.netloc.rpartition("@")[0]
    found = [userinfo.partition(":")[2]] if ":" in userinfo else []
    found += re.findall(r"(?i)(?:^|&)(?:password|pwd)=([^&]*)", parts.query)
    return [secret for secret in found if secret]


def _hide(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


class _Named:
    """Bytes the reader takes as a file object, so its errors and rejects
    name ``name``."""

    def __init__(self, data: bytes, name: str) -> None:
        self.data, self.name = data, name

    def read(self) -> bytes:
        return self.data
