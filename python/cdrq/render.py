"""`cdrq.render` and `cdrq.cdrapi`: frames back into the UCM's csv / json /
xml (query-language.md §5), and the CDR API's response to a query string.

Columns: the 22 fields of firmware 1.0.2.5 when none of the newer fields
has a value in the frame (an old-firmware archive), else all 32. Times are
the PBX's wall clock in the frame's zone; every value is a string; null is
empty. Legs are grouped by `session` in order of first appearance: a
session with one leg is that leg as `main_cdr`; with several, `main_cdr` is
the session's stored main record when the frame has one (JSON/XML sources)
or a summary computed as §5 says (CSV sources), and the legs follow as
`sub_cdr_1`, `sub_cdr_2`, ….
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any
from xml.sax.saxutils import escape

import polars as pl

from cdrq import _core
from cdrq.query import apply, compile_query

BASE = [
    "AcctId", "accountcode", "src", "dst", "dcontext", "clid", "channel", "dstchannel", "lastapp",
    "lastdata", "start", "answer", "end", "duration", "billsec", "disposition", "amaflags", "uniqueid",
    "userfield", "channel_ext", "dstchannel_ext", "service", "caller_name", "recordfiles", "dstanswer",
    "chanext", "dstchanext", "session", "action_owner", "action_type", "src_trunk_name", "dst_trunk_name",
]  # fmt: skip
XML_DECLARATION = '<?xml version="1.0" encoding="UTF-8"?>\n'
EMPTY = {"csv": None, "json": '{"cdr_root": []}', "xml": XML_DECLARATION + "<cdr_root/>\n"}


def columns_of(frame: pl.DataFrame) -> list[str]:
    newer = [c for c in BASE[22:] if c in frame.columns and frame[c].null_count() < frame.height]
    return BASE if newer or (frame.height == 0 and "session" in frame.columns) else BASE[:22]


def as_text(frame: pl.DataFrame, columns: list[str]) -> pl.DataFrame:
    """Every column a string as the PBX writes it (null → empty)."""
    exprs = []
    for c in columns:
        if c not in frame.columns:
            exprs.append(pl.lit("").alias(c))
            continue
        dtype = frame.schema[c]
        e = pl.col(c)
        if isinstance(dtype, pl.Datetime):
            e = e.dt.strftime("%Y-%m-%d %H:%M:%S")
        exprs.append(e.cast(pl.String).fill_null("").alias(c))
    return frame.select(exprs)


def csv_field(value: str, column: str) -> str:
    """RFC 4180 quoting when needed; a caller ID token `"Name" <ext>` is
    written as the UCM writes it."""
    if column == "clid" and value.startswith('"') and "\n" not in value and "\r" not in value:
        return value
    if any(c in value for c in ',"\r\n'):
        return '"' + value.replace('"', '""') + '"'
    return value


def render(frame: pl.DataFrame | pl.LazyFrame, format: str = "csv", *, legs_of: pl.DataFrame | None = None) -> str:
    """The frame in the UCM's ``csv``, ``json`` or ``xml``. ``legs_of`` is
    the whole archive the frame was selected from, where stored main
    records are looked up (default: the frame itself)."""
    if isinstance(frame, pl.LazyFrame):
        frame = frame.collect()
    format = format.lower()
    if format not in EMPTY:
        raise _core.CdrqError(f"format must be csv, json or xml, not {format!r}")
    columns = columns_of(frame if legs_of is None else legs_of)
    if format == "csv":
        lines = [",".join(columns)]
        for row in as_text(frame, columns).iter_rows():
            lines.append(",".join(csv_field(v, c) for v, c in zip(row, columns, strict=True)))
        return "\n".join(lines) + "\n"
    calls = list(sessions(frame, columns, legs_of))
    if format == "json":
        if not calls:
            return EMPTY["json"]
        body = ",\n".join(json.dumps(call, ensure_ascii=False) for call in calls)
        return '{"cdr_root": [\n' + body + "\n]}\n"
    if not calls:
        return EMPTY["xml"]
    out = [XML_DECLARATION, "<cdr_root>\n"]
    for call in calls:
        session = escape(call["cdr"], {'"': "&quot;"})
        out.append(f'<cdr session="{session}">')
        for key, record in call.items():
            if key != "cdr":
                fields = "".join(f"<{k}>{escape(v)}</{k}>" for k, v in record.items())
                out.append(f"<{key}>{fields}</{key}>")
        out.append("</cdr>\n")
    out.append("</cdr_root>\n")
    return "".join(out)


def sessions(frame: pl.DataFrame, columns: list[str], legs_of: pl.DataFrame | None) -> Iterable[dict[str, Any]]:
    """`{"cdr", "main_cdr", "sub_cdr_N"…}` per session, in first-seen order."""
    source = frame if legs_of is None else legs_of
    kind = frame["cdr_kind"] if "cdr_kind" in frame.columns else pl.Series(["record"] * frame.height)
    legs = as_text(frame, columns).with_columns(_kind=kind).filter(pl.col("_kind") != "main")
    stored: dict[str, dict[str, str]] = {}
    if "cdr_kind" in source.columns:
        mains = source.filter(pl.col("cdr_kind") == "main")
        for row in as_text(mains, columns).iter_rows(named=True):
            stored.setdefault(row["session"], row)
    # A record without a session (old firmware) is a call of its own.
    groups: dict[Any, list[dict[str, str]]] = {}
    for i, row in enumerate(legs.drop("_kind").iter_rows(named=True)):
        groups.setdefault(row.get("session") or ("", i), []).append(row)
    for key, rows in groups.items():
        session = key if isinstance(key, str) else ""
        call: dict[str, Any] = {"cdr": session}
        if len(rows) == 1 and session not in stored:
            call["main_cdr"] = rows[0]
            yield call
            continue
        call["main_cdr"] = stored.get(session) or summary(rows, columns)
        for n, row in enumerate(rows, 1):
            call[f"sub_cdr_{n}"] = row
        yield call


def summary(rows: list[dict[str, str]], columns: list[str]) -> dict[str, str]:
    """§5's main record of a multi-leg session: src, dst, start, session and
    action_type of the first leg, the sums of duration and billsec, the rest
    empty."""
    first = rows[0]
    total = lambda c: str(sum(int(r[c]) for r in rows if r[c]))  # noqa: E731
    out = dict.fromkeys(columns, "")
    for c in ("src", "dst", "start", "session", "action_type"):
        if c in out:
            out[c] = first[c]
    out["duration"], out["billsec"] = total("duration"), total("billsec")
    return out


def cdrapi(frame: pl.DataFrame | pl.LazyFrame, qs: str, now: datetime | None = None) -> str:
    """The exact response of the UCM's ``/cdrapi`` to the query string ``qs``
    over this archive: a page of at most 1000 records (``numRecords``,
    ``offset``) in the requested format. A query the UCM rejects gives the
    format's empty container (a bad ``format`` gives the CSV header)."""
    if isinstance(frame, pl.LazyFrame):
        frame = frame.collect()
    try:
        plan = compile_query(qs, now, library=False)
    except _core.QueryError as e:
        return render(frame.clear(), "csv" if e.param.lower() == "format" else requested_format(qs), legs_of=frame)
    page = apply(frame, plan, {}, clamp=True)
    return render(page, plan["format"] or "csv", legs_of=frame)


def requested_format(qs: str) -> str:
    """The valid ``format`` of a rejected query, else csv."""
    for piece in qs.split("?", 1)[-1].split("&"):
        name, _, value = piece.partition("=")
        if name.lower() == "format" and value.lower() in EMPTY:
            return value.lower()
    return "csv"
