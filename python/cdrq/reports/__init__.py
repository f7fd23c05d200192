"""`cdrq report`'s outputs on top of :mod:`cdrq.analytics`: the charts
(:mod:`cdrq.reports.charts`, Altair from Polars frames) and the
self-contained HTML page and PNGs (:mod:`cdrq.reports.html`).

Altair and vl-convert are optional (``pip install 'cdrq[report]'``):
:func:`require` imports them or says how to install them.
"""

from __future__ import annotations

from datetime import datetime
from types import ModuleType
from typing import Any

import polars as pl

from cdrq._core import CdrqError
from cdrq.analytics import KPIS

#: What to install for the charts.
INSTALL = "pip install 'cdrq[report]'"
#: A null group (no trunk: internal calls; no destination), in the tables and the charts.
NONE = "(none)"
#: A KPI with no value (ASR of no calls; ACD with no answered call).
NO_VALUE = "n/a"


def require() -> tuple[ModuleType, ModuleType]:
    """``(altair, vl_convert)``, or a CdrqError saying what to install."""
    try:
        import altair
        import vl_convert
    except ImportError as e:
        raise CdrqError(f"the report's charts need Altair and vl-convert ({e.name} is missing): {INSTALL}") from None
    return altair, vl_convert


def cell(value: Any, column: str) -> str:
    """One cell of a KPI table (the terminal's and the page's) as text: a
    null group :data:`NONE`, a null KPI :data:`NO_VALUE`, ASR in percent."""
    if value is None:
        return NO_VALUE if column in KPIS else NONE
    if column == "asr":
        return f"{value:.1%}"
    if isinstance(value, float):
        return f"{value:,.1f}"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S" if value.second or value.microsecond else "%Y-%m-%d %H:%M")
    return str(value)


def numeric(frame: pl.DataFrame) -> set[str]:
    """The columns whose cells are right-aligned."""
    return {name for name, dtype in frame.schema.items() if dtype.is_numeric()}


def text_table(frame: pl.DataFrame) -> str:
    """The KPI frame as an aligned plain-text table (Markdown's pipes),
    every row and column, cells as :func:`cell` writes them, numbers
    right-aligned."""
    right = numeric(frame)
    rows = [
        frame.columns,
        *([cell(v, name) for name, v in zip(frame.columns, row, strict=True)] for row in frame.iter_rows()),
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(frame.width)]
    aligned = [
        "| "
        + " | ".join(
            text.rjust(width) if name in right else text.ljust(width)
            for name, text, width in zip(frame.columns, row, widths, strict=True)
        )
        + " |"
        for row in rows
    ]
    rule = (
        "|"
        + "|".join(
            "-" * (w + 1) + ":" if n in right else "-" * (w + 2) for n, w in zip(frame.columns, widths, strict=True)
        )
        + "|"
    )
    return "\n".join([aligned[0], rule, *aligned[1:]]) + "\n"
