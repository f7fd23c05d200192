"""Files from the field: wrong-format bytes, foreign shapes, bad bytes, DST
gaps, files changed under a frame, hostile names. Every input record ends
in the frame or in the rejects, and every failure is a CdrqError."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

import cdrq

FIELDS = ["AcctId", "src", "dst", "clid", "lastapp", "start", "billsec", "disposition"]
CSV_HEADER = (
    "AcctId,accountcode,src,dst,dcontext,clid,channel,dstchannel,lastapp,lastdata,start,answer,end,"
    "duration,billsec,disposition,amaflags,uniqueid,userfield,channel_ext,dstchannel_ext,service"
)


def csv_row(acct: int, clid: str = "x", start: str = "2023-03-26 01:30:00") -> str:
    return f"{acct},,6001,6002,from-internal,{clid},c,d,Dial,SIP/6002,{start},,{start},9,6,ANSWERED,D,1.0,,,,s"


def counted(data: bytes, **options) -> tuple[pl.DataFrame, pl.DataFrame]:
    """A collect-mode read, checked to raise in raise mode iff it rejected."""
    frame, rejects = cdrq.read(data, on_error="collect", **options)
    if rejects.height:
        with pytest.raises(cdrq.ParseError) as e:
            cdrq.read(data, **options)
        assert (e.value.line, e.value.column, e.value.reason) == rejects.row(0)[1:4]
    else:
        assert cdrq.read(data, **options).equals(frame)
    return frame, rejects


# 1. Never silent ------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "format", "seen"),
    [
        (b"garbage text", "ucm-xml", "neither JSON, XML"),
        (b"garbage text", "ucm-json", "neither JSON, XML"),
        (b"garbage text", "portsip-json", "neither JSON, XML"),
        (csv_row(1).encode(), "ucm-json", "neither JSON, XML"),
        (b'{"cdr": [{"AcctId": "1"}]}', "ucm-csv", "JSON"),
        (b'{"cdr": [{"AcctId": "1"}]}', "ucm-xml", "JSON"),
        (b"<cdr_root><cdr><AcctId>1</AcctId></cdr></cdr_root>", "ucm-json", "markup"),
        (b"<cdr_root/>", "ucm-webui-csv", "markup"),
    ],
)
def test_an_explicit_format_the_bytes_do_not_have_says_what_they_look_like(data, format, seen):
    for on_error in ("raise", "collect"):
        with pytest.raises(cdrq.ParseError) as e:
            cdrq.read(data, format=format, on_error=on_error)
        assert (e.value.line, e.value.column) == (1, 1)
        assert e.value.reason.startswith(f"format={format} but the bytes look like {seen}")
    with pytest.raises(cdrq.ParseError), cdrq.scan_errors():
        cdrq.scan(data, format=format).collect()


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b'{"hello": 1}', 'a JSON object without "cdr" or "cdr_root", so no CDRs (keys: hello)'),
        (b'{"cdr": 5}', '"cdr" holds neither records nor "": not a CDR export'),
        (b'{"cdr_root": true}', '"cdr_root" holds neither records nor "": not a CDR export'),
    ],
)
def test_json_that_is_no_cdr_export_is_an_error(data, reason):
    for on_error in ("raise", "collect"):
        with pytest.raises(cdrq.ParseError) as e:
            cdrq.read(data, format="ucm-json", on_error=on_error)
        assert e.value.reason == reason


@pytest.mark.parametrize("format", ["auto", "ucm-csv", "ucm-json", "ucm-xml", "ucm-webui-csv", "portsip-json"])
@pytest.mark.parametrize("data", [b"", b" \r\n", b"\xef\xbb\xbf\n"])
def test_empty_input_is_an_empty_frame_in_every_format(format, data):
    frame, rejects = cdrq.read(data, format=format, on_error="collect")
    assert (frame.height, rejects.height) == (0, 0)


@pytest.mark.parametrize("data", [b'{"cdr": ""}', b'{"cdr": []}', b'{"cdr_root": []}', b"[]", b"<cdr_root/>"])
def test_empty_exports_stay_empty(data):
    frame, rejects = counted(data)
    assert (frame.height, rejects.height) == (0, 0)


@pytest.mark.parametrize(
    "data",
    [
        b'[{"hello": 1}]',
        b'{"cdr": [{"hello": 1}]}',
        b"<html><body><p>hi</p></body></html>",
    ],
)
def test_an_element_without_any_cdr_field_is_a_reject(data):
    frame, rejects = counted(data)
    assert (frame.height, rejects["reason"].to_list()) == (0, ["holds no CDR field"])


def test_legs_given_as_arrays_are_sub_rows_numbered_in_order():
    data = json.dumps(
        {
            "cdr_root": [
                {
                    "cdr": "s1",
                    "main_cdr": {"AcctId": "5", "session": "s1"},
                    "sub_cdr_1": [{"AcctId": "6", "session": "s1"}, {"AcctId": "7", "session": "s1"}],
                    "sub_cdr_2": {"AcctId": "8", "session": "s1"},
                    "sub_cdr_3": [],
                }
            ]
        }
    ).encode()
    frame, rejects = counted(data)
    assert rejects.height == 0
    assert frame.select("AcctId", "cdr_kind", "leg").rows() == [
        (5, "main", 0),
        (6, "sub", 1),
        (7, "sub", 2),
        (8, "sub", 3),
    ]


@pytest.mark.parametrize(
    ("member", "reason"),
    [
        ('"sub_cdr_2": "gone"', '"sub_cdr_2" holds a leg that is not an object'),
        ('"sub_cdr_2": [{"AcctId": "8"}, 42]', '"sub_cdr_2" holds a leg that is not an object'),
        ('"sub_cdr_x": {"AcctId": "8"}', '"sub_cdr_x" is not main_cdr or sub_cdr_N'),
        ('"main_cdr_old": {"AcctId": "8"}', '"main_cdr_old" is not main_cdr or sub_cdr_N'),
    ],
)
def test_a_leg_cdrq_cannot_map_is_a_reject_naming_its_key(member, reason):
    data = '{"cdr_root": [{"cdr": "s", "main_cdr": {"AcctId": "5"}, "sub_cdr_1": {"AcctId": "6"}, ' + member + "}]}"
    frame, rejects = counted(data.encode())
    assert reason in rejects["reason"].to_list()
    assert rejects.height == 1
    assert 6 in frame["AcctId"].to_list()


# 2. Bad bytes are one record's problem ------------------------------------

LATIN1_JSON = b'{"cdr": [{"AcctId": "1", "clid": "\\"M\xfcller\\" <6012>"}, {"AcctId": "2", "clid": "ok"}]}'
LATIN1_XML = b"<cdr_root><cdr><AcctId>1</AcctId><clid>M\xfcller</clid></cdr><cdr><AcctId>2</AcctId></cdr></cdr_root>"
LATIN1_CSV = (CSV_HEADER + "\n" + csv_row(1, "M\xfcller") + "\n" + csv_row(2) + "\n").encode("latin-1")
WEBUI_CSV = "Caller Number,Callee Number,Caller ID,Start Time\n6001,6002,M\xfcller,2023-03-26 01:00:00\n6003,6004,ok,\n"


@pytest.mark.parametrize(
    ("data", "line"),
    [(LATIN1_JSON, 1), (LATIN1_XML, 1), (LATIN1_CSV, 2), (WEBUI_CSV.encode("latin-1"), 2)],
    ids=["json", "xml", "csv", "webui"],
)
def test_invalid_utf8_rejects_only_its_record_and_other_encodings_read_it(data, line):
    frame, rejects = counted(data)
    assert frame.height == 1
    assert rejects.select("line", "reason").rows() == [(line, "invalid UTF-8")]
    assert "M\ufffdller" in rejects["raw"][0]
    lossy = cdrq.read(data, encoding="utf8-lossy")
    assert lossy.height == 2 and "M\ufffdller" in lossy["clid"][0]
    for encoding in ("latin-1", "windows-1252", "ISO-8859-1"):
        assert "M\u00fcller" in cdrq.read(data, encoding=encoding)["clid"][0]
    assert "M\u00fcller" in cdrq.scan(data, encoding="latin-1").collect()["clid"][0]


def test_windows_1252_bytes_that_latin1_leaves_unprintable_are_decoded():
    data = (CSV_HEADER + "\n" + csv_row(1, "Caf\u00e9 \u20ac") + "\n").encode("cp1252")
    assert cdrq.read(data, encoding="latin-1")["clid"].to_list() == ["Caf\u00e9 \u20ac"]


def test_an_unknown_encoding_is_a_cdrq_error():
    with pytest.raises(cdrq.CdrqError, match='unknown encoding "klingon"'):
        cdrq.read(LATIN1_CSV, encoding="klingon")


GAP_CSV = "\n".join([CSV_HEADER, csv_row(1), csv_row(2, start="2023-03-26 02:30:00"), csv_row(3)]).encode()
GAP_JSON = b'{"cdr": [{"AcctId": "1"}, {"AcctId": "2", "start": "2023-03-26 02:30:00"}, {"AcctId": "3"}]}'
GAP_XML = b"<r><cdr><AcctId>1</AcctId></cdr><cdr><AcctId>2</AcctId><start>2023-03-26 02:30:00</start></cdr></r>"
GAP_WEBUI = b"Caller Number,Start Time\n6001,2023-03-26 01:00:00\n6002,3/26/2023 2:15:00 AM\n"


@pytest.mark.parametrize(
    ("data", "line", "column"),
    [(GAP_CSV, 3, 48), (GAP_JSON, 1, 53), (GAP_XML, 1, 63), (GAP_WEBUI, 3, 6)],
    ids=["csv", "json", "xml", "webui"],
)
def test_a_time_in_the_spring_forward_gap_is_a_reject_naming_line_and_column(data, line, column):
    frame, rejects = counted(data, tz="Europe/Berlin")
    assert rejects.select("source", "line", "column").rows() == [("<bytes>", line, column)]
    assert "does not exist in Europe/Berlin: the clocks skip it" in rejects["reason"][0]
    assert frame["start"].dtype == pl.Datetime("us", "Europe/Berlin")
    # The same wall time is fine where the clocks do not jump then.
    assert cdrq.read(data, tz="America/New_York").height == frame.height + 1
    assert cdrq.read(data, tz="UTC").height == frame.height + 1


def test_scan_and_convert_reject_a_dst_gap_time_and_keep_the_rest(tmp_path):
    lf, rejects = cdrq.scan(GAP_CSV, tz="Europe/Berlin", on_error="collect")
    assert lf.collect()["AcctId"].to_list() == [1, 3]
    assert rejects.frame()["line"].to_list() == [3]
    (tmp_path / "gap.csv").write_bytes(GAP_CSV)
    counts = cdrq.convert(tmp_path / "gap.csv", tmp_path / "ds", tz="Europe/Berlin")
    assert (counts["records"], counts["rejects"]) == (2, 1)


def test_dst_gaps_are_those_polars_cannot_place():
    from cdrq.zones import skipped_wall_times

    gaps = skipped_wall_times("Europe/Berlin")
    wall = pl.Series([s for s, _ in gaps] + [e - 1 for _, e in gaps] + [s - 1 for s, _ in gaps] + [e for _, e in gaps])
    placed = wall.cast(pl.Datetime("us")).dt.replace_time_zone("Europe/Berlin", non_existent="null")
    half = len(gaps) * 2
    assert placed[:half].null_count() == half and placed[half:].null_count() == 0
    assert skipped_wall_times("UTC") == () and skipped_wall_times("Asia/Kolkata") == ()
    # Lord Howe moves its clocks by 30 minutes.
    assert {e - s for s, e in skipped_wall_times("Australia/Lord_Howe")} >= {30 * 60 * 10**6}


# 3. Frames own their memory -------------------------------------------------


def test_a_frame_survives_its_file_rewritten_and_truncated(tmp_path):
    # In a child process: were the frame still mapped onto the file, reading
    # it after the truncation would kill the process with SIGBUS.
    path = tmp_path / "cdrs.csv"
    path.write_text(CSV_HEADER + "\n" + "\n".join(csv_row(i, f"caller-{i:04}") for i in range(1, 2001)) + "\n")
    script = textwrap.dedent(
        f"""
        import os, cdrq
        path = {str(path)!r}
        frame = cdrq.read(path)
        scanned = cdrq.scan(path).collect()
        before = frame["clid"].to_list()
        with open(path, "r+b") as f:  # rewritten in place, as `cp new.csv cdrs.csv` does
            data = f.read()
            f.seek(0)
            f.write(data.replace(b"caller-", b"CALLER-"))
        os.truncate(path, 0)
        assert frame["clid"].to_list() == before, "values changed"
        assert scanned["clid"].to_list() == before, "scanned values changed"
        print(frame.height, before[-1])
        """
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert (run.returncode, run.stdout.split()) == (0, ["2000", "caller-2000"]), run.stderr


def test_memory_map_true_shares_the_mapping(tmp_path):
    path = tmp_path / "cdrs.csv"
    path.write_text(CSV_HEADER + "\n" + csv_row(1, "caller-long-enough-to-be-a-view") + "\n")
    shared = cdrq.read(path, memory_map=True)
    owned = cdrq.read(path)
    with open(path, "r+b") as f:
        data = f.read()
        f.seek(0)
        f.write(data.replace(b"caller-", b"CALLER-"))
    assert owned["clid"][0] == "caller-long-enough-to-be-a-view"
    assert shared["clid"][0] == "CALLER-long-enough-to-be-a-view"  # the documented hazard


# 8. Only CdrqError, whatever the names ---------------------------------------

HOSTILE_NAMES = [b"a\x00b", b"\x01\x1f\x7f", b"x\xff\xfey", b"n" * 10_000, b"\xe2\x80", b" \t "]


@pytest.mark.parametrize("name", HOSTILE_NAMES, ids=range(len(HOSTILE_NAMES)))
@pytest.mark.parametrize("shape", ["csv", "json", "xml", "webui"])
def test_any_bytes_as_a_name_give_a_usable_column_or_a_cdrq_error(shape, name):
    if shape == "csv":
        data = CSV_HEADER.encode() + b"," + name + b"\n" + csv_row(1).encode() + b",v\n"
    elif shape == "json":
        data = b'[{"AcctId": "1", "' + name.replace(b"\x00", b"\\u0000") + b'": "v"}]'
    elif shape == "xml":
        data = b"<r><cdr><AcctId>1</AcctId><" + name + b">v</" + name + b"></cdr></r>"
    else:
        data = b"Caller Number,Callee Number," + name + b"\n6001,6002,v\n"
    for on_error in ("raise", "collect"):
        try:
            result = cdrq.read(data, on_error=on_error)
        except cdrq.CdrqError:
            continue
        frame = result[0] if on_error == "collect" else result
        rejects = result[1].height if on_error == "collect" else 0
        assert frame.height + rejects == 1
        for column in frame.columns:
            assert "\x00" not in column and frame[column].len() == frame.height


def test_keys_differing_only_in_unprintable_bytes_share_one_column():
    frame = cdrq.read(b'[{"AcctId": "1", "a\\u0000b": "x"}, {"AcctId": "2", "a\\u0001b": "y"}]')
    assert frame["a\ufffdb"].to_list() == ["x", "y"]


# Property: random archives with random bad records ---------------------------

GOOD = st.fixed_dictionaries(
    {
        "AcctId": st.integers(1, 10**6).map(str),
        "src": st.text("0123456789", min_size=1, max_size=6),
        "clid": st.text(st.characters(codec="utf-8", exclude_categories=["Cs", "Cc"]), max_size=8),
        "start": st.sampled_from(["2023-03-26 01:59:59", "2023-03-26 03:00:00", "2023-10-29 02:30:00", ""]),
    }
)
BAD = st.sampled_from(["utf8", "gap", "foreign"])


def write(format: str, records: list[dict | str]) -> bytes:
    """``records`` in ``format``; a string is a bad record of that kind."""
    out: list[bytes] = []
    for r in records:
        if r == "foreign":
            out.append(FOREIGN[format])
            continue
        rec = dict(r) if isinstance(r, dict) else {"AcctId": "9", "src": "1", "clid": "c", "start": ""}
        if r == "gap":
            rec["start"] = "2023-03-26 02:15:00"
        if format == "csv":
            clid = '"' + rec["clid"].replace('"', '""') + '"'
            line = f"{rec['AcctId']},,{rec['src']},6002,ctx,{clid},c,d,Dial,SIP,{rec['start']},,,9,6,ANSWERED,D,1,,,,s"
            out.append(line.encode())
        elif format == "webui":
            clid = '"' + rec["clid"].replace('"', '""') + '"'
            out.append(f"{rec['src']},{clid},{rec['start']}".encode())
        elif format == "json":
            out.append(json.dumps(rec).encode())
        elif format == "portsip":
            # Instants: a wall time in no gap anywhere, so only bad bytes and foreign items fail.
            started = "2023-03-26T01:15:00Z" if rec["start"] else None
            item = {"id": rec["AcctId"], "caller": rec["src"], "caller_display_name": rec["clid"]}
            out.append(json.dumps({**item, "callee": "6002", "call_id": rec["AcctId"], "started_at": started}).encode())
        else:
            esc = rec["clid"].replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            fields = f"<AcctId>{rec['AcctId']}</AcctId><src>{rec['src']}</src><clid>{esc}</clid>"
            out.append(f"<cdr>{fields}<start>{rec['start']}</start></cdr>".encode())
        if r == "utf8":
            src = b"<src>" + rec["src"].encode() if format == "xml" else rec["src"].encode()
            out[-1] = out[-1].replace(src, src + b"\xff\xfe", 1)
    if format == "csv":
        return (CSV_HEADER + "\n").encode() + b"\n".join(out) + b"\n"
    if format == "webui":
        return b"Caller Number,Caller ID,Start Time\n" + b"\n".join(out) + b"\n"
    if format == "json":
        return b'{"cdr": [' + b",\n".join(out) + b"]}"
    if format == "portsip":
        return b'{"count": 0, "items": [' + b",\n".join(out) + b"]}"
    return b"<cdr_root>\n" + b"\n".join(out) + b"\n</cdr_root>"


FOREIGN = {
    "csv": b"1,2,3",
    "webui": b"1,2,3,4,5",
    "json": b'{"hello": 1}',
    "portsip": b'{"hello": 1}',
    "xml": b"<x><y>1</y></x>",
}


@given(
    format=st.sampled_from(list(FOREIGN)),
    records=st.lists(st.one_of(GOOD, BAD), max_size=12),
    threads=st.sampled_from([1, 2]),
)
def test_collect_mode_keeps_every_good_record_and_rejects_every_bad_one(format, records, threads):
    if format == "portsip":  # instants: no wall time to fall in a gap
        records = [r for r in records if r != "gap"]
    data = write(format, records)
    frame, rejects = cdrq.read(data, tz="Europe/Berlin", on_error="collect", threads=threads)
    bad = sum(isinstance(r, str) for r in records)
    assert (frame.height, rejects.height) == (len(records) - bad, bad)
    clean = cdrq.read(write(format, [r for r in records if isinstance(r, dict)]), tz="Europe/Berlin")
    # A rejected record's foreign keys may add columns: null in every row.
    assert frame.select(clean.columns).equals(clean)
    assert all(frame[c].null_count() == frame.height for c in frame.columns if c not in clean.columns)


@pytest.mark.parametrize("word", ["items", "call_id", "event_type"])
def test_portsip_words_as_ucm_values_do_not_make_it_portsip(word):
    # Found by the render property test: `"lastdata": "items"` was sniffed as PortSIP.
    leg = json.dumps({"AcctId": "2", "lastdata": word})
    data = '{"cdr_root": [{"cdr": "s", "main_cdr": {"AcctId": "1"}, "sub_cdr_1": ' + leg + "}]}"
    frame = cdrq.read(data.encode())
    assert frame.select("AcctId", "lastdata", "cdr_kind").rows() == [(1, None, "main"), (2, word, "sub")]
    assert cdrq.read(b'{"items": [{"id": "1", "caller": "101", "call_id": "c"}]}')["src"].to_list() == ["101"]


def test_deep_nesting_inside_a_value_is_read_not_a_stack_overflow():
    # 100 000 levels in a field the reader only skips: it used to overflow
    # the stack (SIGSEGV); the skip is iterative now.
    deep = b"[" * 100_000 + b"]" * 100_000
    frame, rejects = cdrq.read(b'{"cdr": [{"AcctId": "1", "x": ' + deep + b'}, {"AcctId": "2"}]}', on_error="collect")
    assert (frame["AcctId"].to_list(), rejects.height) == ([1, 2], 0)
    with pytest.raises(cdrq.ParseError, match="expected a JSON value"):
        cdrq.read(b'{"cdr": [{"AcctId": "1", "x": ' + b"[" * 100_000 + b"}]}")


def test_caller_given_names_are_usable_columns_and_encodings_are_checked_at_the_call():
    frame = cdrq.read(b'"1","2"\n', format="asterisk-custom", columns=["a\x00b", "src"])
    assert frame["a\ufffdb"].to_list() == ["1"]
    with pytest.raises(cdrq.CdrqError, match='unknown encoding "nope"'):
        cdrq.scan(b"x", encoding="nope")
