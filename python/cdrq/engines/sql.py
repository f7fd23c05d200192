"""`cdrq.to_sql`: a query's plan as SQL for any engine sqlglot speaks.

The same compiled plan the Polars path evaluates becomes a sqlglot
expression tree — user text only ever enters as string literals, never by
concatenation — generated for the dialect asked (``duckdb``, ``spark``,
``trino``, ``clickhouse``, …). Semantics follow the Polars path exactly:
only legs (``cdr_kind`` is not ``main``), null text as the empty string
where an item can match it (``@``, ranges), digit ranges compared as digit
strings (length, then bytes) so 25-digit numbers stay exact, wildcards as
anchored regular expressions with literals escaped, and time bounds as
instants against ``start`` (``tz=None``: a naive column holding UTC wall
times). SQL has no archive order: rows come in the engine's scan order
(DuckDB keeps insertion order), or by ``order_by`` when given (which
``order=desc`` needs).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlglot import exp

from cdrq._core import CdrqError
from cdrq.query import Plan, page, plan_of


def to_sql(qs: str | Plan, dialect: str = "duckdb", **options: Any) -> str:
    """The query (a string, or a plan from :func:`cdrq.compile_query`) as
    SQL for ``dialect``: ``SELECT * FROM table WHERE …`` with its paging, or
    the condition alone; ``options`` are those of :func:`to_expression`. Raises :class:`cdrq.QueryError` for a
    bad query.

    >>> print(to_sql("caller=5300&minDur=8", table="cdrs"))
    SELECT * FROM cdrs WHERE "cdr_kind" IS DISTINCT FROM 'main' AND "src" IN ('5300') AND "billsec" >= 8
    """
    return to_expression(qs, **options).sql(dialect=dialect)


def to_expression(
    qs: str | Plan,
    *,
    table: str = "cdrs",
    now: datetime | None = None,
    groups: Mapping[str, Sequence[str]] | None = None,
    tz: str | None = "UTC",
    order_by: str | None = None,
    where_only: bool = False,
    cdrapi: bool = False,
) -> exp.Expression:
    """The sqlglot tree of ``qs``: ``SELECT * FROM table WHERE …`` with its
    paging, or with ``where_only`` the condition alone. ``cdrapi`` takes the
    UCM's rules instead of the library's (its parameters only, pages of at
    most 1000); ``order_by`` orders the rows (``order=desc`` needs it). A
    plan carries its own ``now``, groups and rules."""
    plan = plan_of(qs, now, groups, library=not cdrapi)
    condition = condition_of(plan, tz)
    if where_only:
        return condition
    select = exp.select("*").from_(exp.to_table(table)).where(condition)
    if plan.descending and order_by is None:
        raise CdrqError("order=desc needs order_by: SQL tables have no archive order")
    if order_by is not None:
        select = select.order_by(exp.Ordered(this=exp.column(order_by), desc=bool(plan.descending)))
    offset, count = page(plan, clamp=cdrapi)
    if count is not None:
        select = select.limit(count)
    if offset is not None:
        if count is None:
            select = select.limit(2**62)  # most dialects want a LIMIT before OFFSET
        select = select.offset(offset)
    return select


def col(name: str) -> exp.Column:
    return exp.column(name, quoted=True)


def text(name: str) -> exp.Expression:
    """A text field with null as the empty string."""
    return exp.func("COALESCE", col(name), exp.Literal.string(""))


def literal_regex(value: str) -> str:
    return "".join(c if c.isalnum() else "\\" + c for c in value)


def items_condition(column: str, items: Sequence[tuple[str, Any]]) -> exp.Expression:
    """Whether the column matches any item (see `_expr.items_expr`)."""
    value = col(column)
    parts: list[exp.Expression] = []
    exact = [v for kind, v in items if kind == "exact"]
    if exact:
        parts.append(exp.In(this=value, expressions=[exp.Literal.string(v) for v in exact]))
    patterns = []
    for kind, v in items:
        if kind == "prefix":
            patterns.append(f"^{literal_regex(v)}")
        elif kind == "suffix":
            patterns.append(f"{literal_regex(v)}$")
        elif kind == "contains":
            patterns.append(literal_regex(v))
        elif kind == "regex":
            patterns.append(f"(?:{v.removeprefix('(?s)')})")
    if patterns:
        pattern = "(?s)" + "|".join(f"(?:{p})" for p in patterns)
        parts.append(exp.RegexpLike(this=value, expression=exp.Literal.string(pattern)))
    ranges = [v for kind, v in items if kind == "range"]
    if ranges:
        digits = exp.func(
            "LTRIM",
            exp.RegexpReplace(
                this=text(column), expression=exp.Literal.string("[^0-9]"), replacement=exp.Literal.string("")
            ),
            exp.Literal.string("0"),
        )
        parts.extend(digit_range(digits, lo, hi) for lo, hi in ranges)
    if any(kind == "any" for kind, _ in items):
        parts.append(exp.true())
    return any_of(parts)


def digit_range(digits: exp.Expression, lo: str, hi: str) -> exp.Expression:
    """lo ≤ digits ≤ hi as unbounded integers: by length, then bytes."""
    lo, hi = lo.lstrip("0"), hi.lstrip("0")
    length = exp.Length(this=digits)

    def at_least(bound: str) -> exp.Expression:
        n = exp.Literal.number(len(bound))
        return exp.or_(
            exp.GT(this=length, expression=n),
            exp.and_(exp.EQ(this=length, expression=n), exp.GTE(this=digits, expression=exp.Literal.string(bound))),
        )

    def at_most(bound: str) -> exp.Expression:
        n = exp.Literal.number(len(bound))
        return exp.or_(
            exp.LT(this=length, expression=n),
            exp.and_(exp.EQ(this=length, expression=n), exp.LTE(this=digits, expression=exp.Literal.string(bound))),
        )

    return exp.and_(at_least(lo), at_most(hi))


def any_of(parts: Sequence[exp.Expression]) -> exp.Expression:
    return exp.or_(*parts) if parts else exp.false()


def instant(us: int, tz: str | None) -> exp.Expression:
    """A UTC instant (microseconds) as a literal: TIMESTAMPTZ, or for a
    naive column a TIMESTAMP of the UTC wall time."""
    iso = (datetime(1970, 1, 1) + timedelta(microseconds=us)).isoformat(sep=" ")
    if tz is None:
        return exp.cast(exp.Literal.string(iso), exp.DataType.build("TIMESTAMP"))
    return exp.cast(exp.Literal.string(iso + "+00:00"), exp.DataType.build("TIMESTAMPTZ"))


def condition_of(plan: Plan, tz: str | None) -> exp.Expression:
    parts: list[exp.Expression] = [exp.NullSafeNEQ(this=col("cdr_kind"), expression=exp.Literal.string("main"))]
    for key, column in [("caller", "src"), ("callee", "dst"), ("caller_number", "src"), ("callee_number", "dst")]:
        if getattr(plan, key) is not None:
            parts.append(items_condition(column, getattr(plan, key)))
    if plan.start_time is not None:
        parts.append(exp.GTE(this=col("start"), expression=instant(plan.start_time, tz)))
    if plan.end_time is not None:
        parts.append(exp.LTE(this=col("start"), expression=instant(plan.end_time, tz)))
    if plan.min_dur is not None:
        parts.append(exp.GTE(this=col("billsec"), expression=exp.Literal.number(plan.min_dur)))
    if plan.max_dur is not None:
        parts.append(exp.LTE(this=col("billsec"), expression=exp.Literal.number(plan.max_dur)))
    parts.extend(webui_conditions(plan))
    return exp.and_(*parts)


def is_in(value: exp.Expression, words: Sequence[str]) -> exp.Expression:
    if not words:
        return exp.false()
    return exp.In(this=value, expressions=[exp.Literal.string(w) for w in words])


def webui_conditions(plan: Plan) -> list[exp.Expression]:
    parts: list[exp.Expression] = []
    if plan.caller_name is not None:
        name = exp.Lower(this=text("caller_name"))
        parts.append(
            any_of(
                [
                    exp.GT(
                        this=exp.StrPosition(this=name, substr=exp.Literal.string(n)), expression=exp.Literal.number(0)
                    )
                    for n in plan.caller_name
                ]
            )
        )
    if plan.dispositions is not None:
        parts.append(is_in(exp.Upper(this=text("disposition")), plan.dispositions))
    for values, column in [
        (plan.src_trunk, "src_trunk_name"),
        (plan.dst_trunk, "dst_trunk_name"),
        (plan.account_code, "accountcode"),
    ]:
        if values is not None:
            parts.append(is_in(text(column), values))
    if plan.action_type is not None:
        word = exp.RegexpReplace(
            this=text("action_type"), expression=exp.Literal.string(r"[\[ ].*$"), replacement=exp.Literal.string("")
        )
        word = exp.func("REPLACE", exp.Upper(this=word), exp.Literal.string("_"), exp.Literal.string(""))
        parts.append(is_in(word, plan.action_type))
    if plan.ext_members is not None:
        members = plan.ext_members
        parts.append(exp.or_(is_in(text("src"), members), is_in(text("dst"), members)))
    if plan.call_type is not None:
        parts.append(any_of([call_type(t) for t in plan.call_type]))
    return parts


def call_type(kind: str) -> exp.Expression:
    """docs/query-language.md §6 call types (see `_expr.call_type`)."""
    empty = exp.Literal.string("")
    src_set = exp.NEQ(this=text("src_trunk_name"), expression=empty)
    dst_set = exp.NEQ(this=text("dst_trunk_name"), expression=empty)
    no_trunks = exp.and_(exp.not_(src_set), exp.not_(dst_set))
    old_inbound = exp.RegexpLike(this=text("dcontext"), expression=exp.Literal.string("^ext-did"))
    old_outbound = exp.RegexpLike(this=text("dstchannel"), expression=exp.Literal.string("trunk_"))
    if kind == "inbound":
        return exp.or_(exp.and_(src_set, exp.not_(dst_set)), exp.and_(no_trunks, old_inbound))
    if kind == "outbound":
        return exp.or_(exp.and_(exp.not_(src_set), dst_set), exp.and_(no_trunks, exp.not_(old_inbound), old_outbound))
    if kind == "external":
        return exp.and_(src_set, dst_set)
    if kind == "internal":
        return exp.and_(no_trunks, exp.not_(old_inbound), exp.not_(old_outbound))
    return is_in(exp.Lower(this=text("nat_call")), ["1", "yes"])
