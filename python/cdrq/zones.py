"""Time zones: the archive zone's default, its checks, the wall-clock times
it skips (DST gaps, which the core rejects), and localising time columns."""

from __future__ import annotations

import datetime
import functools
import zoneinfo
from typing import TypeVar

import polars as pl

from cdrq._core import CdrqError


class DefaultZone(str):
    """``"UTC"``, except that a dataset directory keeps the zone it was
    written in. Equal to ``"UTC"`` everywhere a source is not a dataset;
    ``tz is DEFAULT_TZ`` tells the default from an explicit ``"UTC"``."""

    __slots__ = ()


DEFAULT_TZ = DefaultZone("UTC")


def check_tz(tz: str | None) -> None:
    if tz is not None and tz != "UTC":
        try:
            zoneinfo.ZoneInfo(tz)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as e:
            raise CdrqError(f"unknown time zone {tz!r}") from e


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
