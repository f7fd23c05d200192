"""`cdrq report`'s outputs on top of :mod:`cdrq.analytics`: the charts
(:mod:`cdrq.reports.charts`, Altair from Polars frames) and the
self-contained HTML page and PNGs (:mod:`cdrq.reports.html`).

Altair and vl-convert are optional (``pip install 'cdrq[report]'``):
:func:`require` imports them or says how to install them.
"""

from __future__ import annotations

from types import ModuleType

import polars as pl

from cdrq._core import CdrqError

#: What to install for the charts.
INSTALL = "pip install 'cdrq[report]'"


def require() -> tuple[ModuleType, ModuleType]:
    """``(altair, vl_convert)``, or a CdrqError saying what to install."""
    try:
        import altair
        import vl_convert
    except ImportError as e:
        raise CdrqError(f"the report's charts need Altair and vl-convert ({e.name} is missing): {INSTALL}") from None
    return altair, vl_convert


def text_table(frame: pl.DataFrame) -> str:
    """The KPI frame as an aligned plain-text table (Markdown's pipes),
    every row and column, numbers right-aligned."""
    with pl.Config(
        tbl_formatting="ASCII_MARKDOWN",
        tbl_hide_column_data_types=True,
        tbl_hide_dataframe_shape=True,
        tbl_rows=-1,
        tbl_cols=-1,
        tbl_width_chars=(1 << 15) - 1,  # a u16 in Polars: more panics
        fmt_str_lengths=1 << 10,
        tbl_cell_numeric_alignment="RIGHT",
        float_precision=3,
    ):
        return f"{frame}\n"
