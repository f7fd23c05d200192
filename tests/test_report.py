"""`cdrq report`: the table, CSV and JSON equal `cdrq.report` of the same
input; the HTML page opened in headless Chromium (Debian's package, which
`make test` installs) with the network off draws every chart with no
console message; the PNGs are PNGs; a careless user gets one line.
"""

from __future__ import annotations

import importlib.util
import io
import json
import shutil
import struct
import subprocess
import sys
import zlib
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest
from lxml import html as lxml_html

import cdrq
from cdrq import analytics
from cdrq.cli import main
from cdrq.reports import NO_VALUE, NONE, charts, text_table
from cdrq.reports import html as report_html

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "tests" / "samples"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
#: The charts of a page without --rates, by element id.
CHARTS = ("hours", "trunks", "extensions", "dispositions", "concurrency")


def run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cdrq", "report", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def failed(out: subprocess.CompletedProcess, status: int, *texts: str) -> None:
    """Exit ``status``, one line on stderr holding each of ``texts``."""
    assert out.returncode == status, (out.returncode, out.stderr)
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr, out.stderr
    assert all(t in out.stderr for t in texts), out.stderr


def generated_archive(path: Path, n: int) -> Path:
    """``n`` records by the benchmarks' generator (calls over ``n * 3`` s)."""
    spec = importlib.util.spec_from_file_location("gen_cdrs", ROOT / "benches" / "gen_cdrs.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    gen.write_archive(n, path)
    return path


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    return generated_archive(tmp_path_factory.mktemp("archive") / "ucm.csv", 20_000)


@pytest.fixture(scope="module", autouse=True)
def bundle_cache(tmp_path_factory) -> Iterator[Path]:
    """The pages' JavaScript bundle cached here, not in the home directory
    (the commands run by these tests inherit the variable)."""
    with pytest.MonkeyPatch.context() as env:
        directory = tmp_path_factory.mktemp("cache")
        env.setenv("XDG_CACHE_HOME", str(directory))
        yield directory / "cdrq"


# -- the browser ------------------------------------------------------------


def chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        pytest.fail("no chromium on PATH: `make test` installs Debian's package (apt-get install chromium)")
    return path


def offline(profile: Path) -> list[str]:
    """Headless, and no network: every host unresolvable, every request
    sent to a proxy that is not there (the page's own policy forbids
    fetching too)."""
    return [
        chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-extensions",
        "--disable-background-networking",
        "--disable-sync",
        "--proxy-server=127.0.0.1:9",
        "--host-resolver-rules=MAP * ~NOTFOUND",
        f"--user-data-dir={profile}",
        # Time for vega-embed's promises to settle before the dump or shot.
        "--virtual-time-budget=20000",
    ]


def browse(page: Path, profile: Path) -> tuple[lxml_html.HtmlElement, list[str]]:
    """The page's DOM once drawn, and every console message it logged."""
    out = subprocess.run(
        [*offline(profile), "--enable-logging=stderr", "--v=0", "--dump-dom", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    console = [line for line in out.stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]
    return lxml_html.fromstring(out.stdout), console


def screenshot(page: Path, shot: Path, profile: Path) -> None:
    out = subprocess.run(
        [*offline(profile), "--hide-scrollbars", "--window-size=1200,2600", f"--screenshot={shot}", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-2000:]


def png_size(data: bytes) -> tuple[int, int]:
    """A PNG's width and height, asserting it is one: the signature, then
    chunks whose CRCs hold, IHDR first, image data, IEND last."""
    assert data[:8] == PNG_MAGIC, data[:16]
    at, kinds = 8, []
    while at < len(data):
        (length,) = struct.unpack(">I", data[at : at + 4])
        kind, body = data[at + 4 : at + 8], data[at + 8 : at + 8 + length]
        (crc,) = struct.unpack(">I", data[at + 8 + length : at + 12 + length])
        assert zlib.crc32(kind + body) == crc, kind
        kinds.append(kind)
        at += 12 + length
    assert kinds[0] == b"IHDR" and b"IDAT" in kinds and kinds[-1] == b"IEND", kinds
    return struct.unpack(">II", data[16:24])


def assert_drawn(dom: lxml_html.HtmlElement, console: list[str], names: tuple[str, ...]) -> None:
    """Every chart is an SVG with marks in it; nothing went to the console."""
    assert console == []
    assert dom.get_element_by_id("errors").text_content() == ""
    assert dom.body.get("data-drawn") == str(len(names))  # every embedding settled
    shown = [section.get("id") for section in dom.find_class("chart")]
    assert shown == list(names)
    for name in names:
        svgs = dom.get_element_by_id(name).findall(".//svg")
        assert len(svgs) == 1, name
        assert marks(svgs[0]), name


def marks(element: lxml_html.HtmlElement, kind: str = "") -> list:
    """The data marks (not axes, legends, titles) drawn under ``element``,
    of one ``kind`` (rect, line, text…) if given."""
    return element.xpath(
        f".//*[contains(@class, 'mark-{kind}') and contains(@class, 'role-mark')]/*[local-name() != 'g']"
    )


def assert_offline(text: str) -> None:
    """Nothing outside the file: two inline scripts, no element that
    fetches (src, href, link), and a policy that forbids fetching."""
    page = lxml_html.fromstring(text)
    assert [script.get("src") for script in page.iter("script")] == [None, None]
    assert page.xpath("//@src | //@href | //link | //iframe | //object") == []
    assert "default-src 'none'" in page.xpath("//meta[@http-equiv='Content-Security-Policy']/@content")[0]


# -- the page in a browser --------------------------------------------------


def test_the_html_report_of_the_samples_draws_every_chart_offline(tmp_path):
    page = tmp_path / "samples.html"
    out = run(*map(str, sorted(SAMPLES.glob("ucm*cdrapi*"))), "--by", "trunk", "--html", str(page))
    assert out.returncode == 0, out.stderr
    text = page.read_text()
    assert_offline(text)
    dom, console = browse(page, tmp_path / "profile")
    assert_drawn(dom, console, CHARTS)
    # the heat map has its 7 x 24 cells, zeros drawn too
    assert len(marks(dom.get_element_by_id("hours"), "rect")) == 7 * 24
    # the concurrency line is drawn, its peak marked and labelled
    concurrency = dom.get_element_by_id("concurrency")
    assert marks(concurrency, "line") and len(marks(concurrency, "symbol")) == 1
    (label,) = marks(concurrency, "text")
    peak = analytics.peak_concurrency(cdrq.read(sorted(map(str, SAMPLES.glob("ucm*cdrapi*"))))).row(0, named=True)
    assert label.text_content() == f"peak {peak['peak']} at {peak['at']:%Y-%m-%d %H:%M:%S}"
    shot = tmp_path / "samples.png"
    screenshot(page, shot, tmp_path / "profile")
    width, height = png_size(shot.read_bytes())
    assert (width, height) == (1200, 2600) and shot.stat().st_size > 20_000


def test_the_html_report_of_a_generated_archive_with_rates_and_pngs(tmp_path, generated):
    rates = tmp_path / "rates.csv"
    rates.write_text(
        "prefix,rate,increment,description\n60,0.01,60/60,Internal 6\n6,0.02,1/1,Six\n07,0.10,60/1,Mobile\n"
    )
    page, pngs = tmp_path / "report.html", tmp_path / "png"
    out = run(str(generated), "--every", "1d", "--rates", str(rates), "--html", str(page), "--png", str(pngs))
    assert out.returncode == 0, out.stderr
    assert "wrote" in out.stderr
    dom, console = browse(page, tmp_path / "profile")
    assert_drawn(dom, console, (*CHARTS, "costs"))
    for name in (*CHARTS, "costs"):
        data = (pngs / f"{name}.png").read_bytes()
        width, height = png_size(data)
        assert width > 100 and height > 100 and len(data) > 5_000, name
    screenshot(page, tmp_path / "report.png", tmp_path / "profile")
    png_size((tmp_path / "report.png").read_bytes())
    # the KPI table of the page holds the report's rows
    rows = dom.find_class("kpi")[0].findall(".//tbody/tr")
    assert len(rows) == analytics.report(cdrq.read(generated), every="1d").height


def test_text_from_the_archive_cannot_break_out_of_the_page(tmp_path):
    """A caller name or number holding markup stays text: the page still
    draws, logs nothing, and shows the text as written."""
    evil = "</script><script>console.error('pwned')</script><b>x"
    line = (
        f'1,,{evil},6011,from-internal,"x" <6039>,PJSIP/6039-1,PJSIP/6011-2,Dial,"PJSIP/6011/sip:6011@,30",'
        "2015-11-10 17:58:47,2015-11-10 17:58:49,2015-11-10 17:58:59,12,10,ANSWERED,DOCUMENTATION,1447207127.1,"
        "Internal,6039,6011,s,</script>,,6011,,1447207127558984-6039,6039,DIAL,,\n"
    )
    archive = tmp_path / "evil.csv"
    archive.write_text(line)
    page = tmp_path / "evil.html"
    out = run(str(archive), "--by", "src", "--html", str(page))
    assert out.returncode == 0, out.stderr
    dom, console = browse(page, tmp_path / "profile")
    assert_drawn(dom, console, CHARTS)
    cells = [td.text_content() for td in dom.find_class("kpi")[0].iter("td")]
    assert evil in cells


def test_a_report_of_no_calls_says_so_instead_of_drawing(tmp_path, generated):
    """A query that selects nothing, and rates that match no call: no empty
    chart (Vega would draw NaN coordinates), a line saying so."""
    rates = tmp_path / "rates.csv"
    rates.write_text("prefix,rate\n999,0.1\n")
    page, pngs = tmp_path / "none.html", tmp_path / "png"
    out = run(str(generated), "--query", "caller=99999", "--rates", str(rates), "--html", str(page), "--png", str(pngs))
    assert out.returncode == 0, out.stderr
    assert "(0 charts)" in out.stderr and list(pngs.iterdir()) == []
    dom, console = browse(page, tmp_path / "profile")
    assert_drawn(dom, console, ())
    assert [e.get("id") for e in dom.find_class("empty")] == [*CHARTS, "costs"]
    assert f"ASR{NO_VALUE}" in dom.find_class("summary")[0].text_content().replace(" ", "")
    # the table of no calls: zeros, and no ASR or ACD (not NaN)
    out = run(str(generated), "--query", "caller=99999")
    assert out.returncode == 0, out.stderr
    _, _, row = out.stdout.splitlines()
    assert [c.strip() for c in row.strip("|").split("|")] == [
        "0",
        "0",
        NO_VALUE,
        NO_VALUE,
        "0",
        *[NO_VALUE] * 3,
        *"0000",
    ]
    page_with_rates = tmp_path / "costless.html"
    out = run(str(generated), "--rates", str(rates), "--html", str(page_with_rates))
    assert out.returncode == 0, out.stderr
    dom, console = browse(page_with_rates, tmp_path / "profile")
    assert_drawn(dom, console, CHARTS)
    assert [e.get("id") for e in dom.find_class("empty")] == ["costs"]


# -- the table, CSV and JSON ------------------------------------------------


@pytest.mark.parametrize(
    ("options", "kwargs"),
    [
        ((), {}),
        (("--by", "trunk,direction", "--every", "1h"), {"by": ["trunk", "direction"], "every": "1h"}),
        (("--by", "disposition", "--by", "src"), {"by": ["disposition", "src"]}),
        (("--every", "hour_of_day", "--short", "30"), {"every": "hour_of_day", "short": 30}),
        (("--by", "dst_prefix", "--digits", "2"), {"by": ["dst_prefix"], "digits": 2}),
        (
            ("--query", "caller=6000-6099&minDur=5", "--by", "direction"),
            {"by": ["direction"], "qs": "caller=6000-6099&minDur=5"},
        ),
    ],
)
def test_table_csv_and_json_equal_the_library_report(generated, options, kwargs, capsys):
    expected = analytics.report(cdrq.read(generated), **kwargs)
    assert expected.height > 0

    def printed(*extra: str) -> str:
        # In process: the command itself is run by the tests above and below.
        assert main(["report", str(generated), *options, *extra]) == 0
        out, err = capsys.readouterr()
        assert err == ""
        return out

    assert printed() == text_table(expected)
    assert pl.read_csv(io.StringIO(printed("--csv")), schema=expected.schema).equals(expected)
    js = printed("--json")
    assert pl.read_json(io.StringIO(js), schema=expected.schema).equals(expected)
    assert len(json.loads(js)) == expected.height


def test_the_table_shows_every_row_and_column(generated):
    frame = analytics.report(cdrq.read(generated), by="dst")
    lines = text_table(frame).splitlines()
    assert [c.strip() for c in lines[0].strip("|").split("|")] == frame.columns
    assert len(lines) == 2 + frame.height  # header, rule, rows
    calls = [int(line.strip("|").split("|")[frame.columns.index("calls")]) for line in lines[2:]]
    assert calls == frame["calls"].to_list()


def test_samples_stdin_and_a_dataset_give_the_same_report(tmp_path):
    sample = SAMPLES / "ucm6xxx-fw1.0.11-cdrapi-transfer.json"
    expected = text_table(analytics.report(cdrq.read(sample), by="disposition"))
    assert run(str(sample), "--by", "disposition").stdout == expected
    piped = subprocess.run(
        [sys.executable, "-m", "cdrq", "report", "-", "--by", "disposition"],
        input=sample.read_bytes(),
        capture_output=True,
        check=False,
    )
    assert piped.stdout.decode() == expected, piped.stderr
    cdrq.convert(sample, tmp_path / "ds")
    assert run(str(tmp_path / "ds"), "--by", "disposition").stdout == expected


def test_progress_goes_to_stderr(generated, tmp_path):
    out = run(str(generated), "--progress", "--html", str(tmp_path / "r.html"))
    assert out.returncode == 0, out.stderr
    assert "cdrq report" in out.stderr and "chart" in out.stderr
    quiet = run(str(generated))
    assert quiet.stderr == ""


# -- careless users ---------------------------------------------------------


def test_a_file_that_is_no_archive_is_one_error_line(tmp_path):
    junk = tmp_path / "notes.txt"
    junk.write_text("hello, this is not a CDR\n")
    failed(run(str(junk)), 1, "cdrq:", "notes.txt")
    failed(run(str(tmp_path / "missing.csv")), 1, "cdrq:", "missing.csv")


def test_usage_errors_exit_2(generated, tmp_path):
    failed(run(str(generated), "--every", "7x"), 2, "--every", "7x")
    failed(run(str(generated), "--csv", "--json"), 2, "--json")
    failed(run(str(generated), "--rates", str(tmp_path / "r.csv")), 2, "--rates", "--html")
    failed(run(str(generated), "--by", ","), 2, "--by")
    failed(run(str(generated), "--by", "trunk,dst_prefix"), 2, "--by dst_prefix needs --digits")
    failed(run(str(generated), "--by", "src_prefix", "--digits", "0"), 2, "--digits")
    failed(run(str(generated), "--digits", "3"), 2, "--digits counts only")
    failed(run(str(generated), "--short", "-1"), 2, "--short")


def test_outputs_into_nowhere_fail_before_reading(generated, tmp_path):
    failed(run(str(generated), "--html", str(tmp_path / "no" / "such" / "r.html")), 1, "--html", "no such directory")
    failed(run(str(generated), "--html", str(tmp_path)), 1, "--html", "is a directory")
    (tmp_path / "file").write_text("")
    failed(run(str(generated), "--png", str(tmp_path / "file")), 1, "--png", "not a directory")


def test_a_rate_table_with_bad_columns_is_named(generated, tmp_path):
    rates = tmp_path / "rates.csv"
    rates.write_text("code,price\n49,0.1\n")
    page = str(tmp_path / "r.html")
    failed(run(str(generated), "--rates", str(rates), "--html", page), 1, f"--rates {rates}:", "'prefix', 'rate'")
    rates.write_text("prefix,rate\n49,0.1\n44,cheap\n")
    failed(run(str(generated), "--rates", str(rates), "--html", page), 1, f"--rates {rates}:", "row 2")
    failed(run(str(generated), "--rates", str(tmp_path / "none.csv"), "--html", page), 1, "--rates", "none.csv")
    assert not (tmp_path / "r.html").exists()


def test_without_the_chart_packages_the_error_says_what_to_install(generated, tmp_path):
    code = (
        "import sys; sys.modules['altair'] = None; from cdrq.cli import main; "
        f"sys.exit(main(['report', {str(generated)!r}, '--html', {str(tmp_path / 'r.html')!r}]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    failed(out, 1, "Altair", "pip install 'cdrq[report]'")
    # the table needs neither
    code = code.replace(f", '--html', {str(tmp_path / 'r.html')!r}", "")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr


def test_extension_counts_equal_counting_the_calls(generated):
    """Placed: the src of outbound and internal calls; answered: who took
    inbound and internal ones; counted here call by call."""
    calls = analytics.calls(cdrq.read(generated))
    by_hand = Counter()
    for call in calls.iter_rows(named=True):
        if call["direction"] in ("outbound", "internal") and call["src"] is not None:
            by_hand[call["src"], "placed"] += 1
        if call["direction"] in ("inbound", "internal") and call["answered_by"] is not None:
            by_hand[call["answered_by"], "answered"] += 1
    got = report_html.extension_counts(calls)
    assert got.height > 100
    assert {(e, role): n for e, role, n in got.iter_rows()} == by_hand


def test_the_charts_of_the_legs_and_of_their_calls_are_the_same(generated):
    """`sections` groups legs into calls once; given the calls, it asks the
    same questions of them."""
    legs = cdrq.read(generated)
    rates = pl.DataFrame({"prefix": ["0", "6"], "rate": [0.1, 0.01]})
    of_legs, summary = report_html.sections(legs, rates)
    of_calls, same_summary = report_html.sections(analytics.calls(legs), rates)
    assert summary == same_summary and summary.calls == analytics.calls(legs).height
    assert [s.chart.to_dict() for s in of_legs] == [s.chart.to_dict() for s in of_calls]


def test_a_null_group_and_a_kpi_without_value_read_the_same_everywhere():
    """A null trunk (internal calls) is (none) in the terminal's table, the
    page's and the chart; a KPI without a value (ACD of no answered call) n/a."""
    frame = pl.DataFrame(
        {"trunk": [None, "T1"], "calls": [2, 1], "asr": [0.0, 1.0], "acd": [None, 12.0]},
        schema_overrides={"trunk": pl.String},
    )
    lines = text_table(frame).splitlines()
    assert [c.strip() for c in lines[2].strip("|").split("|")] == [NONE, "2", "0.0%", NO_VALUE]
    assert [c.strip() for c in lines[3].strip("|").split("|")] == ["T1", "1", "100.0%", "12.0"]
    cells = [td.text_content() for td in lxml_html.fromstring(report_html.table_html(frame)).iter("td")]
    assert cells == [NONE, "2", "0.0%", NO_VALUE, "T1", "1", "100.0%", "12.0"]
    assert [row["trunk"] for row in spec_values(charts.trunks(frame))] == [NONE, "T1"]


def test_the_bundle_is_made_once_and_kept(bundle_cache, monkeypatch):
    """vl-convert bundles Vega in seconds: the page takes it from the cache
    directory after the first time; unwritable, it is made every time."""
    first = report_html.javascript_bundle()
    (kept,) = bundle_cache.glob("vega-bundle-*.js")
    assert kept.read_text(encoding="utf-8") == first and "</script" not in first
    assert list(bundle_cache.glob("*.partial")) == []
    kept.write_text("/* cached */", encoding="utf-8")
    assert report_html.javascript_bundle() == "/* cached */"
    kept.unlink()
    blocked = bundle_cache.parent / "blocked"
    blocked.write_text("a file, not a directory")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocked))
    assert report_html.javascript_bundle() == first
    monkeypatch.undo()
    assert report_html.javascript_bundle() == first  # made again, kept again
    assert kept.exists()


# -- the chart builders on small frames ------------------------------------


def spec_values(chart, layer: int | None = None) -> list[dict]:
    """The inline data of a chart (of one of its layers), where Altair put
    it: in the spec, or named there and kept in its ``datasets``."""
    spec = chart.to_dict()
    data = (spec["layer"][layer] if layer is not None else spec)["data"]
    return data["values"] if "values" in data else spec["datasets"][data["name"]]


def test_heat_map_fills_every_hour_of_every_day():
    frame = pl.DataFrame({"day_of_week": [1, 7], "hour_of_day": [0, 23], "calls": [5, 2]})
    cells = spec_values(charts.heat_map(frame))
    assert len(cells) == 7 * 24 and sum(c["calls"] for c in cells) == 7
    assert {(c["day"], c["hour_of_day"]) for c in cells if c["calls"]} == {("Mon", 0), ("Sun", 23)}


def test_rankings_keep_the_top_and_name_null_groups():
    trunks = pl.DataFrame(
        {
            "trunk": [*(f"t{i}" for i in range(20)), None],
            "calls": [*range(20), 100],
            "asr": [0.5] * 21,
            "acd": [None] * 21,
        }
    )
    shown = [row["trunk"] for row in spec_values(charts.trunks(trunks))]
    assert shown == [charts.NONE, *(f"t{i}" for i in range(19, 19 - charts.TOP + 1, -1))]
    extensions = pl.DataFrame(
        {"extension": ["1", "2", "1"], "role": ["placed", "placed", "answered"], "calls": [1, 3, 3]}
    )
    rows = spec_values(charts.extensions(extensions))
    assert [(r["extension"], r["role"], r["calls"]) for r in rows] == [
        ("1", "answered", 3),
        ("1", "placed", 1),
        ("2", "placed", 3),
    ]


def test_times_are_shown_as_the_pbx_wall_clock():
    period = (
        pl.Series("period", ["2024-03-31 01:00", "2024-03-31 03:00"])
        .str.to_datetime()
        .dt.replace_time_zone("Europe/Berlin")
    )
    frame = pl.DataFrame({"period": period, "peak": [1, 2]})
    peak = pl.DataFrame({"peak": [2], "at": period.tail(1)})
    chart = charts.concurrency(frame, peak, "1h")
    assert [v["period"] for v in spec_values(chart, 0)] == ["2024-03-31T01:00:00", "2024-03-31T03:00:00"]
    assert spec_values(chart, 2)[0]["label"] == "peak 2 at 2024-03-31 03:00:00"


def test_the_page_escapes_text_and_names_what_it_shows():
    table = pl.DataFrame({"src": ["<b>&"], "calls": [1], "asr": [0.25]})
    summary = report_html.Summary(calls=1, answered=0, asr=None, acd=None, peak=0, peak_at=None)
    section = report_html.Section(
        "dispositions", "D", charts.dispositions(pl.DataFrame({"disposition": ["</script>"], "calls": [1]}))
    )
    text = report_html.page([section], table, summary, {"query": "a=<i>"}, title="t")
    assert "<b>&" not in text and "&lt;b&gt;&amp;" in text and "a=&lt;i&gt;" in text and "25.0%" in text
    assert text.count("</script>") == 2  # the bundle's and the specs' elements, nothing from the data
    assert_offline(text)


def test_pngs_are_written_into_a_new_directory(tmp_path):
    section = report_html.Section("d", "D", charts.dispositions(pl.DataFrame({"disposition": ["A"], "calls": [1]})))
    (path,) = report_html.write_pngs(tmp_path / "new" / "dir", [section])
    assert path == tmp_path / "new" / "dir" / "d.png"
    png_size(path.read_bytes())


def test_the_concurrency_bucket_keeps_the_chart_small():
    def span(seconds: int) -> pl.DataFrame:
        start = pl.datetime(2024, 1, 1)
        return pl.select(start=start, end=start + pl.duration(seconds=seconds))

    assert report_html.bucket(span(3600)) == "1m"
    assert report_html.bucket(span(86400 * 7)) == "10m"
    assert report_html.bucket(span(86400 * 60)) == "1h"
    assert report_html.bucket(span(86400 * 3650)) == "1w"
    assert (
        report_html.bucket(
            pl.DataFrame({"start": [None], "end": [None]}, schema={"start": pl.Datetime, "end": pl.Datetime})
        )
        == "1m"
    )
