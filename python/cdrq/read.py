"""`cdrq.read`: any supported source → one typed Polars frame."""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Mapping
from typing import Literal, overload

import polars as pl

from cdrq import _core, dataset
from cdrq._core import CdrqError
from cdrq.sources import Include, Source, default_threads, expand, open_source, ordered_map
from cdrq.zones import DEFAULT_TZ, check_tz, localise, wall_clock_gaps

OnError = Literal["raise", "collect"]

FORMATS = (
    "auto",
    "ucm-csv",
    "ucm-json",
    "ucm-xml",
    "ucm-webui-csv",
    "portsip-json",
    "asterisk-csv",
    "asterisk-custom",
    "freepbx-csv",
)

_CDR_REF = re.compile(r"\$\{CDR\(\s*([^,)\s]+)\s*(?:,\s*([^)\s]*))?")


def custom_columns(mapping: str) -> list[str]:
    """The column names of a ``cdr_custom.conf`` mapping line, for
    ``read(..., format="asterisk-custom", columns=...)``.

    ``Master.csv => ${CSV_QUOTE(${CDR(clid)})},${CDR(sequence)},...`` gives
    ``["clid", "sequence", ...]``: each comma-separated field's first
    ``${CDR(name)}``; a field with none (a ``${CHANNEL(...)}`` or literal
    text) is named ``field_N`` (1-based). The part before ``=>`` is
    optional. Asterisk's ``f`` and ``u`` options write what is not the
    column's value (``duration,f`` 40.012000 seconds, ``start,u`` epoch
    seconds, ``disposition,u`` a number whose meaning changed between
    versions): such a field keeps its text as ``name_options``
    (``duration_f``), but ``amaflags,u`` (1 to 3, read as names) stays
    ``amaflags``.
    """
    template = mapping.split("=>", 1)[1] if "=>" in mapping else mapping
    fields, depth, current = [], 0, []
    for ch in template.strip():
        if ch in "({":
            depth += 1
        elif ch in ")}":
            depth -= 1
        if ch == "," and depth == 0:
            fields.append("".join(current))
            current = []
        else:
            current.append(ch)
    fields.append("".join(current))
    names = []
    for i, field in enumerate(fields, 1):
        found = _CDR_REF.search(field)
        if found is None:
            names.append(f"field_{i}")
            continue
        name, options = found.group(1), "".join(o for o in found.group(2) or "" if o in "fu")
        names.append(f"{name}_{options}" if options and name.lower() != "amaflags" else name)
    return names


def source_label(source: object) -> str:
    """A source as error messages name it: its path, not its bytes."""
    if isinstance(source, (str, os.PathLike)):
        return f"{os.fspath(source)!s:.200}"
    return "<bytes>" if isinstance(source, (bytes, bytearray, memoryview)) else "<sources>"


def check_columns(names: Mapping[str, object], source: str) -> None:
    """Sources naming more columns in all than a frame may have (each
    alone has no more: the core's ``MAX_COLUMNS``) are no CDR exports: their
    union would be a frame of rows by columns of nulls."""
    if len(names) > _core.MAX_COLUMNS:
        raise CdrqError(f"{source}: more than {_core.MAX_COLUMNS} columns named in all: not CDR exports")


#: Columns of the rejects frame of ``on_error="collect"``.
REJECT_SCHEMA = {
    "source": pl.String,
    "line": pl.Int64,
    "column": pl.Int64,
    "reason": pl.String,
    "raw": pl.String,
}


def check_encoding(encoding: str) -> None:
    """Raises ``CdrqError`` for an encoding the core does not know, at the
    call (a scan would otherwise only find out when Polars asks for it)."""
    _core.read(b"", encoding=encoding)


def layout_of(format: str, columns: list[str] | None) -> tuple[str, list[str] | None]:
    """The format and the template columns to read with: ``columns`` are
    ``asterisk-custom``'s alone, so they make ``auto`` that format and are
    an error beside any other (never silently ignored)."""
    if columns is None:
        return format, None
    if isinstance(columns, str) or not all(isinstance(c, str) for c in columns):
        raise CdrqError("columns must be a list of column names (see cdrq.custom_columns)")
    if format == "auto":
        return "asterisk-custom", list(columns)
    if format != "asterisk-custom":
        raise CdrqError(f"columns= is the asterisk-custom template's; format {format!r} takes none")
    return format, list(columns)


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
    columns: list[str] | None = ...,
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
    columns: list[str] | None = ...,
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
    columns: list[str] | None = None,
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
    ``columns``: for ``format="asterisk-custom"``, the site template's
    column names in order (see :func:`custom_columns`); the default is the
    template of Asterisk's sample ``cdr_custom.conf``. The names may be
    those of a CDR table's columns (FreePBX's ``calldate``, ``cnam``, …):
    README "Asterisk" gives the mapping. ``columns`` with ``format="auto"``
    reads ``asterisk-custom``; with any other format it is an error.
    ``format="freepbx-csv"`` reads
    FreePBX's CDR report export by its header, RFC 4180 or the old
    export's unescaped quotes.
    """
    if on_error not in ("raise", "collect"):
        raise CdrqError(f"on_error must be 'raise' or 'collect', not {on_error!r}")
    check_tz(tz)
    format, columns = layout_of(format, columns)
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
            columns=columns,
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
    check_columns(dict.fromkeys(name for frame in frames for name in frame.columns), source_label(source))
    frame = frames[0] if len(frames) == 1 else pl.concat(frames, how="diagonal_relaxed")
    if on_error == "raise":
        return frame
    return frame, pl.DataFrame(rejects, schema=REJECT_SCHEMA, orient="row")
