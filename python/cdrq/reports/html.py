"""The report as one self-contained HTML page (and as PNGs).

:func:`sections` groups the legs into calls once (:func:`calls_of`), asks
:mod:`cdrq.analytics` its questions of them (each answer a small frame)
and turns the answers into charts; :func:`page` lays them out with the KPI
table into one HTML document that carries the Vega, Vega-Lite and
vega-embed JavaScript inline (vl-convert's bundle, kept in the user's cache
directory: bundling takes seconds), so it opens with no network; its
Content-Security-Policy allows no fetch at all. Charts are drawn as SVG.
:func:`write_pngs` renders the same specs to PNG with vl-convert, offline
too.
"""

from __future__ import annotations

import contextlib
import dataclasses
import html
import json
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl

from cdrq import _core, analytics
from cdrq.analytics import concurrency, rate, report
from cdrq.reports import cell, charts, numeric, require

#: The buckets of the concurrency chart, finest first, with their seconds:
#: the finest that gives at most :data:`MAX_POINTS` buckets is drawn.
BUCKETS = (("1m", 60), ("10m", 600), ("1h", 3600), ("1d", 86400), ("1w", 7 * 86400))
MAX_POINTS = 1500
#: The call-view fields the charts ask (fewer to group than all of them).
FIELDS = ("start", "end", "talk", "disposition", "direction", "trunk", "src", "dst", "answered_by")


@dataclasses.dataclass(frozen=True)
class Section:
    """One chart of the page: ``name`` is its element id and PNG file stem;
    ``chart`` None when there is nothing to draw."""

    name: str
    title: str
    chart: Any | None

    def spec(self) -> dict:
        """The chart's Vega-Lite spec, not validated against the schema here
        (most of the charts' time): tests/test_report.py validates the
        charts of whole pages."""
        return self.chart.to_dict(validate=False)


@dataclasses.dataclass(frozen=True)
class Summary:
    """The headline numbers over every call."""

    calls: int
    answered: int
    asr: float | None
    acd: float | None
    peak: int
    peak_at: datetime | None


def calls_of(legs: Any, by: str | list[str] | None = None, digits: int | None = None) -> pl.DataFrame:
    """The calls of ``legs`` with the fields the charts ask (:data:`FIELDS`)
    and those ``by`` groups on (view fields or leg columns); of a scan only
    the columns they need are read. In memory: Polars' streaming group-by
    takes half as long again with this many aggregations."""
    fields, _ = analytics.group_fields(by, digits)
    lf, frame = analytics.source(legs)
    return analytics.call_frame(lf, frame, [*FIELDS, *fields], "report").collect()


def bucket(calls: pl.DataFrame) -> str:
    """The finest concurrency bucket that keeps the chart to at most
    :data:`MAX_POINTS` points over the span of the calls."""
    first, last = calls.select(pl.col("start").min(), pl.col("end").max()).row(0)
    span = (last - first).total_seconds() if first is not None and last is not None else 0
    return next((every for every, seconds in BUCKETS if span / seconds <= MAX_POINTS), BUCKETS[-1][0])


def extension_counts(calls: pl.DataFrame) -> pl.DataFrame:
    """Calls per extension: placed (``src`` of outbound and internal calls)
    and answered (``answered_by`` of inbound and internal ones)."""
    roles = (("placed", "src", ("outbound", "internal")), ("answered", "answered_by", ("inbound", "internal")))
    return pl.concat(
        calls.filter(pl.col("direction").is_in(directions) & pl.col(field).is_not_null())
        .group_by(pl.col(field).alias("extension"))
        .agg(pl.len().cast(pl.Int64).alias("calls"))
        .select("extension", pl.lit(role).alias("role"), "calls")
        for role, field, directions in roles
    )


def cost_per_destination(rated: pl.DataFrame) -> pl.DataFrame:
    """Calls and cost per destination (the rate table's description, else
    its prefix) of rated calls."""
    name = pl.coalesce(
        *([pl.col("destination")] if "destination" in rated.columns else []), pl.col("prefix").cast(pl.String)
    )
    return (
        rated.filter(pl.col("prefix").is_not_null())
        .group_by(name.alias("destination"))
        .agg(pl.len().alias("calls"), pl.col("cost").sum())
    )


def hours(calls: pl.DataFrame) -> pl.DataFrame:
    """Calls per (``day_of_week``, ``hour_of_day``) of the calls' starts."""
    cyclic = [analytics.bucket(every)[0].alias(every) for every in analytics.CYCLIC]
    return calls.group_by(cyclic).agg(pl.len().alias("calls"))


def sections(
    data: Any, rates: pl.DataFrame | str | None = None, progress: bool = False
) -> tuple[list[Section], Summary]:
    """The charts of ``data`` (legs, already filtered, or their calls) and
    the headline numbers; the cost chart only with ``rates``. A chart with
    nothing to show (no calls; no call a rate matched) has no chart: Vega
    draws an empty domain as NaN coordinates."""
    require()
    calls = calls_of(data)
    every = bucket(calls)
    per_bucket = concurrency(calls, every=every)
    # the peak of the bucket peaks: no second sweep
    peak = per_bucket.select(analytics.peak_of("peak", "at"))
    questions = [
        ("hours", "Calls per hour of day and day of week", lambda: hours(calls), charts.heat_map),
        ("trunks", "ASR and ACD per trunk", lambda: report(calls, by="trunk"), charts.trunks),
        ("extensions", "Top extensions", lambda: extension_counts(calls), charts.extensions),
        ("dispositions", "Disposition mix", lambda: report(calls, by="disposition"), charts.dispositions),
        (
            "concurrency",
            "Concurrent calls",
            lambda: per_bucket,
            lambda frame: charts.concurrency(frame, peak, every),
        ),
    ]
    if rates is not None:
        questions.append(
            ("costs", "Cost per destination", lambda: cost_per_destination(rate(calls, rates)), charts.costs)
        )
    out = []
    with progress_bar(len(questions), progress) as advance:
        for name, title, ask, draw in questions:
            answer = ask()
            out.append(Section(name, title, draw(answer) if answer.height else None))
            advance()
    totals = report(calls).row(0, named=True)
    top = peak.row(0, named=True)
    summary = Summary(
        calls=totals["calls"],
        answered=totals["answered"],
        asr=totals["asr"],
        acd=totals["acd"],
        peak=top["peak"],
        peak_at=top["at"],
    )
    return out, summary


@contextlib.contextmanager
def progress_bar(total: int, enabled: bool) -> Iterator[Callable[[], None]]:
    """A step counter, shown as a tqdm bar over the charts on stderr when
    ``enabled``."""
    if not enabled:
        yield lambda: None
        return
    from tqdm import tqdm

    with tqdm(total=total, unit="chart", desc="cdrq report", file=sys.stderr) as bar:
        yield lambda: bar.update(1)


def vl_version() -> str:
    """The Vega-Lite version Altair writes (``6.4`` of schema ``v6.4.1``),
    which vl-convert's bundle and renderer must match."""
    alt, _ = require()
    return ".".join(alt.SCHEMA_VERSION.lstrip("v").split(".")[:2])


def script_json(value: Any) -> str:
    """JSON safe inside a ``<script>``: a ``</script>`` in a CDR's text
    (a caller name) cannot end the element."""
    return json.dumps(value, ensure_ascii=False).replace("<", "\\u003c")


def cache_directory() -> Path:
    """Where the bundle is kept: ``$XDG_CACHE_HOME/cdrq``, else ``~/.cache/cdrq``."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "cdrq"


def javascript_bundle() -> str:
    """Vega, Vega-Lite and vega-embed as one script, safe inline. vl-convert
    bundles them anew in every process (1.5 to 3 s; vega-embed alone is as
    large and nearly as slow), so the bundle is kept in
    :func:`cache_directory`, one file per vl-convert and Vega-Lite version;
    where that cannot be written it is made each time."""
    _, vlc = require()
    version = vl_version()
    path = cache_directory() / f"vega-bundle-{vlc.__version__}-vl{version}.js"
    with contextlib.suppress(OSError, UnicodeError):
        if bundle := path.read_text(encoding="utf-8"):
            return bundle
    # `</script` inside the bundle's strings would end its element early.
    bundle = (
        vlc.javascript_bundle(vl_version=version).replace("</script", "<\\/script").replace("</SCRIPT", "<\\/SCRIPT")
    )
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
        partial.write_text(bundle, encoding="utf-8")
        os.replace(partial, path)  # whole or not at all, for a process reading it meanwhile
    return bundle


def table_html(frame: pl.DataFrame) -> str:
    """The KPI frame as an HTML table, every row."""
    right = numeric(frame)
    head = "".join(f"<th>{html.escape(name)}</th>" for name in frame.columns)
    rows = "\n".join(
        "<tr>"
        + "".join(
            f"<td{' class=num' if name in right else ''}>{html.escape(cell(value, name))}</td>"
            for name, value in zip(frame.columns, row, strict=True)
        )
        + "</tr>"
        for row in frame.iter_rows()
    )
    return f'<table class="kpi"><thead><tr>{head}</tr></thead>\n<tbody>\n{rows}\n</tbody></table>'


STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #222; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 17px; margin: 28px 0 8px; }
.meta { color: #666; margin: 0 0 16px; }
section.chart { margin: 28px 0; }
.summary { display: flex; gap: 24px; flex-wrap: wrap; margin: 12px 0; }
.summary div { background: #f3f5f8; padding: 8px 14px; border-radius: 6px; }
.summary b { display: block; font-size: 20px; }
table.kpi { border-collapse: collapse; font-size: 13px; }
table.kpi th, table.kpi td { border: 1px solid #ddd; padding: 3px 8px; text-align: left; }
table.kpi td.num { text-align: right; font-variant-numeric: tabular-nums; }
table.kpi th { background: #f3f5f8; position: sticky; top: 0; }
"""

# Vega compiles its expressions with `new Function` ('unsafe-eval'); nothing
# else is allowed, so the page cannot fetch anything even when online.
CSP = "default-src 'none'; script-src 'unsafe-inline' 'unsafe-eval'; style-src 'unsafe-inline'; img-src data:"

# Errors are shown on the page too, not only in the console.
EMBED = """
const specs = %s;
const shown = Object.entries(specs).map(([id, spec]) =>
  vegaEmbed("#" + id, spec, {renderer: "svg", actions: false}));
Promise.all(shown).then(() => { document.body.dataset.drawn = String(shown.length); }, (error) => {
  document.getElementById("errors").textContent += String(error) + "\\n";
  console.error(error);
});
"""


def summary_html(summary: Summary) -> str:
    peak_at = f" at {cell(summary.peak_at, 'at')}" if summary.peak_at is not None else ""
    items = (
        ("calls", f"{summary.calls:,}"),
        ("answered", f"{summary.answered:,}"),
        ("ASR", cell(summary.asr, "asr")),
        ("ACD", f"{summary.acd:,.0f} s" if summary.acd is not None else cell(None, "acd")),
        ("peak concurrency", f"{summary.peak:,}{peak_at}"),
    )
    return "".join(f"<div>{html.escape(name)}<b>{html.escape(value)}</b></div>" for name, value in items)


def page(
    sections: Iterable[Section], table: pl.DataFrame, summary: Summary, about: Mapping[str, str], title: str
) -> str:
    """The HTML document: title, ``about`` (what was read, the query…),
    headline numbers, the charts and the KPI table."""
    shown = list(sections)
    bundle = javascript_bundle()
    specs = {section.name: section.spec() for section in shown if section.chart is not None}
    meta = " · ".join(f"{html.escape(key)}: {html.escape(value)}" for key, value in about.items())
    blocks = "\n".join(
        f'<section class="chart" id="{s.name}" aria-label="{html.escape(s.title)}"></section>'
        if s.chart is not None
        else f'<section class="empty" id="{s.name}"><p>{html.escape(s.title)}: no calls to show.</p></section>'
        for s in shown
    )
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{CSP}">
<meta name="generator" content="cdrq {_core.__version__}">
<title>{html.escape(title)}</title>
<style>{STYLE}</style>
</head>
<body>
<h1>{html.escape(title)}</h1>
<p class="meta">{meta}</p>
<div class="summary">{summary_html(summary)}</div>
<pre id="errors"></pre>
{blocks}
<section><h2>KPIs</h2>
{table_html(table)}
</section>
<script>{bundle}</script>
<script>{EMBED % script_json(specs)}</script>
</body>
</html>
"""


def write_pngs(directory: str | Path, sections: Iterable[Section], scale: float = 2.0) -> list[Path]:
    """Each chart as ``DIRECTORY/NAME.png`` (created if missing); those
    with nothing to draw are left out."""
    _, vlc = require()
    target = Path(directory)
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for section in sections:
        if section.chart is None:
            continue
        path = target / f"{section.name}.png"
        path.write_bytes(vlc.vegalite_to_png(section.spec(), vl_version=vl_version(), scale=scale))
        written.append(path)
    return written
