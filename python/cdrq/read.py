"""`cdrq.read`: any supported source → one typed Polars frame."""

from __future__ import annotations

import os
import warnings
import zoneinfo
from typing import IO, Literal, Union, overload

import polars as pl

from cdrq import _core
from cdrq._core import CdrqError

Source = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview, IO[bytes]]
OnError = Literal["raise", "collect"]

FORMATS = ("auto", "ucm-csv", "ucm-json", "ucm-xml", "ucm-webui-csv", "portsip-json")

#: Columns of the rejects frame of ``on_error="collect"``.
REJECT_SCHEMA = {
    "source": pl.String,
    "line": pl.Int64,
    "column": pl.Int64,
    "reason": pl.String,
    "raw": pl.String,
}

if _core.is_debug_build():
    warnings.warn("cdrq._core is a debug build: expect it to be slow", RuntimeWarning, stacklevel=2)


@overload
def read(
    source: Source,
    format: str = ...,
    tz: str | None = ...,
    *,
    on_error: Literal["raise"] = ...,
    threads: int | None = ...,
) -> pl.DataFrame: ...
@overload
def read(
    source: Source,
    format: str = ...,
    tz: str | None = ...,
    *,
    on_error: Literal["collect"],
    threads: int | None = ...,
) -> tuple[pl.DataFrame, pl.DataFrame]: ...
def read(
    source: Source,
    format: str = "auto",
    tz: str | None = "UTC",
    *,
    on_error: OnError = "raise",
    threads: int | None = None,
) -> pl.DataFrame | tuple[pl.DataFrame, pl.DataFrame]:
    """Read a PBX CDR export into a Polars frame.

    ``source`` is a path, the bytes themselves, or a binary file object.
    ``format`` is one of :data:`FORMATS` (``auto`` sniffs the bytes). The
    PBX writes wall-clock times; ``tz`` is the zone they are in (``None``
    keeps them naive). ``on_error="collect"`` returns ``(frame, rejects)``
    instead of raising :class:`ParseError` at the first unreadable record;
    every input record is then in exactly one of the two. ``threads``
    defaults to ``POLARS_MAX_THREADS`` or all cores.
    """
    if on_error not in ("raise", "collect"):
        raise CdrqError(f"on_error must be 'raise' or 'collect', not {on_error!r}")
    if tz is not None and tz != "UTC":
        try:
            zoneinfo.ZoneInfo(tz)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as e:
            raise CdrqError(f"unknown time zone {tz!r}") from e
    if threads is None and os.environ.get("POLARS_MAX_THREADS", "").isdigit():
        threads = int(os.environ["POLARS_MAX_THREADS"])

    data, name = _open(source)
    stream, rejects = _core.read(
        data,
        name=name,
        format=format,
        threads=threads,
        on_error=on_error,
        tz_label="UTC" if tz == "UTC" else None,
    )
    frame = pl.DataFrame(stream)
    if tz is not None and tz != "UTC":
        frame = _localise(frame, tz)
    if on_error == "raise":
        return frame
    return frame, pl.DataFrame(rejects, schema=REJECT_SCHEMA, orient="row")


def _open(source: Source) -> tuple[str | bytes, str | None]:
    """The path or bytes the core reads, and the name errors give them."""
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source), None
    if isinstance(source, bytes):
        return source, None
    if isinstance(source, (bytearray, memoryview)):
        return bytes(source), None
    read_method = getattr(source, "read", None)
    if callable(read_method):
        data = read_method()
        if not isinstance(data, bytes):
            raise CdrqError("file objects must be opened in binary mode")
        return data, str(getattr(source, "name", "<file>"))
    raise CdrqError(f"cannot read a source of type {type(source).__name__}")


def _localise(frame: pl.DataFrame, tz: str) -> pl.DataFrame:
    """PBX wall-clock → instants in ``tz``. In the repeated hour of a DST
    fall-back the earlier instant is taken; a wall time the zone skips is an
    error (the PBX cannot have written it)."""
    columns = [c for c, t in frame.schema.items() if isinstance(t, pl.Datetime)]
    try:
        return frame.with_columns(
            pl.col(columns).dt.replace_time_zone(tz, ambiguous="earliest", non_existent="raise")
        )
    except pl.exceptions.ComputeError as e:
        raise CdrqError(f"time not on the clock of {tz}: {e}") from e
