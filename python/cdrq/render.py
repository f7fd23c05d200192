"""`cdrq.render` and `cdrq.cdrapi`: frames back into the UCM's csv / json /
xml (docs/query-language.md §5), and the CDR API's response to a query string.

Columns: the 22 fields of firmware 1.0.2.5 when none of the newer fields
has a value in the frame (an old-firmware archive), else all 32. Times are
the PBX's wall clock in the frame's zone; every value is a string; null is
empty. Legs are grouped by `session` in order of first appearance: a
session with one leg is that leg as `main_cdr`; with several, `main_cdr` is
the session's stored main record when the frame has one (JSON/XML sources)
or a summary computed as §5 says (CSV sources), and the legs follow as
`sub_cdr_1`, `sub_cdr_2`, ….

``firmware`` writes one firmware's layout instead, where the vendor's bytes
are known: ``"1.0.2.5"`` — its 22 columns, and JSON as the flat
``{"cdr": [...]}`` of that firmware; ``"1.0.11"`` — CSV with no header line
and 31 fields (no ``dstchanext``), an empty last field written as a space
(the guide's row ends ``, ``), so an empty result is empty text, and JSON
in the lines of that guide's transfer example.
"""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Any

import polars as pl

from cdrq import _core
from cdrq.query import Plan, apply, plan_of

BASE = list(_core.BASE_COLUMNS)
FORMATS = ("csv", "json", "xml")
FIRMWARES = ("1.0.2.5", "1.0.11")


def columns_of(frame: pl.DataFrame) -> list[str]:
    newer = [c for c in BASE[22:] if c in frame.columns and frame[c].null_count() < frame.height]
    return BASE if newer or (frame.height == 0 and "session" in frame.columns) else BASE[:22]


def as_text(frame: pl.DataFrame, columns: list[str]) -> pl.DataFrame:
    """Every column a string as the PBX writes it (null → empty)."""
    return frame.select(text_exprs(tuple(frame.schema.items()), tuple(columns)))


@functools.lru_cache(maxsize=64)
def text_exprs(schema: tuple[tuple[str, pl.DataType], ...], columns: tuple[str, ...]) -> list[pl.Expr]:
    """:func:`as_text`'s expressions, built once per schema: a server
    renders many pages of one archive (about 1 to 2 ms a page to build anew)."""
    types = dict(schema)
    exprs = []
    for c in columns:
        if c not in types:
            exprs.append(pl.lit("").alias(c))
            continue
        e = pl.col(c)
        if isinstance(types[c], pl.Datetime):
            e = e.dt.strftime("%Y-%m-%d %H:%M:%S")
        exprs.append(e.cast(pl.String).fill_null("").alias(c))
    return exprs


def render(
    frame: pl.DataFrame | pl.LazyFrame,
    format: str = "csv",
    *,
    legs_of: pl.DataFrame | None = None,
    firmware: str | None = None,
) -> str:
    """The frame in the UCM's ``csv``, ``json`` or ``xml``. ``legs_of`` is
    the whole archive the frame was selected from, where stored main
    records are looked up (default: the frame itself). ``firmware``
    (``"1.0.2.5"``, ``"1.0.11"``): that firmware's layout instead of §5's."""
    return render_bytes(frame, format, legs_of=legs_of, firmware=firmware).decode()


def render_bytes(
    frame: pl.DataFrame | pl.LazyFrame,
    format: str = "csv",
    *,
    legs_of: pl.DataFrame | None = None,
    firmware: str | None = None,
) -> bytes:
    """:func:`render` as UTF-8, as a server sends it."""
    if isinstance(frame, pl.LazyFrame):
        frame = frame.collect()
    format = format.lower()
    if format not in FORMATS:
        raise _core.CdrqError(f"format must be csv, json or xml, not {format!r}")
    if firmware not in (None, *FIRMWARES):
        raise _core.CdrqError(f"firmware must be one of {', '.join(FIRMWARES)} (or None), not {firmware!r}")
    source = frame if legs_of is None else legs_of
    if firmware is None:
        columns = columns_of(source)
    elif firmware == "1.0.2.5":
        columns = BASE[:22]
    else:  # 1.0.11's CSV row has 31 fields: no dstchanext (samples/README.md)
        columns = [c for c in BASE if c != "dstchanext"] if format == "csv" else BASE
    legs, mains = frame, None
    flat = format == "csv" or (format == "json" and firmware == "1.0.2.5")
    if not flat and "cdr_kind" in frame.columns:
        # Legs are written under their call's stored main record, if any.
        legs = frame.filter(pl.col("cdr_kind").ne_missing("main"))
        if "session" in source.columns:
            sessions = legs["session"].drop_nulls().unique()
            mains = source.filter((pl.col("cdr_kind") == "main") & pl.col("session").is_in(sessions.implode()))
    mains_text = None if mains is None or mains.height == 0 else as_text(mains, columns)
    return _core.render(as_text(legs, columns), mains_text, format, firmware)


def lookup(mains: pl.DataFrame, newer: dict[str, Any], full: bool) -> pl.DataFrame:
    """Where a page's render looks up its calls' stored main rows and picks
    its columns (``legs_of``): the archive's ``mains``, and where those alone
    would pick other columns than the whole archive does (``full``: all of
    them, as when it has a value in a newer column; ``newer``: such values),
    one row that is no main row to make them agree."""
    if (columns_of(mains) == BASE) == full:
        return mains
    witness = mains.clear(1)  # a row of nulls: its null cdr_kind is no main
    if full:
        name, value = next(iter(newer.items()))
        witness = witness.with_columns(pl.Series(name, [value], dtype=mains.schema[name]))
    return pl.concat([mains, witness])


def newer_values(frame: pl.DataFrame | pl.LazyFrame, schema: pl.Schema) -> pl.LazyFrame | pl.DataFrame:
    """A value (or null) of each newer column (those past firmware 1.0.2.5's
    22) in ``frame``: see :func:`values_of`."""
    return frame.select(pl.col(name).drop_nulls().first() for name in BASE[22:] if name in schema)


def values_of(newer: pl.DataFrame) -> dict[str, Any]:
    """The newer columns that have a value (``newer_values`` collected), and one of it."""
    return {k: v for k, v in newer.row(0, named=True).items() if v is not None} if newer.height else {}


def cdrapi(
    frame: pl.DataFrame | pl.LazyFrame,
    qs: str | Plan,
    now: datetime | None = None,
    *,
    mains: pl.DataFrame | None = None,
    firmware: str | None = None,
) -> str:
    """The exact response of the UCM's ``/cdrapi`` to the query string ``qs``
    over this archive: a page of at most 1000 records (``numRecords``,
    ``offset``) in the requested format. A query the UCM rejects gives the
    format's empty container (a bad ``format`` gives the CSV header).
    ``mains``: the archive's ``main`` rows, when a caller answering many
    queries has them at hand (else they are looked up in ``frame``).
    ``firmware``: answer in that firmware's layout (see ``render``). ``qs``
    may be a plan compiled with ``library=False`` (the UCM's rules)."""
    if isinstance(frame, pl.LazyFrame):
        frame = frame.collect()
    legs_of = frame
    if mains is not None:  # mains alone could pick other columns than the whole archive
        legs_of = lookup(mains, values_of(newer_values(frame, frame.schema)), columns_of(frame) == BASE)
    if isinstance(qs, Plan) and qs.library:
        raise _core.CdrqError("cdrapi takes a plan compiled with library=False (the UCM's parameters only)")
    try:
        plan = plan_of(qs, now, None, library=False)
    except _core.QueryError as e:
        return rejected(frame, qs, e, legs_of=legs_of, firmware=firmware)
    page = apply(frame, plan, clamp=True)
    return render(page, plan.format or "csv", legs_of=legs_of, firmware=firmware)


def rejected(
    frame: pl.DataFrame,
    qs: str,
    error: _core.QueryError,
    *,
    legs_of: pl.DataFrame | None = None,
    firmware: str | None = None,
) -> str:
    """The CDR API's answer to a query it rejects: the empty container of
    the requested format (a bad ``format``: CSV's), with the columns
    ``render`` picks for ``legs_of`` (default: ``frame``)."""
    format = "csv" if error.param.lower() == "format" else requested_format(qs)
    return render(frame.clear(), format, legs_of=legs_of, firmware=firmware)


def requested_format(qs: str) -> str:
    """The query's ``format`` if it names one cdrq renders, else csv."""
    for piece in qs.split("?", 1)[-1].split("&"):
        name, _, value = piece.partition("=")
        if name.lower() == "format" and value.lower() in FORMATS:
            return value.lower()
    return "csv"
