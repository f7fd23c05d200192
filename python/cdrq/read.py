"""`cdrq.read`: any supported source → one typed Polars frame."""

from __future__ import annotations

import datetime
import functools
import glob
import os
import pathlib
import warnings
import zoneinfo
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import IO, Literal, TypeVar, Union, overload

import polars as pl

from cdrq import _core
from cdrq._core import CdrqError
from cdrq._zone import DEFAULT_TZ

Source = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview, IO[bytes], Sequence[str]]
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
    include_source: bool = ...,
    encoding: str = ...,
    memory_map: bool = ...,
    include: Include = ...,
) -> pl.DataFrame: ...
@overload
def read(
    source: Source,
    format: str = ...,
    tz: str | None = ...,
    *,
    on_error: Literal["collect"],
    threads: int | None = ...,
    include_source: bool = ...,
    encoding: str = ...,
    memory_map: bool = ...,
    include: Include = ...,
) -> tuple[pl.DataFrame, pl.DataFrame]: ...
def read(
    source: Source,
    format: str = "auto",
    tz: str | None = DEFAULT_TZ,
    *,
    on_error: OnError = "raise",
    threads: int | None = None,
    include_source: bool = False,
    encoding: str = "utf8",
    memory_map: bool = False,
    include: Include = None,
) -> pl.DataFrame | tuple[pl.DataFrame, pl.DataFrame]:
    """Read a PBX CDR export into a Polars frame.

    ``source`` is a path, the bytes themselves, a binary file object, or
    many files: a list of paths, a glob (``"archive/**/*.csv"``) or a
    directory (every file in it, sorted). gzip and zstd files (told by
    their first bytes) are decompressed.
    Many files give one frame in source order; columns missing from one
    file are null in its rows; ``include_source=True`` adds a ``source``
    column naming each row's file.
    ``format`` is one of :data:`FORMATS` (``auto`` sniffs the bytes). The
    PBX writes wall-clock times; ``tz`` is the zone they are in (``None``
    keeps them naive). ``on_error="collect"`` returns ``(frame, rejects)``
    instead of raising :class:`ParseError` at the first unreadable record;
    every input record is then in exactly one of the two; a wall time
    that ``tz`` skips (a DST gap) is such a record. ``threads``
    defaults to ``POLARS_MAX_THREADS`` or all cores.
    ``encoding``: ``"utf8"`` (a record with invalid UTF-8 is unreadable),
    ``"utf8-lossy"`` (invalid bytes become U+FFFD) or another encoding's
    WHATWG label (``"latin-1"``, ``"windows-1252"``, …).
    The frame owns its memory: the file is mapped while it is parsed and
    each chunk copies its bytes out, so no change to the file after
    ``read`` returns can alter the frame. ``memory_map=True`` maps the
    file and lets the frame's text point into the mapping instead (no
    copy), with the hazard of any mapping: a file rewritten in place
    changes the frame's values, and one truncated crashes the process
    when the frame is next read.
    """
    from cdrq import dataset

    if on_error not in ("raise", "collect"):
        raise CdrqError(f"on_error must be 'raise' or 'collect', not {on_error!r}")
    check_tz(tz)
    if dataset.is_dataset(source):
        frame = dataset.scan_dataset(source, tz).collect()
        return frame if on_error == "raise" else (frame, pl.DataFrame(schema=REJECT_SCHEMA))
    threads = default_threads(threads)

    def read_one(one: Source) -> tuple[pl.DataFrame, list]:
        data, name = open_source(one)
        stream, bad = _core.read(
            data,
            name=name,
            format=format,
            threads=threads,
            on_error=on_error,
            tz_label="UTC" if tz == "UTC" else None,
            encoding=encoding,
            gaps=wall_clock_gaps(tz),
            memory_map=memory_map,
        )
        frame = localise(pl.DataFrame(stream), tz)
        if include_source:
            label = name or (os.fspath(one) if isinstance(one, (str, os.PathLike)) else "<bytes>")
            frame = frame.with_columns(source=pl.lit(label, pl.String))
        return frame, bad

    frames, rejects = [], []
    # Many files are read side by side (the core releases the GIL).
    for frame, bad in ordered_map(read_one, expand(source, include), threads):
        frames.append(frame)
        rejects.extend(bad)
    # Columns missing from one source are null in its rows.
    frame = frames[0] if len(frames) == 1 else pl.concat(frames, how="diagonal_relaxed")
    if on_error == "raise":
        return frame
    return frame, pl.DataFrame(rejects, schema=REJECT_SCHEMA, orient="row")


T = TypeVar("T")
R = TypeVar("R")


def ordered_map(fn: Callable[[T], R], items: Iterable[T], threads: int | None) -> Iterator[R]:
    """``fn`` over ``items`` on up to ``threads`` (default: all cores)
    threads, results in order, at most two per thread waiting."""
    workers = max(1, threads or os.cpu_count() or 1)
    with ThreadPoolExecutor(workers) as pool:
        pending: deque[Future[R]] = deque()
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def check_tz(tz: str | None) -> None:
    if tz is not None and tz != "UTC":
        try:
            zoneinfo.ZoneInfo(tz)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as e:
            raise CdrqError(f"unknown time zone {tz!r}") from e


def default_threads(threads: int | None) -> int | None:
    """``threads``, else ``POLARS_MAX_THREADS``, else ``None`` (all cores)."""
    if threads is None and os.environ.get("POLARS_MAX_THREADS", "").isdigit():
        return int(os.environ["POLARS_MAX_THREADS"])
    return threads


class SkippedFileWarning(UserWarning):
    """Files of a directory that were not read: their names do not say CDR
    (and ``include=`` did not name them). ``paths`` lists them."""

    def __init__(self, message: str, paths: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.paths = list(paths)


#: Names of the files a directory is read for (case-insensitive).
CDR_NAMES = tuple(f".{kind}{packed}" for kind in ("csv", "json", "xml", "txt") for packed in ("", ".gz", ".zst"))

#: ``include=``: one glob or many, matched against a file's path in the directory from the right.
Include = str | Sequence[str] | None


def expand(source: Source | Sequence[str | os.PathLike[str]], include: Include = None) -> list[Source]:
    """One source, or each file of a list, a glob or a directory (sorted;
    of a directory only the CDR files, see :func:`directory_files`)."""
    if isinstance(source, (list, tuple)):
        files = [f for item in source for f in expand(item, include)]
    elif isinstance(source, str) and any(c in source for c in "*?["):
        files = sorted(glob.glob(source, recursive=True))
        if not files:
            raise CdrqError(f"no file matches {source!r}")
    elif isinstance(source, (str, os.PathLike)) and os.path.isdir(source):
        files = directory_files(source, include)
    else:
        return [source]
    if not files:
        raise CdrqError("no source given")
    return files


def directory_files(directory: str | os.PathLike[str], include: Include = None) -> list[str]:
    """The files of ``directory`` (recursively, sorted) named as CDR files
    (:data:`CDR_NAMES`) or matching an ``include`` glob. Hidden files and
    directories (a name starting with a dot) are passed over; every other
    file not read is named in one :class:`SkippedFileWarning`."""
    root = pathlib.Path(directory)
    patterns = [include] if isinstance(include, str) else list(include or ())
    taken, skipped = [], []
    for path in sorted(root.rglob("*"), key=str):
        relative = path.relative_to(root)
        if not path.is_file() or any(part.startswith(".") for part in relative.parts):
            continue
        wanted = path.name.lower().endswith(CDR_NAMES) or any(relative.match(p) for p in patterns)
        (taken if wanted else skipped).append(str(path))
    why = "names not .csv, .json, .xml or .txt (optionally .gz or .zst); include= reads others"
    if not taken:
        listed = f": {len(skipped)} skipped ({', '.join(skipped)}; {why})" if skipped else ""
        raise CdrqError(f"no {'CDR ' if skipped else ''}file in directory {os.fspath(directory)!r}{listed}")
    if skipped:
        message = f"{os.fspath(directory)}: skipped {len(skipped)} file(s) ({why}): {', '.join(skipped)}"
        # stacklevel: the caller of read/scan/convert.
        warnings.warn(SkippedFileWarning(message, skipped), stacklevel=4)
    return taken


def open_source(source: Source) -> tuple[str | bytes, str | None]:
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


Frame = TypeVar("Frame", pl.DataFrame, pl.LazyFrame)


def wall_clock_gaps(tz: str | None) -> tuple[str, list[tuple[int, int]]] | None:
    """The zone and the wall-clock times it skips, as the core takes them
    to reject records holding one; ``None`` for naive times and UTC."""
    if tz is None or tz == "UTC":
        return None
    return tz, list(skipped_wall_times(tz))


@functools.lru_cache(maxsize=64)
def skipped_wall_times(tz: str) -> tuple[tuple[int, int], ...]:
    """The ``[start, end)`` wall-clock ranges (µs since 1970-01-01 of the
    wall clock) that ``tz`` skips when its clocks jump forward, 1970 to 2100.
    Polars' own zone data tells them, so they are exactly the times
    :func:`localise` could not place: each day's UTC offset finds the days
    of a forward jump, then the minute, then the second of each jump."""

    def offset(t: pl.Expr) -> pl.Expr:
        local = t.dt.convert_time_zone(tz).dt.replace_time_zone(None)
        return (local - t.dt.replace_time_zone(None)).dt.total_microseconds()

    def first_change(jumps: pl.DataFrame, step: pl.Expr, count: int) -> pl.DataFrame:
        # Per jump: the first of lo + k * step (k = 1..count) off the offset before it.
        t = pl.col("lo") + pl.col("k") * step
        return (
            jumps.with_columns(k=pl.int_ranges(1, count + 1))
            .explode("k")
            .filter(offset(t) != pl.col("before"))
            .group_by("jump", maintain_order=True)
            .agg(at=t.first(), before=pl.col("before").first(), after=offset(t).first())
        )

    days = pl.datetime_range(
        datetime.datetime(1970, 1, 1), datetime.datetime(2100, 1, 1), "1d", time_unit="us", time_zone="UTC", eager=True
    )
    jumps = (
        pl.DataFrame({"lo": days})
        .with_row_index("jump")
        .with_columns(before=offset(pl.col("lo")).shift(1), after=offset(pl.col("lo")))
        .filter(pl.col("after") > pl.col("before"))
        .select("jump", lo=pl.col("lo") - pl.duration(days=1), before="before")
    )
    minutes = first_change(jumps, pl.duration(minutes=1), 1440)
    seconds = first_change(
        minutes.select("jump", lo=pl.col("at") - pl.duration(minutes=1), before="before"), pl.duration(seconds=1), 60
    )
    wall = pl.col("at").dt.replace_time_zone(None).dt.epoch("us")
    return tuple(seconds.select(start=wall + pl.col("before"), end=wall + pl.col("after")).iter_rows())


def localise(frame: Frame, tz: str | None) -> Frame:
    """Times into the archive zone ``tz``. UCM columns arrive naive (PBX
    wall-clock) unless ``tz`` is UTC; PortSIP columns arrive as UTC instants.
    In the repeated hour of a DST fall-back the earlier instant is taken; a
    wall time the zone skips is an error (the PBX cannot have written it)."""
    exprs = []
    schema = frame.collect_schema() if isinstance(frame, pl.LazyFrame) else frame.schema
    for name, dtype in schema.items():
        if not isinstance(dtype, pl.Datetime) or dtype.time_zone == tz:
            continue
        column = pl.col(name).dt
        if dtype.time_zone is None:
            exprs.append(column.replace_time_zone(tz, ambiguous="earliest", non_existent="raise"))
        elif tz is None:
            exprs.append(column.replace_time_zone(None))
        else:
            exprs.append(column.convert_time_zone(tz))
    if not exprs:
        return frame
    try:
        return frame.with_columns(exprs)
    except pl.exceptions.ComputeError as e:
        raise CdrqError(f"time not on the clock of {tz}: {e}") from e
