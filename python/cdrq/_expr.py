"""Plan → Polars expressions: the cheapest primitive per pattern item.

Exact items become one ``is_in``; ``5@`` ``starts_with``; ``@5``
``ends_with``; ``@5@`` a literal ``contains``. Digit ranges (exact for
values longer than any integer type) and the other wildcards go to one
Rust kernel pass per list over the column's Arrow buffers, through
``map_batches`` (`rust/src/query/mask.rs`): Polars would need a regex strip
per range and a regex per wildcard.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Sequence
from typing import Any

import polars as pl

Item = tuple[str, Any]


def any_of(exprs: Sequence[pl.Expr]) -> pl.Expr:
    return functools.reduce(operator.or_, exprs) if exprs else pl.lit(False)


def all_of(exprs: Sequence[pl.Expr]) -> pl.Expr:
    return functools.reduce(operator.and_, exprs) if exprs else pl.lit(True)


def items_expr(value: pl.Expr, items: Sequence[Item], mask: Any) -> pl.Expr:
    """Whether ``value`` matches any item; ``mask`` is the list's kernel for
    its ranges and wildcards (``None`` if it has none). Only ``@``, ranges
    and wildcards can match the empty string, and they treat null as empty;
    for every other item a null value gives null, which a filter drops like
    false."""
    exact = [v for kind, v in items if kind == "exact"]
    parts = [value.is_in(exact)] if exact else []
    if mask is not None:
        # Not marked elementwise: Polars would then push the Python function
        # into a scan's predicate, which it can only pickle with cloudpickle.
        parts.append(value.map_batches(functools.partial(run_kernel, mask), return_dtype=pl.Boolean))
    for kind, v in items:
        if kind == "prefix":
            parts.append(value.str.starts_with(v))
        elif kind == "suffix":
            parts.append(value.str.ends_with(v))
        elif kind == "contains":
            parts.append(value.str.contains(v, literal=True))
        elif kind == "any":
            parts.append(pl.lit(True))
    return any_of(parts)


def run_kernel(mask: Any, series: pl.Series) -> pl.Series:
    """A list's kernel over a text Series: one boolean per value."""
    if series.dtype != pl.String:
        series = series.cast(pl.String)
    return pl.DataFrame(mask(series)).to_series().alias(series.name)


def instant(us: int, dtype: pl.DataType | None) -> pl.Expr:
    """A UTC instant as a literal of the `start` column's own type, so the
    comparison runs on the physical values (a naive column is UTC)."""
    literal = pl.lit(us, pl.Int64).cast(pl.Datetime("us", "UTC"))
    zone = getattr(dtype, "time_zone", None)
    if zone is None:
        return literal.dt.replace_time_zone(None)
    return literal.dt.convert_time_zone(zone)


def field(name: str, schema: pl.Schema) -> pl.Expr:
    """A text field; an absent column is empty."""
    if name not in schema:
        return pl.lit("", pl.String)
    return pl.col(name)


def text(name: str, schema: pl.Schema) -> pl.Expr:
    """A text field with null as the empty string."""
    return field(name, schema).fill_null("")


def filters(plan: Any, schema: pl.Schema) -> pl.Expr:
    """All of the plan's filters, ANDed, over the real legs (not main rows)."""
    parts: list[pl.Expr] = []
    if "cdr_kind" in schema:
        parts.append(pl.col("cdr_kind").ne_missing("main"))
    for key, column in [
        ("caller", "src"),
        ("callee", "dst"),
        ("caller_number", "src"),
        ("callee_number", "dst"),
    ]:
        items = getattr(plan, key)
        if items is not None:
            parts.append(items_expr(field(column, schema), items, plan.mask(key)))
    bounds = [(plan.start_time, operator.ge), (plan.end_time, operator.le)]
    for bound, compare in bounds:
        if bound is not None:
            parts.append(compare(pl.col("start"), instant(bound, schema.get("start"))))
    if plan.min_dur is not None:
        parts.append(pl.col("billsec") >= plan.min_dur)
    if plan.max_dur is not None:
        parts.append(pl.col("billsec") <= plan.max_dur)
    parts.extend(webui_filters(plan, schema))
    return all_of(parts)


def webui_filters(plan: Any, schema: pl.Schema) -> list[pl.Expr]:
    parts = []
    if plan.caller_name is not None:
        name = text("caller_name", schema).str.to_lowercase()
        parts.append(any_of([name.str.contains(n, literal=True) for n in plan.caller_name]))
    if plan.dispositions is not None:
        parts.append(text("disposition", schema).str.to_uppercase().is_in(plan.dispositions))
    if plan.call_type is not None:
        parts.append(any_of([call_type(t, schema) for t in plan.call_type]))
    for values, column in [
        (plan.src_trunk, "src_trunk_name"),
        (plan.dst_trunk, "dst_trunk_name"),
        (plan.account_code, "accountcode"),
    ]:
        if values is not None:
            parts.append(text(column, schema).is_in(values))
    if plan.action_type is not None:
        word = (
            text("action_type", schema)
            .str.replace(r"[\[ ].*$", "")
            .str.to_uppercase()
            .str.replace_all("_", "", literal=True)
        )
        parts.append(word.is_in(plan.action_type))
    if plan.ext_members is not None:
        members = plan.ext_members
        parts.append(text("src", schema).is_in(members) | text("dst", schema).is_in(members))
    return parts


def call_type(kind: str, schema: pl.Schema) -> pl.Expr:
    """docs/query-language.md §6 call types from the trunk fields; records with neither trunk field
    set fall back to the old firmware's context and channel."""
    src_set = text("src_trunk_name", schema) != ""
    dst_set = text("dst_trunk_name", schema) != ""
    no_trunks = ~src_set & ~dst_set
    old_inbound = text("dcontext", schema).str.starts_with("ext-did")
    old_outbound = text("dstchannel", schema).str.contains("trunk_", literal=True)
    if kind == "inbound":
        return (src_set & ~dst_set) | (no_trunks & old_inbound)
    if kind == "outbound":
        return (~src_set & dst_set) | (no_trunks & ~old_inbound & old_outbound)
    if kind == "external":
        return src_set & dst_set
    if kind == "internal":
        return no_trunks & ~old_inbound & ~old_outbound
    return text("nat_call", schema).str.to_lowercase().is_in(["1", "yes"])
