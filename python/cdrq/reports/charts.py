"""The report's charts: Altair (Vega-Lite) specs built from Polars frames
with the columns of :mod:`cdrq.analytics`'s answers.

Each builder takes a small frame (already aggregated: the page never ships
the calls themselves) and returns an Altair chart; the data goes inline as
values, times as the PBX's wall clock (naive ISO text), so the page shows
the archive's hours whatever the zone of the browser that opens it.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from cdrq.reports import NONE, require

#: Day-of-week labels, 1 = Monday as in ``cdrq.report(every="day_of_week")``.
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
#: How many bars a ranking shows.
TOP = 15
WIDTH = 560


def values(frame: pl.DataFrame) -> dict[str, list[dict]]:
    """The frame as inline Vega-Lite data; times as naive wall-clock text.
    A plain dict: as ``alt.Data`` it would be validated value by value."""
    temporal = [name for name, dtype in frame.schema.items() if dtype.is_temporal()]
    text = frame.with_columns(pl.col(temporal).dt.strftime("%Y-%m-%dT%H:%M:%S")) if temporal else frame
    return {"values": text.to_dicts()}


def labelled(frame: pl.DataFrame, column: str) -> pl.DataFrame:
    """``column`` as text, a null group named :data:`NONE`."""
    return frame.with_columns(pl.col(column).cast(pl.String).fill_null(NONE))


def heat_map(frame: pl.DataFrame) -> Any:
    """Calls per hour of day by day of week: ``day_of_week`` (1 to 7),
    ``hour_of_day`` (0 to 23), ``calls``; missing cells drawn as 0."""
    alt, _ = require()
    grid = pl.DataFrame({"day_of_week": list(range(1, 8))}).join(
        pl.DataFrame({"hour_of_day": list(range(24))}), how="cross"
    )
    counts = frame.select(
        pl.col("day_of_week").cast(pl.Int64), pl.col("hour_of_day").cast(pl.Int64), pl.col("calls").cast(pl.Int64)
    )
    cells = (
        grid.join(counts, on=["day_of_week", "hour_of_day"], how="left")
        .with_columns(
            pl.col("calls").fill_null(0),
            pl.col("day_of_week").replace_strict(dict(enumerate(WEEKDAYS, 1)), return_dtype=pl.String).alias("day"),
        )
        .sort("day_of_week", "hour_of_day")
    )
    return (
        alt.Chart(values(cells), title="Calls per hour of day and day of week")
        .mark_rect()
        .encode(
            x=alt.X("hour_of_day:O", title="hour of day"),
            y=alt.Y("day:O", title=None, sort=list(WEEKDAYS)),
            color=alt.Color("calls:Q", title="calls", scale=alt.Scale(scheme="blues")),
            tooltip=["day:N", "hour_of_day:O", "calls:Q"],
        )
        .properties(width=WIDTH, height=7 * 22)
    )


def trunks(frame: pl.DataFrame) -> Any:
    """ASR and ACD per trunk, side by side: ``trunk``, ``calls``, ``asr``
    (0 to 1), ``acd`` (seconds, null with no answered call); the busiest
    :data:`TOP` trunks."""
    alt, _ = require()
    rows = labelled(frame, "trunk").sort("calls", "trunk", descending=[True, False]).head(TOP)
    order = rows["trunk"].to_list()
    base = alt.Chart(values(rows)).encode(
        y=alt.Y("trunk:N", title=None, sort=order),
        tooltip=["trunk:N", "calls:Q", alt.Tooltip("asr:Q", format=".1%"), alt.Tooltip("acd:Q", format=".0f")],
    )
    asr = base.mark_bar().encode(
        x=alt.X("asr:Q", title="ASR", axis=alt.Axis(format="%"), scale=alt.Scale(domain=[0, 1]))
    )
    acd = base.mark_bar(color="#e45756").encode(x=alt.X("acd:Q", title="ACD (s)"))
    half = WIDTH // 2 - 40
    return alt.hconcat(
        asr.properties(width=half, title="ASR per trunk"), acd.properties(width=half, title="ACD per trunk")
    )


def extensions(frame: pl.DataFrame) -> Any:
    """The busiest :data:`TOP` extensions: ``extension``, ``role``
    (``placed``/``answered``), ``calls``; bars stacked by role."""
    alt, _ = require()
    rows = labelled(frame, "extension")
    ranked = rows.group_by("extension").agg(pl.col("calls").sum().alias("total"))
    top = ranked.sort("total", "extension", descending=[True, False]).head(TOP)
    shown = rows.join(top, on="extension").sort("total", "extension", "role", descending=[True, False, False])
    return (
        alt.Chart(values(shown), title=f"Top {TOP} extensions: calls placed and answered")
        .mark_bar()
        .encode(
            y=alt.Y("extension:N", title=None, sort=top["extension"].to_list()),
            x=alt.X("calls:Q", title="calls", stack="zero"),
            color=alt.Color("role:N", title=None),
            tooltip=["extension:N", "role:N", "calls:Q"],
        )
        .properties(width=WIDTH)
    )


def dispositions(frame: pl.DataFrame) -> Any:
    """The disposition mix: ``disposition``, ``calls``, as a donut."""
    alt, _ = require()
    rows = labelled(frame, "disposition").with_columns((pl.col("calls") / pl.col("calls").sum()).alias("share"))
    return (
        alt.Chart(values(rows), title="Disposition mix")
        .mark_arc(innerRadius=60)
        .encode(
            theta=alt.Theta("calls:Q", stack=True),
            color=alt.Color("disposition:N", title=None),
            tooltip=["disposition:N", "calls:Q", alt.Tooltip("share:Q", format=".1%")],
        )
        .properties(width=260, height=260)
    )


def concurrency(frame: pl.DataFrame, peak: pl.DataFrame, every: str) -> Any:
    """Calls in progress over time: ``period``, ``peak`` (the most at once
    in each bucket of ``every``), with the archive's peak (``peak``, ``at``)
    marked and labelled."""
    alt, _ = require()
    line = (
        alt.Chart(values(frame.select("period", "peak")))
        .mark_line(interpolate="step-after")
        .encode(
            x=alt.X("period:T", title=f"time (buckets of {every})"),
            y=alt.Y("peak:Q", title="calls in progress (most per bucket)"),
            tooltip=[alt.Tooltip("period:T", format="%Y-%m-%d %H:%M"), "peak:Q"],
        )
    )
    top = peak.select("at", "peak").with_columns(
        pl.format("peak {} at {}", pl.col("peak"), pl.col("at").dt.strftime("%Y-%m-%d %H:%M:%S")).alias("label")
    )
    point = alt.Chart(values(top)).mark_point(color="#e45756", filled=True, size=80).encode(x="at:T", y="peak:Q")
    label = (
        alt.Chart(values(top))
        .mark_text(align="left", dx=8, dy=-8, color="#e45756")
        .encode(x="at:T", y="peak:Q", text="label:N")
    )
    return (line + point + label).properties(title="Concurrent calls", width=WIDTH, height=220)


def costs(frame: pl.DataFrame) -> Any:
    """Cost per destination: ``destination``, ``calls``, ``cost``; the
    :data:`TOP` dearest."""
    alt, _ = require()
    rows = labelled(frame, "destination").sort("cost", "destination", descending=[True, False]).head(TOP)
    return (
        alt.Chart(values(rows), title=f"Cost per destination (top {TOP})")
        .mark_bar(color="#54a24b")
        .encode(
            y=alt.Y("destination:N", title=None, sort=rows["destination"].to_list()),
            x=alt.X("cost:Q", title="cost"),
            tooltip=["destination:N", "calls:Q", alt.Tooltip("cost:Q", format=",.2f")],
        )
        .properties(width=WIDTH)
    )
