"""`cdrq report --html`: what the page costs on top of reading the archive.

Side by side, rounds alternating: `cdrq.read` (the floor: the page needs the
legs in memory), the KPI table as the terminal default computes it
(`cdrq.report` over a scan), and the whole HTML page (read, every chart's
question to `cdrq.analytics`, the Altair specs and the page with its inlined
bundle) as `cdrq report --html` builds it."""

from __future__ import annotations

import os
from pathlib import Path

import polars as pl

import cdrq
from cdrq import analytics
from cdrq.reports import html

from .gen_cdrs import cached_archive
from .measure import ratio_table, side_by_side

N = int(os.environ.get("CDRQ_BENCH_REPORT_RECORDS", "1000000"))
ROUNDS = int(os.environ.get("CDRQ_BENCH_REPORT_ROUNDS", "3"))


def page(path: Path) -> str:
    legs = cdrq.read(path)
    table = analytics.report(legs, by="trunk")
    sections, summary = html.sections(legs)
    return html.page(sections, table, summary, {"archive": path.name}, title="cdrq report")


def test_report_html_side_by_side():
    path, _ = cached_archive(N, Path(__file__).parent / ".data")
    routes = {
        "read": lambda: cdrq.read(path),
        "report table (scan)": lambda: analytics.report(cdrq.scan(path), by="trunk"),
        "HTML page": lambda: page(path),
    }
    results = {}
    times = side_by_side(routes, ROUNDS, same=results.__setitem__)
    # the page and the table agree: one KPI row per trunk, the same calls
    table = results["report table (scan)"]
    assert results["read"].height == N
    assert sum(table["calls"]) == analytics.calls(results["read"]).height
    kpi_table = results["HTML page"].split('<table class="kpi">')[1].split("</table>")[0]
    assert kpi_table.count("<tr>") == 1 + table.height  # the header and the table's rows
    print(f"\n{N:,} records, {path.stat().st_size / 1e6:.0f} MB, polars {pl.__version__}\n")
    print(ratio_table(times, path.stat().st_size / 1e6, "read"))
