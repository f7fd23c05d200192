"""`cdrq report --html`: what the page costs on top of the KPI table.

Side by side, rounds alternating: `cdrq.read` (for scale), the KPI table as
the terminal default computes it (`cdrq.report` over a scan), and the whole
HTML page as `cdrq report --html` builds it (the calls of the scan grouped
once, every chart's question asked of them, the Altair specs, the page with
its inlined bundle); then both commands as processes (imports, the bundle
from the cache directory, the page written). Every route's table is the same."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import polars as pl

import cdrq
from cdrq import analytics
from cdrq.reports import html

from .gen_cdrs import cached_archive
from .measure import ratio_table, side_by_side

N = int(os.environ.get("CDRQ_BENCH_REPORT_RECORDS", "1000000"))
ROUNDS = int(os.environ.get("CDRQ_BENCH_REPORT_ROUNDS", "3"))


def page(path: Path) -> tuple[str, pl.DataFrame]:
    calls = html.calls_of(cdrq.scan(path), "trunk")
    table = analytics.report(calls, by="trunk")
    sections, summary = html.sections(calls)
    return html.page(sections, table, summary, {"archive": path.name}, title="cdrq report"), table


def command(*args: str) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "cdrq", "report", *args], capture_output=True, text=True, check=True, timeout=600
    )
    return out.stdout


def test_report_html_side_by_side(tmp_path):
    path, _ = cached_archive(N, Path(__file__).parent / ".data")
    written = tmp_path / "report.html"
    routes = {
        "read": lambda: cdrq.read(path),
        "report table (scan)": lambda: analytics.report(cdrq.scan(path), by="trunk"),
        "HTML page": lambda: page(path),
        "`cdrq report --by trunk`": lambda: command(str(path), "--by", "trunk"),
        "`cdrq report --by trunk --html`": lambda: command(str(path), "--by", "trunk", "--html", str(written)),
    }
    results = {}
    times = side_by_side(routes, ROUNDS, same=results.__setitem__)
    # every route has the table: one KPI row per trunk, every call counted
    table = results["report table (scan)"]
    text, page_table = results["HTML page"]
    assert page_table.equals(table, null_equal=True)
    assert sum(table["calls"]) == analytics.calls(results["read"]).height
    kpi_table = text.split('<table class="kpi">')[1].split("</table>")[0]
    assert kpi_table.count("<tr>") == 1 + table.height  # the header and the table's rows
    assert results["`cdrq report --by trunk`"] == results["`cdrq report --by trunk --html`"]
    print(f"\n{N:,} records, {path.stat().st_size / 1e6:.0f} MB, polars {pl.__version__}\n")
    print(ratio_table(times, path.stat().st_size / 1e6, "report table (scan)"))
