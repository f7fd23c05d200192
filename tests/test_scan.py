"""`cdrq.scan`: the same rows as `cdrq.read`, a window at a time, with
projection and the query's filter applied in the reader (checked by what
the reader built, not by timing)."""

from __future__ import annotations

import shutil
import string
import sys
from datetime import datetime, timedelta

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_grammar_agreement import NOW, queries

import cdrq
from cdrq import _core, _expr
from cdrq.scan import pieces

SAMPLE_FILES = [
    "ucm6510-fw1.0.2.5-cdrapi.csv",
    "ucm6xxx-fw1.0.11-cdrapi.csv",
    "ucm6100-fw1.0.x-cdrapi.json",
    "ucm6xxx-fw1.0.11-cdrapi-transfer.json",
    "portsip-v22-api-cdrs-response.partial.json",
    "portsip-webhook-call_start.json",
]

HEADER = "AcctId,src,dst,start,billsec,disposition,caller_name,lastdata"


def csv_archive(n: int, seed: int = 0) -> str:
    """A CDR API CSV with a header, quoted fields and commas in lastdata."""
    lines = [HEADER]
    start = datetime(2024, 1, 30, 22, 0, 0)
    for i in range(n):
        k = (i * 7919 + seed) % 1000
        when = (start + timedelta(minutes=37 * i)).strftime("%Y-%m-%d %H:%M:%S")
        lastdata = f'"SIP/{k},60,"' if i % 3 else f"SIP/{k},60,"
        lines.append(f'{i + 1},{5300 + k % 200},6{k:03},{when},{k % 90},ANSWERED,"n,{k}",{lastdata}')
    return "\n".join(lines) + "\n"


@pytest.fixture(autouse=True)
def reset_counters():
    _core.take_counters()


@pytest.mark.parametrize("name", SAMPLE_FILES)
def test_scan_equals_read_for_every_sample(samples, name):
    assert cdrq.scan(samples / name).collect().equals(cdrq.read(samples / name))


@pytest.mark.parametrize("tz", ["UTC", "Europe/Berlin", None])
@pytest.mark.parametrize("fmt", ["csv", "json", "xml"])
def test_scan_equals_read_for_every_format_in_small_windows(tmp_path, fmt, tz):
    base = cdrq.read(csv_archive(300).encode())
    path = tmp_path / f"a.{fmt}"
    path.write_text(cdrq.render(base, fmt) if fmt != "csv" else csv_archive(300))
    read = cdrq.read(path, tz=tz)
    scanned = cdrq.scan(path, tz=tz, window_bytes=997)
    assert scanned.collect().equals(read)
    assert scanned.collect(engine="streaming").equals(read)


def test_many_files_directory_and_missing_columns(tmp_path, samples):
    shutil.copy(samples / "ucm6510-fw1.0.2.5-cdrapi.csv", tmp_path / "a.csv")
    (tmp_path / "b.json").write_text('{"cdr": [{"src": "2", "gds_call": "no"}]}')
    assert cdrq.scan(tmp_path).collect().equals(cdrq.read(tmp_path))
    assert cdrq.scan(str(tmp_path / "*.csv")).collect().equals(cdrq.read(str(tmp_path / "*.csv")))


def test_projection_builds_only_the_columns_asked_for(tmp_path):
    path = tmp_path / "a.csv"
    path.write_text(csv_archive(1000))
    out = cdrq.scan(path, window_bytes=4096).select("src", "billsec").collect()
    assert out.shape == (1000, 2)
    records, rows, cells = _core.take_counters()
    assert (records, rows, cells) == (1000, 1000, 2000)


def test_query_on_a_scan_filters_in_the_reader(tmp_path):
    path = tmp_path / "a.csv"
    path.write_text(csv_archive(1000))
    qs = "caller=5300-5309,5350&callee=6@&minDur=10&maxDur=60"
    expected = cdrq.query(cdrq.read(path), qs)
    _core.take_counters()
    got = cdrq.query(cdrq.scan(path, window_bytes=4096), qs).collect()
    assert got.equals(expected)
    assert 0 < got.height < 100
    records, rows, _ = _core.take_counters()
    # Every record was parsed; only the matching ones were built.
    assert (records, rows) == (1000, got.height)


def test_regex_items_and_zones_keep_a_superset_then_filter_exactly(tmp_path):
    path = tmp_path / "a.csv"
    path.write_text(csv_archive(500))
    qs = "caller=53_1,@9&startTime=2024-02-01T00:00:00&endTime=2024-02-03T12:00:00"
    for tz in ["UTC", "America/New_York"]:
        expected = cdrq.query(cdrq.read(path, tz=tz), qs)
        _core.take_counters()
        assert cdrq.query(cdrq.scan(path, tz=tz), qs).collect().equals(expected)
        _, rows, _ = _core.take_counters()
        assert expected.height <= rows < 500


def test_n_rows_stops_early_and_rejects_raise(tmp_path):
    path = tmp_path / "a.csv"
    path.write_text(csv_archive(2000))
    expected = cdrq.read(path).head(7)
    _core.take_counters()
    assert cdrq.scan(path, window_bytes=4096).head(7).collect().equals(expected)
    _, rows, _ = _core.take_counters()
    assert rows < 200
    bad = tmp_path / "bad.csv"
    bad.write_text(csv_archive(5).replace("\n1,", "\nx,", 1))
    with pytest.raises(cdrq.ParseError) as e:
        cdrq.scan(bad).collect()
    assert e.value.line == 2


def test_sink_parquet_streams_a_scan(tmp_path):
    path = tmp_path / "a.csv"
    path.write_text(csv_archive(400))
    cdrq.query(cdrq.scan(path), "minDur=30").sink_parquet(tmp_path / "out.parquet")
    assert pl.read_parquet(tmp_path / "out.parquet").equals(cdrq.query(cdrq.read(path), "minDur=30"))


def test_progress_goes_to_stderr_only_when_asked(tmp_path, capsys):
    path = tmp_path / "a.csv"
    path.write_text(csv_archive(300))
    cdrq.scan(path).collect()
    assert capsys.readouterr().err == ""
    cdrq.scan(path, progress=True, window_bytes=2048).collect()
    err = capsys.readouterr().err
    assert "cdrq" in err and "records=300" in err


def test_threads_do_not_change_the_result(tmp_path):
    path = tmp_path / "a.csv"
    path.write_text(csv_archive(3000))
    one = cdrq.scan(path, threads=1, window_bytes=50_000).collect()
    assert cdrq.scan(path, threads=4, window_bytes=50_000).collect().equals(one)


text = st.text(string.digits + "ab", max_size=6)


@given(
    st.lists(st.tuples(text, text, st.integers(0, 400 * 86_400), st.none() | st.integers(0, 900)), max_size=30),
    queries(),
    st.sampled_from(["UTC", "Europe/Berlin", None]),
    st.sampled_from(["csv", "json", "xml"]),
    st.integers(1, 400),
)
def test_scan_query_equals_read_query(tmp_path_factory, rows, qs, tz, fmt, window):
    lines = [HEADER]
    for i, (src, dst, offset, billsec) in enumerate(rows):
        when = (datetime(2013, 6, 1) + timedelta(seconds=offset)).strftime("%Y-%m-%d %H:%M:%S")
        lines.append(f"{i + 1},{src},{dst},{when},{'' if billsec is None else billsec},ANSWERED,,")
    data = ("\n".join(lines) + "\n").encode()
    if fmt != "csv":
        data = cdrq.render(cdrq.read(data, tz=None), fmt).encode()
    path = tmp_path_factory.mktemp("scan") / f"a.{fmt}"
    path.write_bytes(data)
    try:
        expected = cdrq.query(cdrq.read(path, tz=tz), qs, now=NOW)
    except cdrq.CdrqError as e:
        # A wall time the zone skips fails both ways.
        with pytest.raises(type(e)):
            cdrq.query(cdrq.scan(path, tz=tz, window_bytes=window), qs, now=NOW).collect()
        return
    assert cdrq.query(cdrq.scan(path, tz=tz, window_bytes=window), qs, now=NOW).collect().equals(expected)
    # The scan applying the plan's exact filter itself: its rows are the
    # plan's (before order and paging), with no filter of Polars after it.
    plan = cdrq.compile_query(qs, now=NOW)
    read = cdrq.read(path, tz=tz)
    exact = cdrq.scan(path, tz=tz, window_bytes=window).with_plan(plan)
    assert exact.collect().equals(read.filter(_expr.filters(plan, read.schema)))


def test_many_small_files_read_side_by_side_keep_their_order(tmp_path):
    for i in range(40):
        (tmp_path / f"{i:02}.csv").write_text(csv_archive(20 + i, seed=i))
    read = cdrq.read(tmp_path, threads=3)
    assert read.height == sum(20 + i for i in range(40))
    assert cdrq.scan(tmp_path, threads=3).collect().equals(read)
    assert cdrq.read(sorted(tmp_path.iterdir()), threads=1).equals(read)


def test_an_exact_plan_leaves_nothing_for_polars_to_filter(tmp_path):
    path = tmp_path / "a.csv"
    path.write_text(csv_archive(3000))
    plan = cdrq.compile_query("caller=5300-5349&minDur=10", now=NOW)
    scanned = cdrq.scan(path, window_bytes=20_000)
    exact = scanned.with_plan(plan)
    assert "FILTER" not in exact.explain(engine="streaming")
    expected = cdrq.query(cdrq.read(path), plan)
    assert 0 < expected.height < 3000
    assert exact.collect(engine="streaming").equals(expected)
    assert cdrq.query(scanned, plan).collect(engine="streaming").equals(expected)
    exact.sink_parquet(tmp_path / "kept.parquet")
    assert pl.read_parquet(tmp_path / "kept.parquet").equals(expected)
    # A scan already carrying a plan takes no other.
    assert exact.with_plan(plan) is exact


def test_windows_go_to_polars_in_pieces_of_whole_chunks():
    chunks = [3000, 3000, 9000, 100, 5]
    frame = pl.concat([pl.DataFrame({"a": range(n), "b": [str(i) for i in range(n)]}) for n in chunks], rechunk=False)
    assert frame.to_series(0).chunk_lengths() == chunks
    got = list(pieces(frame, None))
    assert [p.height for p in got] == [15000, 105]
    assert [p.to_series(1).chunk_lengths() for p in got] == [[3000, 3000, 9000], [100, 5]]
    assert pl.concat(got).equals(frame)
    capped = list(pieces(frame, 4000))
    assert max(p.height for p in capped) <= 4000 and pl.concat(capped).equals(frame)
    empty = frame.select()
    assert [p.height for p in pieces(frame.head(0), None)] == [0]
    assert sum(p.height for p in pieces(empty, None)) == 0


def test_batch_size_caps_the_frames_handed_to_polars(tmp_path):
    path = tmp_path / "a.csv"
    path.write_text(csv_archive(1000))
    batches = list(cdrq.scan(path, batch_size=128).collect_batches())
    assert sum(b.height for b in batches) == 1000
    assert max(b.height for b in batches) <= 128


@pytest.mark.parametrize("codec", ["gzip", "zstd"])
def test_compressed_csv_streams_a_window_at_a_time(tmp_path, samples, codec):
    import gzip

    data = csv_archive(3000).encode()
    if codec == "gzip":
        packed = gzip.compress(data)
    else:
        packed = (samples.parent / "fixtures" / "two-frames.csv.zst").read_bytes()
        data = b""
    path = tmp_path / f"a.csv.{codec}"
    path.write_bytes(packed)
    read = cdrq.read(path)
    assert cdrq.scan(path, window_bytes=4096).collect().equals(read)
    assert read.height == (3000 if data else read.height) > 0


def test_compressed_csv_reads_past_windows_of_blank_lines_or_spaces(tmp_path):
    """A window holding only whitespace ended the scan: the records after
    it were lost without a word."""
    import gzip

    lines = csv_archive(40).splitlines(keepends=True)
    blank = "\n" * 9_000 + "   " * 5_000 + "\n"
    text = " " * 20_000 + "\n" + lines[0] + "".join(lines[1:20]) + blank + "".join(lines[20:])
    path = tmp_path / "a.csv.gz"
    path.write_bytes(gzip.compress(text.encode()))
    read = cdrq.read(path)
    assert read.height == 40
    assert cdrq.scan(path, window_bytes=4096).collect().equals(read)
    # Spaces that begin a record's line after such a window are its own.
    spaced = tmp_path / "s.csv.gz"
    spaced.write_bytes(gzip.compress((text.replace(blank, blank + "   ")).encode()))
    read, read_rejects = cdrq.read(spaced, on_error="collect")
    scanned, rejects = cdrq.scan(spaced, window_bytes=4096, on_error="collect")
    assert scanned.collect().equals(read) and read.height == 39
    assert rejects.frame().equals(read_rejects) and read_rejects["raw"][0].startswith("   20,")
    # Lines are still the file's: the last record is on the file's last line.
    bad = tmp_path / "b.csv.gz"
    bad.write_bytes(gzip.compress((text[: text.rindex("\n", 0, -1) + 1] + "x" + lines[-1]).encode()))
    with pytest.raises(cdrq.ParseError) as e:
        cdrq.scan(bad, window_bytes=4096).collect()
    assert e.value.line == text.count("\n")


@pytest.mark.parametrize("name", ["ucm6100-fw1.0.x-cdrapi.json", "ucm6xxx-fw1.0.11-cdrapi-transfer.json"])
def test_compressed_json_padded_with_whitespace_is_told_as_read_tells_it(samples, name):
    # The scan sniffed the first 4 KiB decompressed: only spaces, so a CSV.
    import gzip

    data = gzip.compress(b" " * 5000 + b"\n" * 5000 + (samples / name).read_bytes())
    assert cdrq.scan(data).collect().equals(cdrq.read(data))
    assert cdrq.read(data).height > 0


def test_compressed_csv_learns_its_columns_from_its_first_window(tmp_path):
    import gzip

    path = tmp_path / "a.csv.gz"
    path.write_bytes(gzip.compress(csv_archive(3000).encode()))
    qs = "caller=5300-5309"
    expected = cdrq.query(cdrq.read(path), qs)
    _core.take_counters()
    assert cdrq.query(cdrq.scan(path, window_bytes=4096), qs).collect().equals(expected)
    records, rows, _ = _core.take_counters()
    # The run reads every record; learning the header read one window more
    # (before, a second pass over the whole file).
    assert 3000 < records < 3200
    assert expected.height <= rows < expected.height + 20


def json_or_xml(tmp_path, fmt: str, n: int, last_extra: bool = False):
    """csv_archive(n) as a UCM JSON or XML export; the last record with a
    key beyond the data model if ``last_extra``."""
    text = cdrq.render(cdrq.read(csv_archive(n).encode()), fmt)
    if last_extra:
        close = text.rindex('"}}') + 1 if fmt == "json" else text.rindex("</main_cdr>")
        text = text[:close] + (', "zz_extra": "z"' if fmt == "json" else "<zz_extra>z</zz_extra>") + text[close:]
    path = tmp_path / f"a.{fmt}"
    path.write_text(text)
    return path


@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_json_and_xml_scans_read_their_file_once(tmp_path, fmt):
    """Their columns are known only once all is read: that reading, with
    the query, is the run's own, not a pass before it."""
    path = json_or_xml(tmp_path, fmt, 1000, last_extra=True)
    qs = "caller=5300-5309,5381"  # 5381: the last record's
    expected = cdrq.query(cdrq.read(path), qs)
    assert "zz_extra" in expected.columns and expected["zz_extra"].drop_nulls().len() == 1
    query = cdrq.query(cdrq.scan(path, window_bytes=4096), qs)
    _core.take_counters()
    assert query.collect().equals(expected)
    assert _core.take_counters()[:2] == (1000, expected.height)
    # A later run reads the file again; the columns are not learnt again.
    assert query.collect(engine="streaming").equals(expected)
    assert _core.take_counters()[:2] == (1000, expected.height)


def test_convert_and_a_query_on_a_scan_whose_columns_were_learnt_read_once(tmp_path):
    path = json_or_xml(tmp_path, "json", 1000)
    _core.take_counters()
    cdrq.convert(path, tmp_path / "ds")
    assert _core.take_counters()[:2] == (1000, 1000)
    # Frames read to learn a scan's columns hold every row: a query on the
    # scan reads its own, and they are let go.
    scan = cdrq.scan(path)
    scan.collect_schema()
    assert scan.spec.prefetched
    query = cdrq.query(scan, "caller=5300-5309")
    assert not scan.spec.prefetched
    assert query.collect().equals(cdrq.query(cdrq.read(path), "caller=5300-5309"))


@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_a_query_keeping_much_learns_columns_building_nothing(tmp_path, monkeypatch, fmt):
    """Rows beyond what may be held are not kept: after its first window
    the reading goes on checking records but building none, so the run
    builds each row once, and a key first met in the last record is a
    column still."""
    monkeypatch.setattr(sys.modules["cdrq.scan"], "PREFETCH_BYTES", 2000)
    path = json_or_xml(tmp_path, fmt, 1000, last_extra=True)
    expected = cdrq.read(path)
    scan = cdrq.scan(path, window_bytes=4096)
    _core.take_counters()
    assert scan.collect().equals(expected)
    records, rows, _ = _core.take_counters()
    assert records == 2000
    assert 1000 < rows < 1200
    assert not scan.spec.prefetched


@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_a_file_rewritten_after_its_columns_were_learnt_is_read_again(tmp_path, fmt):
    path = json_or_xml(tmp_path, fmt, 300)
    qs = "caller=5300-5349"
    query = cdrq.query(cdrq.scan(path), qs)
    before = query.collect_schema()
    path.write_text(cdrq.render(cdrq.read(csv_archive(200, seed=17).encode()), fmt))
    expected = cdrq.query(cdrq.read(path), qs)
    assert expected.schema == before
    assert query.collect().equals(expected)


def test_many_json_sources_share_what_may_be_held(tmp_path, monkeypatch):
    monkeypatch.setattr(sys.modules["cdrq.scan"], "PREFETCH_BYTES", 70_000)
    for i in range(4):
        (tmp_path / f"{i}.json").write_text(cdrq.render(cdrq.read(csv_archive(300, seed=i).encode()), "json"))
    scan = cdrq.scan(tmp_path)
    scan.collect_schema()
    held = [sum(f.estimated_size() for f, _ in p.windows) for p in scan.spec.prefetched.values()]
    assert 0 < len(held) < 4 and sum(held) <= 70_000
    assert scan.collect().equals(cdrq.read(tmp_path))
    assert not scan.spec.prefetched


def archive_with_bad_lines(tmp_path, bad: tuple[int, ...]):
    """csv_archive(200) with the records on these lines unreadable (AcctId "x")."""
    lines = csv_archive(200).splitlines(keepends=True)
    for line in bad:
        lines[line - 1] = "x" + lines[line - 1]
    path = tmp_path / "a.csv"
    path.write_text("".join(lines))
    return path


def test_scan_collects_the_rejects_of_every_window(tmp_path):
    path = archive_with_bad_lines(tmp_path, (3, 90, 150, 199))
    expected, expected_rejects = cdrq.read(path, on_error="collect")
    # About 70 bytes a line: the bad lines fall in different windows.
    frame, rejects = cdrq.scan(path, on_error="collect", window_bytes=512)
    got = frame.collect()
    assert got.equals(expected)
    assert rejects.frame().equals(expected_rejects)
    assert rejects.frame()["line"].to_list() == [3, 90, 150, 199]
    assert got.height + len(rejects) == 200
    # A query pushed into the reader still gives every reject, once (each run starts afresh).
    qs = "caller=5300-5350"
    assert cdrq.query(frame, qs).collect().equals(cdrq.query(expected, qs))
    assert rejects.frame().equals(expected_rejects)


@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_json_and_xml_rejects_of_a_run_are_those_of_its_one_reading(tmp_path, fmt):
    path = json_or_xml(tmp_path, fmt, 300)
    text = path.read_text()
    for acct in ("17", "260"):
        old = f'"AcctId": "{acct}"' if fmt == "json" else f"<AcctId>{acct}</AcctId>"
        assert old in text
        text = text.replace(old, old.replace(acct, "x" + acct))
    path.write_text(text)
    expected, expected_rejects = cdrq.read(path, on_error="collect")
    assert len(expected_rejects) == 2
    frame, rejects = cdrq.scan(path, on_error="collect", window_bytes=2048)
    qs = "caller=5300-5350"
    query = cdrq.query(frame, qs)
    for _ in range(2):
        assert query.collect().equals(cdrq.query(expected, qs))
        assert rejects.frame().equals(expected_rejects)


def test_scan_raises_the_records_parse_error_itself(tmp_path):
    path = archive_with_bad_lines(tmp_path, (90,))
    with pytest.raises(cdrq.ParseError) as raised:
        cdrq.scan(path, window_bytes=512).collect(engine="streaming")
    assert (raised.value.source, raised.value.line) == (str(path), 90)
    assert str(path) in str(raised.value) and "AcctId is not an integer" in str(raised.value)
    with pytest.raises(cdrq.CdrqError, match="on_error must be"):
        cdrq.scan(path, on_error="skip")


def test_schema_errors_come_wrapped_by_polars_and_scan_errors_unwraps_them():
    broken = b'{"cdr": ['
    with pytest.raises(pl.exceptions.ComputeError, match="schema callable failed: ParseError: <bytes>:1:10"):
        cdrq.scan(broken).collect()
    with pytest.raises(cdrq.ParseError) as raised, cdrq.scan_errors():
        cdrq.scan(broken).collect()
    assert raised.value.line == 1
