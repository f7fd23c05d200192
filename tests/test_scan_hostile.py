"""`cdrq.scan` against careless calls and hostile bytes: tiny windows put a
boundary everywhere, and every case must give what `cdrq.read` gives (the
same rows, rejects, or error type and message), never an error of another
type nor a silently empty frame."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import polars as pl
import pytest

import cdrq

HEADER = b"AcctId,src,dst,start,billsec,disposition,caller_name,lastdata\n"
RECORDS = (
    b'1,5300,6001,2024-01-30 22:00:00,10,ANSWERED,"n,1",SIP/1\n'
    b'2,5301,6002,2024-01-30 22:10:00,20,ANSWERED,"multi\nline\nname",SIP/2\n'
    b'3,5302,6003,2024-01-30 22:20:00,30,NO ANSWER,x,"q""uote"\n'
)
CSV = HEADER + RECORDS
WINDOWS = (1, 7, 64, 4096, None)


def outcome(run):
    """What ``run`` gave: ("ok", frames) or ("error", type, message)."""
    try:
        with cdrq.scan_errors():
            return ("ok", run())
    except cdrq.CdrqError as e:
        return ("error", type(e), str(e))


def assert_same(expected, got, label):
    assert expected[0] == got[0], (label, expected, got)
    if expected[0] == "error":
        assert expected[1:] == got[1:], label
    else:
        assert len(expected[1]) == len(got[1])
        for want, have in zip(expected[1], got[1], strict=True):
            assert have.equals(want), (label, want, have)


def assert_scan_is_read(path: Path, windows=WINDOWS, threads=(1, 2), **options):
    """Scans of ``path`` in every window size and thread count, raising and
    collecting, give what reading it gives."""
    for on_error in ("raise", "collect"):
        expected = outcome(lambda on_error=on_error: _as_tuple(cdrq.read(path, on_error=on_error, **options)))
        for window in windows:
            for n in threads:

                def scanned(window=window, n=n, on_error=on_error):
                    lazy = cdrq.scan(path, on_error=on_error, window_bytes=window, threads=n, **options)
                    if on_error == "raise":
                        return (lazy.collect(),)
                    frame, rejects = lazy
                    return (frame.collect(), rejects.frame())

                assert_same(expected, outcome(scanned), (on_error, window, n))
    return expected


def _as_tuple(result):
    return result if isinstance(result, tuple) else (result,)


def write(tmp_path: Path, data: bytes, name: str = "a.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


CSV_SHAPES = {
    "plain": CSV,
    "crlf": CSV.replace(b"\n", b"\r\n"),
    "bom": b"\xef\xbb\xbf" + CSV,
    "header only": HEADER,
    "header only, no newline": HEADER.rstrip(),
    "no trailing newline": CSV.rstrip(),
    "last line cut mid-quote": CSV + b'4,5303,6004,2024-01-30 22:30:00,1,ANSWERED,"unterminated',
    "last line cut mid-quote after a newline": CSV + b'4,5303,6004,2024-01-30 22:30:00,1,ANSWERED,"unter\nminated',
    "latin-1 byte": CSV.replace(b"x,", b"J\xe9r\xf4me,"),
    "nul bytes": CSV.replace(b"x,", b"a\x00b,").replace(b",30,", b",3\x000,"),
    "empty": b"",
    "blank lines": b"\n\r\n\n",
    "lone CRs": CSV.replace(b"\n", b"\r"),
}


@pytest.mark.parametrize("shape", list(CSV_SHAPES))
def test_hostile_csv_scans_as_it_reads(tmp_path, shape):
    assert_scan_is_read(write(tmp_path, CSV_SHAPES[shape]))


def test_latin1_with_its_encoding_and_lossy_utf8(tmp_path):
    path = write(tmp_path, CSV.replace(b"x,", b"J\xe9r\xf4me,"))
    assert_scan_is_read(path, windows=(1, 64, None), encoding="latin-1")
    assert_scan_is_read(path, windows=(1, 64, None), encoding="utf8-lossy")
    # By default the record is a reject, the others rows.
    frame, rejects = cdrq.scan(path, on_error="collect", window_bytes=7)
    assert frame.collect().height == 2
    assert rejects.frame()["reason"].to_list() == ["invalid UTF-8"]


def test_a_field_larger_than_many_windows(tmp_path):
    field = b"x,\n" * 20_000  # 60 kB of quoted commas and newlines
    data = HEADER + b'1,5300,6001,2024-01-30 22:00:00,1,ANSWERED,"' + field + b'",SIP/1\n' + RECORDS
    assert_scan_is_read(write(tmp_path, data), windows=(64, 4096), threads=(2,))


def json_records(n: int, late: bool = True) -> list[dict]:
    records = [
        {"AcctId": str(i), "src": '53"}]', "dst": "6{[\\", "start": "2024-01-30 22:00:00", "billsec": str(i)}
        for i in range(n)
    ]
    if late:
        records[-1]["weirdkey"] = "only in the last record"
    return records


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("late key", json.dumps({"cdr": json_records(20)}).encode()),
        ("late key, indented CRLF", json.dumps({"cdr": json_records(20)}, indent=1).replace("\n", "\r\n").encode()),
        ("null element", json.dumps({"cdr": [*json_records(3, False), None, *json_records(2, False)]}).encode()),
        ("bad value", json.dumps({"cdr": [{"AcctId": "x", "billsec": "q"}, *json_records(3)]}).encode()),
        ("numbers, not strings", json.dumps({"cdr": [{"AcctId": 1, "billsec": 3.0}, {"AcctId": 2}]}).encode()),
        ("no cdr key", b"{}"),
        ("trailing garbage", json.dumps({"cdr": json_records(3)}).encode() + b"garbage"),
        ("cut short, indented", json.dumps({"cdr": json_records(5)}, indent=1).encode()[:-30]),
    ],
)
def test_hostile_json_scans_as_it_reads(tmp_path, name, data):
    expected = assert_scan_is_read(write(tmp_path, data, "a.json"), windows=(1, 7, 64, None))
    if name.startswith("late key"):
        assert expected[1][0]["weirdkey"].to_list()[-1] == "only in the last record"


def test_nested_ucm_json_with_main_and_sub_cdrs_split_across_windows(tmp_path, samples):
    data = (samples / "ucm6xxx-fw1.0.11-cdrapi-transfer.json").read_bytes()
    assert_scan_is_read(write(tmp_path, data, "a.json"))
    compact = json.dumps(json.loads(data)).encode()
    assert_scan_is_read(write(tmp_path, compact, "b.json"), windows=(1, 7, 64))
    assert_scan_is_read(write(tmp_path, data[: len(data) // 2], "c.json"), windows=(1, 64))


XML = b"""<?xml version="1.0" encoding="UTF-8"?>
<!-- a comment with <cdr> in it -->
<cdr_root>
<?pi x?>
<cdr><main_cdr><AcctId>1</AcctId><src><![CDATA[</src><cdr> & ]]></src><dst>a&lt;&#233;&amp;</dst>
<start>2013-12-03 11:46:40</start><billsec>6</billsec></main_cdr>
<sub_cdr_1><AcctId>2</AcctId><src>x</src></sub_cdr_1></cdr>
<cdr session="s"><main_cdr><AcctId>3</AcctId><src/><clid><![CDATA[a]]]]><![CDATA[>]]></clid>
<late attr="1">v</late></main_cdr></cdr>
</cdr_root>
"""


@pytest.mark.parametrize(
    "data",
    [XML, XML.replace(b"\n", b"\r\n"), XML[:-40], XML.replace(b"&amp;", b"&bogus;"), b"<html><body/></html>"],
    ids=["cdata and entities", "crlf", "cut short", "unknown entity", "not cdrs"],
)
def test_hostile_xml_scans_as_it_reads(tmp_path, data):
    assert_scan_is_read(write(tmp_path, data, "a.xml"), windows=(1, 7, 64, None))


def test_json_or_xml_named_csv_is_sniffed(tmp_path):
    assert_scan_is_read(write(tmp_path, json.dumps({"cdr": json_records(4)}).encode()), windows=(1, None))
    assert_scan_is_read(write(tmp_path, XML, "b.csv"), windows=(1, None))


def test_compressed_sources_and_truncated_ones(tmp_path, samples):
    packed = gzip.compress(HEADER + RECORDS.replace(b"multi\nline\nname", b"one line") * 3)
    for i, data in enumerate([packed, packed[:-30], packed[:5], packed + b"junk"]):
        assert_scan_is_read(write(tmp_path, data, f"{i}.csv.gz"), windows=(1, 64, None), threads=(2,))
    zstd = (samples.parent / "fixtures" / "two-frames.csv.zst").read_bytes()
    assert_scan_is_read(write(tmp_path, zstd[:-10], "t.csv.zst"), windows=(1, None), threads=(2,))
    transfer = (samples.parent / "fixtures" / "transfer.json.zst").read_bytes()
    assert_scan_is_read(write(tmp_path, transfer[:-10], "t.json.zst"), windows=(1, None), threads=(2,))
    with pytest.raises(cdrq.CdrqError, match="cannot decompress gzip"), cdrq.scan_errors():
        cdrq.scan(tmp_path / "1.csv.gz").collect()


def test_many_sources_with_different_columns_empty_ones_and_a_directory(tmp_path):
    a = write(tmp_path, CSV, "a.csv")
    other = b"AcctId,src,dst,start,billsec,userfield,newcol\n9,5301,6002,2024-01-30 23:00:00,20,u,n\n"
    b = write(tmp_path, other, "b.csv")
    c = write(tmp_path, json.dumps({"cdr": [{"AcctId": "3", "zkey": "z"}]}).encode(), "c.json")
    empty, header = write(tmp_path, b"", "d.csv"), write(tmp_path, HEADER, "e.csv")
    for sources in ([a, b, c], [c, a, b], [empty, a], [a, header, empty], [empty, empty], tmp_path, [tmp_path, a]):
        expected = cdrq.read(sources)
        for window, n in ((1, 1), (7, 2), (None, 2)):
            assert cdrq.scan(sources, window_bytes=window, threads=n).collect().equals(expected)
    for wrong in (tmp_path / "missing.csv", tmp_path / "nothing-*.csv", [], 3):
        read = outcome(lambda wrong=wrong: cdrq.read(wrong))
        assert_same(read, outcome(lambda wrong=wrong: cdrq.scan(wrong).collect()), wrong)
    (tmp_path / "sub").mkdir()
    with pytest.raises(cdrq.CdrqError, match="no file in directory"):
        cdrq.scan(tmp_path / "sub")


ARCHIVE = HEADER + b"".join(
    b'%d,53%02d,6%d01,2024-01-%02d 22:%02d:00,%d,ANSWERED,"n\n%d",y\n'
    % (i, i % 50, i % 7, 1 + i % 28, i % 60, i % 90, i)
    for i in range(1, 60)
)

QUERIES = [
    "startTime=2030-01-01T00:00:00",
    "startTime=2024-01-05T00:00:00&endTime=2024-01-04T00:00:00",
    "minDur=80&maxDur=10",
    "caller=5300-5310&startTime=2024-01-03T00:00:00&endTime=2024-01-10T23:00:00",
    "order=desc&numRecords=4&offset=2",
]

ON_TOP = {
    "head": lambda f: f.head(3),
    "slice": lambda f: f.slice(2, 3),
    "tail": lambda f: f.tail(2),
    "one column": lambda f: f.select("start"),
    "polars filter": lambda f: f.filter(pl.col("billsec") > 40).select("src"),
    "count": lambda f: f.select(pl.len()),
}


@pytest.mark.parametrize("qs", QUERIES)
def test_polars_on_top_of_a_query_on_a_scan(tmp_path, qs):
    path = write(tmp_path, ARCHIVE)
    scanned = cdrq.query(cdrq.scan(path, window_bytes=64, threads=2), qs)
    read = cdrq.query(cdrq.read(path).lazy(), qs)
    for i, (name, op) in enumerate(ON_TOP.items()):
        engine = ("auto", "streaming")[i % 2]
        assert op(scanned).collect(engine=engine).equals(op(read).collect()), (name, engine)


def test_a_query_matching_nothing_sinks_an_empty_frame_of_reads_schema(tmp_path):
    path = write(tmp_path, ARCHIVE)
    cdrq.query(cdrq.scan(path, window_bytes=7), "startTime=2030-01-01T00:00:00").sink_parquet(tmp_path / "o.parquet")
    written = pl.read_parquet(tmp_path / "o.parquet")
    assert written.height == 0 and written.schema == cdrq.read(path).schema


@pytest.mark.parametrize(
    "replacement",
    [CSV[:90], CSV + RECORDS.replace(b"x,", b"z,"), json.dumps({"cdr": json_records(2)}).encode(), b""],
    ids=["truncated", "appended", "json", "emptied"],
)
def test_a_file_replaced_between_scan_and_collect(tmp_path, replacement):
    path = write(tmp_path, CSV)
    lazy = cdrq.scan(path, window_bytes=7)
    query = cdrq.query(cdrq.scan(path, window_bytes=7), "minDur=5")
    path.write_bytes(replacement)
    assert_same(outcome(lambda: (cdrq.read(path),)), outcome(lambda: (lazy.collect(),)), "scan")
    assert_same(
        outcome(lambda: (cdrq.query(cdrq.read(path), "minDur=5"),)), outcome(lambda: (query.collect(),)), "query"
    )


@pytest.mark.parametrize(
    "options",
    [
        {"window_bytes": -1},
        {"window_bytes": 64.5},
        {"window_bytes": "64"},
        {"batch_size": -1},
        {"threads": -1},
        {"threads": True},
    ],
    ids=str,
)
def test_a_wrong_count_is_a_cdrq_error_at_the_call(options):
    # Was an OverflowError/TypeError at collect, or (batch_size=-1) an empty frame.
    with pytest.raises(cdrq.CdrqError, match=f"{next(iter(options))} must be a non-negative integer"):
        cdrq.scan(CSV, **options)


def test_counts_too_large_for_the_reader_mean_all_at_once():
    expected = cdrq.read(CSV)
    assert cdrq.scan(CSV, window_bytes=2**70, batch_size=2**70).collect().equals(expected)
    assert cdrq.scan(gzip.compress(CSV), window_bytes=2**70).collect().equals(expected)
    assert cdrq.scan(CSV, window_bytes=0, batch_size=0, threads=0).collect().equals(expected)


# Found in the Rust core and fixed (rust/src/read/stream.rs, `unpack_window`):
# a compressed CDR API CSV is the one windowed source whose window ends where
# decompression stopped, not at the end of the file: it is cut at the last
# line end outside quotes (`stream::last_record_end`).

LONG_QUOTED = HEADER + b'1,5300,6001,2024-01-30 22:00:00,1,ANSWERED,"\n' + b"a" * 5000 + b'",SIP/1\n'
MANY_QUOTED = HEADER + b"".join(
    b'%d,5300,6001,2024-01-30 22:00:00,1,ANSWERED,"n\n%d",y\n' % (i, i) for i in range(1, 80)
)


@pytest.mark.parametrize("data", [LONG_QUOTED, MANY_QUOTED], ids=["one long field", "many short fields"])
@pytest.mark.parametrize("on_error", ["raise", "collect"])
def test_gzip_csv_with_a_quoted_newline_across_a_window(tmp_path, data, on_error):
    path = write(tmp_path, gzip.compress(data), "a.csv.gz")
    expected = _as_tuple(cdrq.read(path, on_error=on_error))
    got = cdrq.scan(path, window_bytes=7, on_error=on_error)
    got = (got.collect(),) if on_error == "raise" else (got[0].collect(), got[1].frame())
    assert all(g.equals(e) for g, e in zip(got, expected, strict=True))


def test_gzip_csv_with_a_quote_inside_a_field_still_scans_as_it_reads(tmp_path):
    # Quotes are counted to find a record's end: one that is text inside a
    # field throws the count off, and the window grows, then falls back.
    # One such quote, then 1.3 MB without another: past the 1 MiB a window
    # may grow to, the last line end.
    stray = b'1,5300,6001,2024-01-30 22:00:00,1,ANSWERED,a"b,y\n'
    rest = b"".join(b"%d,5300,6001,2024-01-30 22:00:00,1,ANSWERED,ab,y\n" % i for i in range(2, 25_000))
    path = write(tmp_path, gzip.compress(HEADER + stray + rest), "a.csv.gz")
    for window in (7, 64 << 10):
        assert cdrq.scan(path, window_bytes=window).collect().equals(cdrq.read(path))


def test_gzip_csv_parse_error_names_the_line_of_the_file(tmp_path):
    lines = [b"%d,5300,6001,2024-01-30 22:00:00,1,ANSWERED,x,y\n" % i for i in range(1, 120)]
    lines[100] = b"x" + lines[100]
    path = write(tmp_path, gzip.compress(HEADER + b"".join(lines)), "a.csv.gz")
    with pytest.raises(cdrq.ParseError) as raised:
        cdrq.scan(path, window_bytes=64).collect()
    assert raised.value.line == 102


@pytest.mark.parametrize(
    ("name", "data"),
    [("a.csv", b"hello world\n"), ("a.json", b'{"cdr": [{"AcctId": "1", "src"')],
    ids=["csv without a header", "one-line json cut short"],
)
def test_a_sniffed_format_error_says_what_was_guessed(tmp_path, name, data):
    path = write(tmp_path, data, name)
    with pytest.raises(cdrq.ParseError) as read:
        cdrq.read(path)
    assert "format auto read this as" in str(read.value)
    with pytest.raises(cdrq.ParseError) as scanned, cdrq.scan_errors():
        cdrq.scan(path, window_bytes=7).collect()
    assert str(scanned.value) == str(read.value)
