"""The answers people open CDRs for: calls (not legs), KPIs per group and
time bucket, calls in progress, and cost by prefix.

Every function takes a ``cdrq.read`` frame, a ``cdrq.scan`` LazyFrame (run
by Polars' streaming engine, reading only the columns it needs) or a path
or dataset directory (scanned) — or a frame of calls, one with a ``call``
column as :func:`calls` gives it (or some of its columns), taken as it is:
group the legs once, ask several questions.

A call is the rows sharing a call id — ``session``, else ``linkedid``,
else ``uniqueid``, else ``AcctId``; a row with none of them is a call of
its own. Of a UCM or PortSIP call with legs the ``sub`` rows are its
legs; its ``main`` row, a summary, counts only for a call that has no
other row.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import polars as pl
from polars.io.plugins import register_io_source

from cdrq import _core, _expr
from cdrq._core import CdrqError
from cdrq.query import Plan, compile_query, query

# The columns that name a call, most specific first.
CALL_IDS = ("session", "linkedid", "uniqueid", "AcctId")
# `calls`' columns, in order.
CALL_VIEW = (
    "call",
    "start",
    "answer",
    "end",
    "duration",
    "talk",
    "disposition",
    "direction",
    "trunk",
    "src",
    "dst",
    "answered_by",
    "legs",
    "accountcode",
    "action_type",
)
# The leg columns a view field cannot do without.
REQUIRES = {
    "start": ("start",),
    "end": ("end",),
    "duration": ("start", "end"),
    "talk": ("billsec",),
    "disposition": ("disposition",),
    "answered_by": ("disposition",),
    "_status": ("disposition",),
}
# The web UI's call types (docs/query-language.md §6), a partition of the calls.
DIRECTIONS = ("inbound", "outbound", "external", "internal")
# The groups of `report(by=…)` that are the first `digits` of a number.
PREFIX_GROUPS = ("src_prefix", "dst_prefix")
# The cyclic buckets of `every`; the others are Polars calendar durations.
CYCLIC = {"hour_of_day": "1h", "day_of_week": "1d"}
EVERY = re.compile(r"[1-9][0-9]*(?:m|h|d|w|mo)")
# The KPIs counting calls by the query `status` word of their disposition.
KPI_STATUS = (("noanswer", "missed"), ("busy", "busy"), ("failed", "failed"))
KPIS = (
    "calls",
    "answered",
    "asr",
    "acd",
    "talk_total",
    "talk_avg",
    "talk_p50",
    "talk_p95",
    "short_calls",
    "missed",
    "busy",
    "failed",
)


# A call's final disposition as a small code (cheaper to carry through
# the call group-by than the text): the query's `status` words, in order,
# then anything else.
STATUS_WORDS = ("answered", "noanswer", "busy", "failed")
OTHER = len(STATUS_WORDS)
# Rows of a batch of a stream grouped into calls (tests make it small).
BATCH_ROWS = 1 << 17


@functools.cache
def dispositions(word: str) -> tuple[str, ...]:
    """The ``disposition`` values a query ``status`` word stands for, as the
    readers write them (one table: the query compiler's)."""
    return tuple(compile_query(f"status={word}").dispositions or ())


@functools.cache
def status_codes() -> dict[str, int]:
    """`disposition` values → their code, as the readers write them (upper
    case) and in lower and title case."""
    codes = {}
    for code, word in enumerate(STATUS_WORDS):
        for value in dispositions(word):
            codes.update(dict.fromkeys((value, value.lower(), value.title()), code))
    return codes


def status_code(disposition: pl.Expr) -> pl.Expr:
    """The code of each row's disposition (null stays null)."""
    code = disposition.replace_strict(status_codes(), default=OTHER, return_dtype=pl.UInt8)
    return pl.when(disposition.is_not_null()).then(code)


def source(data: Any) -> tuple[pl.LazyFrame, pl.DataFrame | None]:
    """``data`` as a LazyFrame, and the DataFrame it is of, if it is one
    (results are then collected in memory, else by the streaming engine)."""
    if isinstance(data, pl.DataFrame):
        return data.lazy(), data
    if isinstance(data, pl.LazyFrame):
        return data, None
    if isinstance(data, (str, os.PathLike)):
        from cdrq.scan import scan

        return scan(data), None
    raise CdrqError(f"expected a Polars DataFrame or LazyFrame, a path or a dataset, not {type(data).__name__}")


def collect(lf: pl.LazyFrame, frame: pl.DataFrame | None) -> pl.DataFrame:
    return lf.collect() if frame is not None else lf.collect(engine="streaming")


def legs(data: Any, qs: str | Plan | None) -> tuple[pl.LazyFrame, pl.DataFrame | None]:
    """The records of ``data``, filtered by the query ``qs`` if given (on a
    scan the reader drops what cannot match)."""
    if qs is not None and isinstance(data, (pl.DataFrame, pl.LazyFrame)):
        data = query(data, qs)
    lf, frame = source(data)
    if qs is not None and not isinstance(data, (pl.DataFrame, pl.LazyFrame)):
        lf = query(lf, qs)
    return lf, frame


def schema_of(lf: pl.LazyFrame) -> pl.Schema:
    return lf.collect_schema()


def require(schema: pl.Schema, columns: Sequence[str], what: str) -> None:
    missing = [c for c in dict.fromkeys(columns) if c not in schema]
    if missing:
        have = ", ".join(schema.names()) or "no columns"
        raise CdrqError(
            f"{what} needs the column(s) {', '.join(map(repr, missing))}, which the frame lacks (it has: {have})"
        )


def call_key(schema: pl.Schema, frame: pl.DataFrame | None, lf: pl.LazyFrame) -> tuple[pl.LazyFrame, list[str]]:
    """``lf`` with the call id as ``call`` (and, where rows may lack every
    id, a row number ``_row`` beside it, null for rows that have one), and
    the group-by keys. Of a frame in memory only the id columns up to the
    first without nulls are read (Arrow keeps null counts); a scan cannot
    be asked without reading it twice."""
    names = [c for c in CALL_IDS if c in schema]
    if frame is not None:
        complete = [i for i, c in enumerate(names) if frame[c].null_count() == 0]
        names = names[: complete[0] + 1] if complete else names
    if not names:
        return lf.with_row_index("_row"), ["_row"]
    lf = lf.with_columns(pl.coalesce([pl.col(c).cast(pl.String) for c in names]).alias("call"))
    if frame is not None and (complete or not lf.select(pl.col("call").is_null().any()).collect().item()):
        return lf, ["call"]
    lf = lf.with_row_index("_row").with_columns(pl.when(pl.col("call").is_null()).then(pl.col("_row")).alias("_row"))
    return lf, ["call", "_row"]


def is_calls(schema: pl.Schema) -> bool:
    """Whether a frame is of calls, taken as it is, not grouped again: it
    has a ``call`` column (legs have none: their ids are :data:`CALL_IDS`)."""
    return CALL_VIEW[0] in schema


def call_frame(lf: pl.LazyFrame, frame: pl.DataFrame | None, fields: Sequence[str], what: str) -> pl.LazyFrame:
    """One row per call: ``call`` and ``fields`` (view fields of
    :data:`CALL_VIEW`, ``_status`` (the code of its disposition), or any
    leg column: its first value in the call). ``frame``: the DataFrame
    ``lf`` is of, if any (asked for shortcuts). Of a frame of calls, its
    columns."""
    schema = schema_of(lf)
    fields = list(dict.fromkeys(fields))
    if is_calls(schema):
        require(schema, [f for f in fields if f != "_status"], what)
        status = status_code(pl.col("disposition")).alias("_status")
        return lf.select("call", *(status if f == "_status" else pl.col(f) for f in fields))
    require(schema, [c for f in fields for c in REQUIRES.get(f, ())], what)
    for f in fields:
        if f not in (*CALL_VIEW, "_status") and f not in schema:
            raise CdrqError(
                f"{what}: {f!r} is neither a field of the call view ({', '.join(CALL_VIEW)}) nor a column of the frame"
            )
    # Main rows matter only where there are some (a frame in memory is asked).
    has_kind = "cdr_kind" in schema and (frame is None or bool((frame["cdr_kind"] == "main").any()))
    pre: list[pl.Expr] = []
    aggs: dict[str, pl.Expr] = {}
    post: dict[str, pl.Expr] = {}
    if has_kind:
        pre.append(pl.col("cdr_kind").ne_missing("main").alias("_leg"))
    if {"disposition", "_status", "answered_by"} & set(fields):
        pre.append(status_code(pl.col("disposition")).alias("_code"))

    def first(name: str) -> pl.Expr:
        return pl.col(name).first() if name in schema else pl.lit(None, pl.String)

    for f in fields:
        if f in ("start", "answer", "duration"):
            aggs["start"] = pl.col("start").min()
        if f == "answer":
            aggs["answer"] = pl.col("answer").min() if "answer" in schema else pl.lit(None, schema["start"])
        if f in ("end", "duration"):
            aggs["end"] = pl.col("end").max()
        if f == "duration":
            post["duration"] = (pl.col("end") - pl.col("start")).dt.total_seconds().cast(pl.Int64)
        if f in ("talk", "legs") and has_kind:
            aggs["_legs"] = pl.col("_leg").sum()
        if f == "talk":
            if has_kind:
                aggs["_leg_talk"] = pl.when(pl.col("_leg")).then(pl.col("billsec")).sum()
                aggs["_all_talk"] = pl.col("billsec").sum()
                post["talk"] = pl.when(pl.col("_legs") > 0).then(pl.col("_leg_talk")).otherwise(pl.col("_all_talk"))
            else:
                aggs["talk"] = pl.col("billsec").sum()
        if f == "legs":
            aggs["_rows"] = pl.len()
            legs = (
                pl.when(pl.col("_legs") > 0).then(pl.col("_legs")).otherwise(pl.col("_rows"))
                if has_kind
                else pl.col("_rows")
            )
            post["legs"] = legs.cast(pl.UInt32)
        if f in ("disposition", "_status"):
            # Answered if any leg was; else what the last leg (in archive
            # order: the main row, when there is one, comes first) ended as.
            aggs["_any_answered"] = (pl.col("_code") == 0).any()
            aggs["_last_code"] = pl.col("_code").last(ignore_nulls=True)
            post["_status"] = pl.when(pl.col("_any_answered")).then(0).otherwise(pl.col("_last_code")).cast(pl.UInt8)
        if f == "disposition":
            aggs["_last"] = pl.col("disposition").last(ignore_nulls=True)
            post["disposition"] = (
                pl.when(pl.col("_any_answered"))
                .then(pl.lit(dispositions(STATUS_WORDS[0])[0]))
                .otherwise(pl.col("_last").str.to_uppercase())
            )
        if f == "answered_by":
            who = [pl.col(c) for c in ("dstanswer", "dst") if c in schema]
            answered = pl.col("_code") == 0
            aggs["answered_by"] = (pl.coalesce(who) if who else pl.lit(None, pl.String)).filter(answered).first()
        if f in ("direction", "trunk"):
            for name in ("src_trunk_name", "dst_trunk_name"):
                if name in schema:
                    aggs[name] = pl.col(name).first(ignore_nulls=True)
            for name in ("dcontext", "dstchannel"):
                if name in schema:
                    aggs[name] = pl.col(name).first()
        if f == "direction":
            names = set(aggs)
            kind = pl.lit(None, pl.String)
            for d in reversed(DIRECTIONS):
                kind = pl.when(_expr.call_type(d, names)).then(pl.lit(d)).otherwise(kind)
            post["direction"] = kind
        if f == "trunk":
            trunks = [pl.col(c) for c in ("src_trunk_name", "dst_trunk_name") if c in schema]
            post["trunk"] = pl.coalesce(trunks) if trunks else pl.lit(None, pl.String)
        if f not in (*CALL_VIEW, "_status") or f in ("src", "dst", "accountcode", "action_type"):
            aggs.setdefault(f, first(f))
    lf, keys = call_key(schema, frame, lf)

    def group(legs: pl.LazyFrame, **more: pl.Expr) -> pl.LazyFrame:
        return legs.with_columns(pre).group_by(keys).agg(**aggs, **more)

    if frame is None:
        # Only the columns the group-by reads cross the stream (and `pre`
        # is computed on its batches: Polars' streaming `replace_strict`
        # alone held 250 MB).
        made = {e.meta.output_name() for e in pre}
        roots = (c for e in [*pre, *aggs.values()] for c in e.meta.root_names() if c not in made)
        out = grouped_where_they_lie(lf.select(*dict.fromkeys([*keys, *roots])), keys, group)
    else:
        out = group(lf)
    if keys == ["_row"]:
        out = out.with_columns(pl.lit(None, pl.String).alias("call"))
    if post:
        out = out.with_columns(**post)
    return out.select("call", *fields)


def grouped_where_they_lie(
    legs: pl.LazyFrame, keys: list[str], group: Callable[[pl.LazyFrame], pl.LazyFrame]
) -> pl.LazyFrame:
    """``group(legs)`` (one row per call) of a stream of legs in bounded
    memory: each call grouped as soon as its last leg has gone by.

    One hash table of every call (Polars' group-by) costs hundreds of
    bytes a call: 9 GB for the 16 M calls of a 5 GB archive. But a call's
    legs lie close together in an archive, so a first pass reads the call
    ids only and marks each row that no later row shares its hash with
    (`rust/src/analytics/calls.rs`), and the second holds the legs of
    calls still open only: a marked row closes its call (no later row has
    the hash, so none has the id); a call sharing its hash with a later
    one stays open to the end. Legs far apart cost memory, never
    correctness. Rows without an id are calls of their own."""
    indexed = legs.with_row_index("_i")
    schema = group(legs).collect_schema()

    def calls(
        with_columns: list[str] | None, predicate: pl.Expr | None, n_rows: int | None, batch_size: int | None
    ) -> Iterator[pl.DataFrame]:
        last, unchanged = None, 0
        if "call" in keys:
            # (Rows without an id share the null's hash; they close at once anyway.)
            hashes = legs.select(call_hash(pl.col("call"))).collect(engine="streaming").to_series()
            last = pl.DataFrame(_core.last_of_each(hashes)).to_series()
            # The second pass must see the same ids: their hashes summed.
            unchanged = int((hashes % LOW).sum())
            del hashes
        held: pl.DataFrame | None = None
        seen = 0
        for batch in indexed.collect_batches(chunk_size=BATCH_ROWS, engine="streaming"):
            if not batch.height:
                continue
            seen += batch.height
            if last is None:
                ends = pl.repeat(True, batch.height, eager=True)
            else:
                unchanged -= batch.select((call_hash(pl.col("call")) % LOW).sum()).item()
                if seen > last.len():
                    raise CdrqError(CHANGED)
                ends = last.slice(batch["_i"][0], batch.height)
            batch = batch.with_columns(_end=ends)
            rows = batch if held is None else pl.concat([held, batch])
            # In memory: on Polars 2.1 the default engine for a batch held
            # more with every batch (+600 MB over 16 M rows).
            out = group(rows.lazy(), _end=pl.col("_end").any()).collect(engine="in-memory")
            if "call" in keys:
                open_calls = out.filter(pl.col("call").is_not_null() & ~pl.col("_end"))["call"]
                held = rows.filter(pl.col("call").is_in(open_calls.implode())) if open_calls.len() else None
                out = out.filter(pl.col("call").is_null() | pl.col("_end"))
            yield finish(out.drop("_end"), with_columns, predicate)
        if last is not None and (seen != last.len() or unchanged):
            raise CdrqError(CHANGED)
        if held is not None:
            yield finish(group(held.lazy()).collect(engine="in-memory"), with_columns, predicate)

    return register_io_source(calls, schema=schema, explain_name="cdrq calls")


LOW = 1 << 32  # hashes summed modulo this: 2^32 rows before the sum can wrap
CHANGED = "calls: the legs changed between the two passes over them (a file rewritten meanwhile?); ask again"


def call_hash(call: pl.Expr) -> pl.Expr:
    """A call id's hash, to tell a call's last leg (tests narrow it to a
    few values: calls that share one must come out the same)."""
    return call.hash(0x5EED)


def finish(calls: pl.DataFrame, with_columns: list[str] | None, predicate: pl.Expr | None) -> pl.DataFrame:
    """A batch of an IO source: its rows that ``predicate`` keeps, its ``with_columns``."""
    calls = calls if predicate is None else calls.filter(predicate)
    return calls if with_columns is None else calls.select(with_columns)


def calls(data: Any) -> Any:
    """One row per call, with the columns of :data:`CALL_VIEW`.

    ``call`` the call id; ``start`` the first leg's start, ``answer`` the
    first answer, ``end`` the last end, ``duration`` end - start (seconds),
    ``talk`` the legs' billsec summed, ``disposition`` ``ANSWERED`` if any
    leg was answered, else the last leg's; ``direction`` by the web UI's
    call-type rules (``inbound``, ``outbound``, ``external``, ``internal``),
    ``trunk`` the source trunk, else the destination trunk; ``src``,
    ``dst``, ``accountcode``, ``action_type`` the first row's;
    ``answered_by`` who took the first answered leg; ``legs`` how many.
    Sorted by start. A DataFrame in gives a DataFrame, a LazyFrame (or a
    path) a LazyFrame; a frame of calls comes back as it is.

    >>> import cdrq
    >>> cdrq.calls(cdrq.read("tests/samples/ucm6xxx-fw1.0.11-cdrapi-transfer.json")).select("talk", "legs").row(0)
    (9, 2)
    """
    lf, frame = source(data)
    view = call_view(lf, frame, "calls")
    return view.collect() if isinstance(data, pl.DataFrame) else view


def call_view(lf: pl.LazyFrame, frame: pl.DataFrame | None, what: str) -> pl.LazyFrame:
    """:func:`calls` of ``lf``; a frame of calls as it is."""
    if is_calls(schema_of(lf)):
        return lf
    return call_frame(lf, frame, CALL_VIEW[1:], what).sort("start", "call", nulls_last=True)


def bucket(every: str, column: str = "start") -> tuple[pl.Expr, str | None]:
    """The ``period`` of ``column`` for ``every``, and the calendar bucket
    a cyclic one is made of (``None`` for a calendar ``every``)."""
    if every == "hour_of_day":
        return pl.col(column).dt.hour().cast(pl.Int8).alias("period"), CYCLIC[every]
    if every == "day_of_week":
        return pl.col(column).dt.weekday().cast(pl.Int8).alias("period"), CYCLIC[every]
    if not isinstance(every, str) or not EVERY.fullmatch(every):
        raise CdrqError(
            f"every={every!r}: expected a count and a unit (1m, 10m, 1h, 1d, 1w, 1mo: m minutes, h hours, "
            "d days, w weeks, mo months) or hour_of_day or day_of_week"
        )
    return pl.col(column).dt.truncate(every).alias("period"), None


def group_fields(by: str | Sequence[str] | None, digits: int | None) -> tuple[list[str], dict[str, pl.Expr]]:
    """The call-view fields ``by`` needs, and the group columns computed
    from them (``src_prefix``/``dst_prefix``)."""
    names = [by] if isinstance(by, str) else list(by or [])
    fields, derived = [], {}
    for name in names:
        if name in PREFIX_GROUPS:
            if not isinstance(digits, int) or isinstance(digits, bool) or digits < 1:
                raise CdrqError(f"by={name!r} needs digits=N, a whole number of leading digits ≥ 1, not {digits!r}")
            number = name.removesuffix("_prefix")
            fields.append(number)
            derived[name] = pl.col(number).str.slice(0, digits)
        elif name == "call":
            raise CdrqError("by='call' would make every group one call; use cdrq.calls")
        else:
            fields.append(name)
    return fields, derived


def kpi_sums(short: int) -> dict[str, pl.Expr]:
    """The KPIs that are sums over the calls (so also of sums of batches)."""
    status = pl.col("_status")
    answered = status == 0
    return {
        "calls": pl.len(),
        "answered": answered.sum(),
        "talk_total": pl.col("talk").filter(answered).sum(),
        "short_calls": (answered & (pl.col("talk") < short)).sum(),
        **{name: (status == STATUS_WORDS.index(word)).sum() for word, name in KPI_STATUS},
    }


def kpis(short: int) -> list[pl.Expr]:
    sums = kpi_sums(short)
    talk = pl.col("talk").filter(pl.col("_status") == 0)
    count = sums["answered"]
    ratios = {
        "asr": pl.when(pl.len() > 0).then(count / pl.len()),
        "acd": pl.when(count > 0).then(sums["talk_total"] / count),
        "talk_avg": talk.mean(),
        "talk_p50": talk.quantile(0.5, "linear"),
        "talk_p95": talk.quantile(0.95, "linear"),
    }
    return [{**sums, **ratios}[name].alias(name) for name in KPIS]


def report(
    data: Any,
    by: str | Sequence[str] | None = None,
    every: str | None = None,
    qs: str | Plan | None = None,
    short: int = 10,
    digits: int | None = None,
) -> pl.DataFrame:
    """KPIs of the calls, per group of ``by`` and per ``every`` bucket.

    ``by``: call-view fields (``trunk``, ``direction``, ``disposition``,
    ``accountcode``, ``action_type``, ``answered_by``, ``src``, ``dst``),
    ``src_prefix``/``dst_prefix`` (the first ``digits`` digits), or any
    other column (its value in the call's first row). ``every``: ``1m``,
    ``10m``, ``1h``, ``1d``, ``1w``, ``1mo`` (any count of m, h, d, w, mo)
    → a ``period`` column, the bucket's start in the frame's zone; or
    ``hour_of_day`` (0 to 23) or ``day_of_week`` (1 Monday to 7 Sunday), of the
    call's start. ``qs``: a query (string or plan) applied to the legs
    first. Columns: the groups, ``period``, then :data:`KPIS` — ``asr`` =
    answered / calls; ``acd``, ``talk_*`` over answered calls
    (``talk_p50``/``talk_p95`` linearly interpolated); ``short_calls``
    answered calls with talk < ``short`` seconds; ``missed`` NO ANSWER,
    ``busy``, ``failed`` (FAILED, CONGESTION) by the call's disposition.

    >>> import cdrq
    >>> cdrq.report(cdrq.read("tests/samples/ucm6510-fw1.0.2.5-cdrapi.csv")).select("calls", "answered", "acd").row(0)
    (3, 3, 4.333333333333333)
    """
    if not isinstance(short, int) or isinstance(short, bool):
        raise CdrqError(f"short must be a whole number of seconds, not {short!r}")
    fields, derived = group_fields(by, digits)
    period = bucket(every)[0] if every is not None else None
    lf, frame = legs(data, qs)
    needed = [*fields, "talk", "_status", *(["start"] if period is not None else [])]
    view = call_frame(lf, frame, needed, "report")
    groups = [*([by] if isinstance(by, str) else list(by or [])), *(["period"] if period is not None else [])]
    view = view.with_columns(**derived, **({"period": period} if period is not None else {}))
    if groups:
        out = view.group_by(groups).agg(kpis(short)).sort(groups, nulls_last=True)
    else:
        out = view.select(kpis(short))
    return collect(out, frame) if frame is not None else streamed_kpis(view, groups, short, out.collect_schema())


def streamed_kpis(calls: pl.LazyFrame, groups: list[str], short: int, schema: pl.Schema) -> pl.DataFrame:
    """:func:`kpis` of a stream of calls in bounded memory: per batch, the
    sums and a histogram of the answered talk times (a count per group and
    second), summed as they come; the quantiles are read off the histogram
    as Polars' linear interpolation takes them. (Polars' streaming group-by
    held every call's values for the quantiles: 1.6 GB of 16 M calls.)"""
    answered = pl.col("_status") == 0
    sums = [e.alias(name) for name, e in kpi_sums(short).items()]
    talks = [*groups, "talk"]

    def by(frame: pl.DataFrame, keys: list[str], aggs: list[pl.Expr]) -> pl.DataFrame:
        return frame.group_by(keys).agg(aggs) if keys else frame.select(aggs)

    def fold(parts: list[pl.DataFrame], keys: list[str]) -> pl.DataFrame:
        frame = pl.concat(parts)
        return by(frame, keys, [pl.exclude(keys).sum()])

    totals: list[pl.DataFrame] = []
    histogram: list[pl.DataFrame] = []
    for batch in calls.collect_batches(chunk_size=BATCH_ROWS, engine="streaming"):
        totals.append(by(batch, groups, sums))
        histogram.append(batch.filter(answered & pl.col("talk").is_not_null()).group_by(talks).agg(n=pl.len()))
        if len(totals) > 64:  # bounded by the groups, not the batches
            totals, histogram = [fold(totals, groups)], [fold(histogram, talks)]
    if not totals:  # no calls: the answer of none
        return by(pl.DataFrame(schema=calls.collect_schema()), groups, kpis(short)).cast(dict(schema))
    total = fold(totals, groups)
    counts = fold(histogram, talks).sort(talks, nulls_last=True)
    if groups:
        counts = counts.with_columns(below=pl.col("n").cum_sum().over(groups))
    else:
        counts = counts.with_columns(below=pl.col("n").cum_sum())

    def quantile(q: float) -> pl.Expr:
        # Polars: the values at floor and ceil of (n - 1) q, interpolated.
        at = (pl.col("n").sum() - 1).cast(pl.Float64) * q
        low = pl.col("talk").filter(pl.col("below") > at.floor()).first().cast(pl.Float64)
        high = pl.col("talk").filter(pl.col("below") > at.ceil()).first().cast(pl.Float64)
        return pl.when(low == high).then(low).otherwise((at - at.floor()) * (high - low) + low)

    spread = [pl.col("n").sum().alias("_talks"), quantile(0.5).alias("talk_p50"), quantile(0.95).alias("talk_p95")]
    spread_of = by(counts, groups, spread)
    if groups:
        out = total.join(spread_of, on=groups, how="left", nulls_equal=True)
    else:
        out = pl.concat([total, spread_of], how="horizontal")
    count = pl.col("answered")
    out = out.with_columns(
        asr=pl.when(pl.col("calls") > 0).then(count / pl.col("calls")),
        acd=pl.when(count > 0).then(pl.col("talk_total") / count),
        talk_avg=pl.when(pl.col("_talks") > 0).then(pl.col("talk_total") / pl.col("_talks")),
    )
    out = out.select(schema.names()).cast(dict(schema))
    return out.sort(groups, nulls_last=True) if groups else out


def intervals(data: Any, by: list[str]) -> tuple[pl.DataFrame, pl.DataType]:
    """Each call's ``start``, ``end`` (and ``by`` fields), collected, and
    the type of the times."""
    lf, frame = source(data)
    view = call_frame(lf, frame, [*by, "start", "end"], "concurrency")
    dtype = schema_of(view)["start"]
    if not isinstance(dtype, pl.Datetime):
        raise CdrqError(f"concurrency needs start and end as times (Datetime), not {dtype}")
    us = pl.Datetime("us", dtype.time_zone)
    view = view.select(*by, pl.col("start", "end").cast(us).to_physical()).drop_nulls(["start", "end"])
    return collect(view, frame), us


def sweep_input(data: Any, by: list[str]) -> tuple[dict[str, Any], pl.DataFrame | None, pl.DataType]:
    """The Rust sweeps' arguments (starts, ends, dense group ids and their
    count), the group ids' labels (``_group`` and ``by``) and the type of
    the times."""
    spans, dtype = intervals(data, by)
    args: dict[str, Any] = {"starts": spans["start"].rechunk(), "ends": spans["end"].rechunk()}
    if not by:
        return args, None, dtype
    spans = spans.with_columns((pl.struct(by).rank("dense") - 1).cast(pl.UInt32).alias("_group"))
    labels = spans.group_by("_group").agg(pl.col(by).first())
    return {**args, "groups": spans["_group"].rechunk(), "group_count": labels.height}, labels, dtype


def labelled(out: pl.DataFrame, labels: pl.DataFrame | None) -> pl.DataFrame:
    """``out`` of a sweep with the ``by`` values of its ``group`` ids."""
    if labels is None:
        return out
    return out.join(labels, left_on="group", right_on="_group", how="left", maintain_order="left")


def steps(data: Any, by: list[str]) -> tuple[pl.DataFrame, pl.DataType]:
    """The step function of calls in progress: (by…, ``time``, ``calls``),
    from the Rust sweep (`rust/src/analytics/concurrency.rs`)."""
    args, labels, dtype = sweep_input(data, by)
    out = pl.DataFrame(_core.concurrency_sweep(**args)).with_columns(pl.col("time").cast(dtype))
    return labelled(out, labels).select(*by, "time", "calls"), dtype


def concurrency(data: Any, by: str | Sequence[str] | None = None, every: str | None = None) -> pl.DataFrame:
    """Calls in progress over time: a call is in progress from its start
    until its end, ``[start, end)`` — at an instant where one ends and
    another starts they do not overlap, and a zero-length call (or one
    whose end precedes its start) is never in progress; calls without a
    start or an end are left out. Exact, in one sort-and-sweep pass.

    Without ``every``: the step function, (by…, ``time``, ``calls``): from
    ``time`` until the group's next row, ``calls`` are in progress (0 after
    its last row); rows only where the count changes. With ``every``
    (as in :func:`report`): one row per bucket from the group's first to
    its last change, (by…, ``period``, ``peak``, ``at``) — the most calls
    in progress at once during the bucket and the first instant it was
    reached.

    >>> import cdrq
    >>> cdrq.concurrency(cdrq.read("tests/samples/ucm6510-fw1.0.2.5-cdrapi.csv"))["calls"].to_list()
    [1, 0, 1, 0, 1, 0]
    """
    by = [by] if isinstance(by, str) else list(by or [])
    if every is None:
        return steps(data, by)[0].sort(*by, "time", nulls_last=True)
    period, calendar = bucket(every, "time")
    step, dtype = steps(data, by)
    if step.is_empty():
        return step.select(*by, period, pl.col("calls").alias("peak"), pl.col("time").alias("at"))
    unit = calendar or every
    step = step.with_columns(pl.col("time").dt.truncate(unit).alias("_bucket"))
    # Every bucket from a group's first change to its last, each opening
    # with the count carried in from before it.
    spans = step.group_by(by or pl.lit(0).alias("_all")).agg(lo=pl.col("_bucket").min(), hi=pl.col("_bucket").max())
    starts = (
        spans.with_columns(
            pl.datetime_ranges("lo", "hi", unit, time_zone=getattr(dtype, "time_zone", None)).alias("time")
        )
        .explode("time")
        .with_columns(pl.col("time").cast(dtype).dt.truncate(unit))
        .select(*by, "time")
        .unique()
        .sort("time")
    )
    # (both sorted by time, so within every group too: Polars cannot check that)
    carried = starts.join_asof(
        step.sort("time").select(*by, "time", "calls"),
        on="time",
        by=by or None,
        strategy="backward",
        check_sortedness=False,
    )
    carried = carried.with_columns(pl.col("calls").fill_null(0), pl.col("time").alias("_bucket"))
    rows = pl.concat([step.select(*by, "time", "calls", "_bucket"), carried.select(*by, "time", "calls", "_bucket")])
    if calendar is None:
        rows = rows.with_columns(pl.col("_bucket").alias("period"))
    else:
        rows = rows.with_columns(period)
    return rows.group_by(*by, "period").agg(peak_of("calls", "time")).sort(*by, "period", nulls_last=True)


def peak_of(count: str, time: str) -> list[pl.Expr]:
    """Aggregations: the most of ``count`` (``peak``, 0 of no rows) and the
    first ``time`` it was reached (``at``)."""
    peak = pl.col(count).max()
    return [peak.fill_null(0).alias("peak"), pl.col(time).filter(pl.col(count) == peak).min().alias("at")]


def peak_concurrency(data: Any, by: str | Sequence[str] | None = None) -> pl.DataFrame:
    """The most calls in progress at once (``peak``) and the first instant
    it was reached (``at``), per group of ``by`` (one row without ``by``:
    peak 0 and no instant when there are no calls).

    >>> import cdrq
    >>> cdrq.peak_concurrency(cdrq.read("tests/samples/ucm6510-fw1.0.2.5-cdrapi.csv"))["peak"].item()
    1
    """
    by = [by] if isinstance(by, str) else list(by or [])
    args, labels, dtype = sweep_input(data, by)
    # The Rust sweep keeps the peak only: the steps of 16 M calls are 32 M rows.
    peaks = pl.DataFrame(_core.concurrency_sweep(**args, peaks_only=True)).with_columns(pl.col("at").cast(dtype))
    if labels is None:
        return peaks
    peaks = peaks.with_row_index("group").filter(pl.col("at").is_not_null())
    return labelled(peaks, labels).select(*by, "peak", "at").sort(by, nulls_last=True)


# --- rating ---------------------------------------------------------------

RATE_COLUMNS = ("prefix", "rate", "increment", "connection_fee", "description", "from", "to")
INCREMENT = re.compile(r"\s*([0-9]+)\s*/\s*([0-9]+)\s*")
CLOCK = re.compile(r"\s*([0-9]{1,2}):([0-9]{2})\s*")


def rate_table(rates: Any) -> pl.DataFrame:
    """The rate table checked: ``prefix`` text, ``rate`` ≥ 0 per minute,
    ``increment`` as first block and then step seconds (``_first``,
    ``_step``), ``connection_fee`` ≥ 0, ``from``/``to`` as minutes of the day."""
    if isinstance(rates, (str, os.PathLike)):
        try:
            rates = pl.read_csv(rates, infer_schema=False)
        except (OSError, pl.exceptions.PolarsError) as e:
            raise CdrqError(f"{os.fspath(rates)}: cannot read the rate table: {e}") from None
    if not isinstance(rates, pl.DataFrame):
        raise CdrqError(f"rates must be a DataFrame or the path of a CSV file, not {type(rates).__name__}")
    require(rates.schema, ("prefix", "rate"), "the rate table")
    table = rates.select(
        pl.col("prefix").cast(pl.String),
        pl.col("rate").cast(pl.Float64, strict=False),
        (pl.col("increment") if "increment" in rates.columns else pl.lit("1/1")).cast(pl.String).alias("increment"),
        (pl.col("connection_fee") if "connection_fee" in rates.columns else pl.lit(0.0))
        .cast(pl.Float64, strict=False)
        .alias("connection_fee"),
        *([pl.col("description").cast(pl.String)] if "description" in rates.columns else []),
        *(pl.col(c).cast(pl.String).alias(c) for c in ("from", "to") if c in rates.columns),
    )

    def bad(mask: pl.Series, why: str) -> None:
        rows = (mask.arg_true() + 1).to_list()
        if rows:
            raise CdrqError(
                f"rate table row {rows[0]}: {why}" + (f" (and {len(rows) - 1} more rows)" if len(rows) > 1 else "")
            )

    bad(table["prefix"].is_null(), "no prefix")
    bad(table["rate"].is_null() | rates["rate"].is_null(), "the rate is not a number")
    bad(table["rate"] < 0, "a negative rate")
    bad(~table["rate"].is_finite(), "the rate is not finite")
    bad(table["connection_fee"].is_null() | (table["connection_fee"] < 0), "the connection fee is not a number ≥ 0")
    parts = table["increment"].fill_null("1/1").str.extract_groups(INCREMENT.pattern)
    first, step = (
        parts.struct.field("1").cast(pl.Int64, strict=False),
        parts.struct.field("2").cast(pl.Int64, strict=False),
    )
    bad(
        first.is_null() | step.is_null() | (step < 1),
        "increment must be FIRST/STEP seconds (60/60, 1/1, 30/6), STEP ≥ 1",
    )
    table = table.with_columns(_first=first, _step=step)
    if ("from" in table.columns) != ("to" in table.columns):
        raise CdrqError("the rate table has one of from/to but not both")
    if "from" in table.columns:
        for end in ("from", "to"):
            clock = table[end].str.extract_groups(CLOCK.pattern)
            hour, minute = (clock.struct.field(k).cast(pl.Int64, strict=False) for k in ("1", "2"))
            minutes = hour * 60 + minute
            limit = 1440 if end == "to" else 1439
            bad(
                table[end].is_not_null() & (minutes.is_null() | (minute > 59) | (minutes > limit)),
                f"{end} must be a time HH:MM (00:00 to {'24:00' if end == 'to' else '23:59'})",
            )
            table = table.with_columns(minutes.alias(f"_{end}"))
        bad(table["_from"].is_null() != table["_to"].is_null(), "from and to come together")
    return table


def rate(data: Any, rates: Any, on: str = "dst") -> Any:
    """The calls of ``data`` (as by :func:`calls`) with what they cost by
    the rate table ``rates`` (a DataFrame or a CSV path).

    The table has ``prefix`` (text) and ``rate`` (per minute), and may have
    ``increment`` (``FIRST/STEP`` seconds: ``60/60`` bills whole minutes,
    ``1/1`` seconds, ``30/6`` a first 30 s then 6 s steps; default ``1/1``),
    ``connection_fee`` (default 0), ``description``, and a time band
    ``from``/``to`` (``HH:MM`` of the call's start in the frame's zone,
    ``to`` exclusive, wrapping past midnight when ``from`` > ``to``; none:
    all day). Each call takes the row of the longest prefix of its ``on``
    number (``dst``, or ``src``) that has a row in force at its start,
    matched byte for byte (no number is rewritten: ``+49`` and ``0049``
    are different prefixes; an empty prefix matches every number). A
    prefix twice with overlapping times is an error, as are negative rates
    and fees and malformed increments or times (naming the row, 1-based).

    Adds ``prefix``, ``rate``, ``destination`` (the table's
    ``description``) and ``cost`` = connection fee + rate * billed minutes,
    where billed seconds are ``talk`` rounded up to FIRST, then to whole
    STEPs; a call with no talk costs 0 (no fee), one no prefix matches
    null. Same kind as ``data`` (a DataFrame, else a LazyFrame).

    >>> import cdrq, polars as pl
    >>> rates = pl.DataFrame({"prefix": ["53"], "rate": [0.6], "increment": ["60/60"]})
    >>> cdrq.rate(cdrq.read("tests/samples/ucm6510-fw1.0.2.5-cdrapi.csv"), rates)["cost"].to_list()
    [0.6, 0.6, 0.6]
    """
    table = rate_table(rates)
    if on not in CALL_VIEW or on in ("call",):
        raise CdrqError(f"on={on!r}: expected a number field of the call view, such as 'dst' or 'src'")
    # The minute of the day only where a band asks for it (local time of
    # millions of instants is not free).
    banded = "_from" in table.columns and bool(table["_from"].is_not_null().any())
    bands: list[tuple[int, int] | None] = [None] * table.height
    if banded:
        bands = [None if lo is None else (lo, hi) for lo, hi in zip(table["_from"], table["_to"], strict=True)]
    matcher = _core.PrefixTable(table["prefix"].to_list(), bands)
    lf, frame = source(data)
    view = call_view(lf, frame, "rate")
    require(schema_of(view), (on, "start", "talk"), "rate")
    minute = pl.col("start").dt.hour().cast(pl.Int32) * 60 + pl.col("start").dt.minute().cast(pl.Int32)
    inputs = [pl.col(on).cast(pl.String), *([minute.alias("_minute")] if banded else [])]

    def match(numbers: pl.DataFrame) -> pl.Series:
        rows = matcher(numbers[on].rechunk(), numbers["_minute"].rechunk() if banded else None)
        return pl.DataFrame(rows).to_series()

    priced = table.select(
        pl.int_range(pl.len(), dtype=pl.UInt32).alias("_rate_row"),
        "prefix",
        "rate",
        (pl.col("description") if "description" in table.columns else pl.lit(None, pl.String)).alias("destination"),
        "connection_fee",
        "_first",
        "_step",
    )
    talk, first, step = pl.col("talk"), pl.col("_first"), pl.col("_step")
    billed = pl.when(talk <= first).then(first).otherwise(first + ((talk - first + step - 1) // step) * step)
    cost = (
        pl.when(pl.col("_rate_row").is_null())
        .then(None)
        .when(talk.fill_null(0) <= 0)
        .then(0.0)
        .otherwise(pl.col("connection_fee") + pl.col("rate") * billed / 60)
    )
    if frame is not None:
        # In memory: the rows matched at once, their rates gathered by index.
        calls_now = view.collect()
        rows = match(calls_now.select(inputs))
        out = pl.concat([calls_now, priced.drop("_rate_row")[rows]], how="horizontal").lazy()
        out = out.with_columns(rows.alias("_rate_row"))
    else:
        matched = pl.struct(inputs).map_batches(lambda batch: match(batch.struct.unnest()), return_dtype=pl.UInt32)
        out = view.with_columns(matched.alias("_rate_row")).join(
            priced.lazy(), on="_rate_row", how="left", maintain_order="left"
        )
    out = out.with_columns(cost.alias("cost")).drop("_rate_row", "connection_fee", "_first", "_step")
    return out.collect() if frame is not None else out
