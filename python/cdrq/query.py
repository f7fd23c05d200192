"""`cdrq.query` and `cdrq.compile_pattern`: the cdrapi filter language (and
the web UI's filters) over Polars frames, compiled in Rust."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any, TypeVar

import polars as pl

from cdrq import _core, _expr
from cdrq._core import CdrqError
from cdrq.scan import Scan

Frame = TypeVar("Frame", pl.DataFrame, pl.LazyFrame)


def now_us(now: datetime | None) -> int:
    """An instant in UTC microseconds (a naive ``now`` is UTC)."""
    now = now or datetime.now(timezone.utc)
    if now.tzinfo is None:
        now = now.replace(tzinfo=timezone.utc)
    delta = now - datetime(1970, 1, 1, tzinfo=timezone.utc)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


Plan = _core.QueryPlan
Groups = Mapping[str, Sequence[str]]


def compile_query(
    qs: str,
    now: datetime | None = None,
    groups: Groups | None = None,
    library: bool = True,
) -> Plan:
    """Compiles a query string once into the plan every consumer takes
    (:func:`query`, :func:`cdrq.scan`, :func:`cdrq.to_sql`, Spark, the
    server): its items, one ``now``, its extension ``groups`` and paging.
    ``library=False`` admits only the UCM's own parameters. Raises
    ``QueryError``."""
    named = [(name, list(members)) for name, members in (groups or {}).items()]
    return _core.compile_query(qs, now_us=now_us(now), library=library, groups=named)


def plan_of(qs: str | Plan, now: datetime | None, groups: Groups | None, library: bool = True) -> Plan:
    """``qs`` compiled, or the plan itself (which already fixed ``now`` and
    its groups: giving them again is an error)."""
    if not isinstance(qs, Plan):
        return compile_query(qs, now, groups, library)
    if now is not None or groups is not None:
        raise CdrqError("a compiled plan already fixed `now` and `groups`: compile with them instead")
    return qs


def query(frame: Frame, qs: str | Plan, now: datetime | None = None, groups: Groups | None = None) -> Frame:
    """The records of ``frame`` that the query selects.

    ``qs`` is a CDR API query (``caller=5300,6300-6399&callee=5@&minDur=8``,
    or the whole ``https://…/cdrapi?…`` URL) and may also use the web UI's
    filters (``callerNumber=3XXX&status=answered&order=desc``); ``groups``
    names the extension groups ``extGroup`` may refer to. Or ``qs`` is a
    plan from :func:`compile_query`. Matching rows keep archive order;
    every match is returned unless ``numRecords`` or ``offset`` is given.
    Works on a DataFrame and on a LazyFrame; on a :func:`cdrq.scan` the
    reader skips non-matching records before building them. Raises
    ``QueryError``.
    """
    plan = plan_of(qs, now, groups)
    if isinstance(frame, Scan):
        # A cdrq scan filters in its reader (a superset), then exactly, a
        # window at a time: a filter here would not stream (its digit-range
        # kernel is a `map_batches`) and would gather every kept row.
        scanned = frame.with_plan(plan)
        if scanned is not frame:
            return apply(scanned, plan, clamp=False, filtered=True)
    return apply(frame, plan, clamp=False)


def apply(frame: Frame, plan: Plan, clamp: bool, filtered: bool = False) -> Frame:
    """Filters, orders and pages ``frame`` by a compiled plan; ``clamp``
    applies the CDR API's default page of 1000 and its maximum;
    ``filtered``: the rows are the plan's already (only order and page)."""
    if filtered:
        out = frame
    else:
        schema = frame.collect_schema() if isinstance(frame, pl.LazyFrame) else frame.schema
        out = frame.filter(_expr.filters(plan, schema))
    if plan.descending:
        out = out.reverse()
    offset, count = page(plan, clamp)
    if offset is not None or count is not None:
        # The query allows up to 2**64 - 1; Polars takes an i64 offset and (in
        # its default build) a u32 length: clamp to what a frame can hold.
        length = None if count is None else min(count, 2**32 - 1)
        out = out.slice(min(offset or 0, 2**62), length)
    return out


def page(plan: Plan, clamp: bool) -> tuple[int | None, int | None]:
    """(offset, count) of a plan, ``None`` for "not given"; ``clamp`` applies
    the CDR API's default page of 1000 and its maximum."""
    count = plan.num_records
    if clamp:
        count = 1000 if count is None else min(count, 1000)
    return plan.offset, count


class Pattern:
    """A compiled pattern list: ``.matches(value)`` and ``.expr(column)``."""

    def __init__(self, text: str, dialect: str = "cdrapi") -> None:
        self.text = text
        self.dialect = dialect
        items, self._mask, self._all = _core.compile_pattern(text, dialect)
        self.items: list[tuple[str, Any]] = list(items)

    def __repr__(self) -> str:
        return f"Pattern({self.text!r}, dialect={self.dialect!r})"

    def matches(self, value: str | None) -> bool:
        """Whether ``value`` (``None`` is the empty string) matches any item:
        the core's own test, the one its readers and kernel run."""
        return self._all.matches(value)

    def expr(self, column: str) -> pl.Expr:
        """The Polars expression matching ``column`` against the list."""
        return _expr.items_expr(pl.col(column), self.items, self._mask).fill_null(False)


def compile_pattern(text: str, dialect: str = "cdrapi") -> Pattern:
    """Compiles a ``caller``/``callee`` pattern list (``dialect="cdrapi"``:
    ``5300,6300-6399,_4@``) or a web UI number pattern list (``"webui"``:
    ``3XXX,3.``). Raises ``QueryError``.

    >>> compile_pattern("5300,6300-6399,_4@").matches("6345")
    True
    >>> compile_pattern("3XXX,3.", dialect="webui").matches("31234")
    True
    """
    return Pattern(text, dialect)
