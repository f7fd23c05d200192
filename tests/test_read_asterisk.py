"""Asterisk's CSV CDR backends (rust/src/read/csv.rs, `Dialect::Asterisk*`).

The bytes below are written from Asterisk's sources, not from a PBX:
- cdr_csv (`format="asterisk-csv"`): cdr/cdr_csv.c `build_csv_record` —
  `accountcode, src, dst, dcontext, clid, channel, dstchannel, lastapp,
  lastdata, start, answer, end, duration, billsec, disposition, amaflags`,
  then `uniqueid` (`loguniqueid`), `userfield` (`loguserfield`), then
  `peeraccount, linkedid, sequence` (`newcdrcolumns`); every value quoted
  by `append_string` (`"` doubled), an unset time written as a bare empty
  field by `append_date`, times `%Y-%m-%d %T` in local time or UTC
  (`usegmtime`).
- cdr_custom (`format="asterisk-custom"`): configs/samples/cdr_custom.conf.sample,
  whose `Master.csv` mapping quotes 18 fields with `CSV_QUOTE` and ends
  with a bare `${CDR(sequence)}`.
- AMA flag names: main/channel.c `ast_channel_amaflags2string` (OMIT=1,
  BILLING=2, DOCUMENTATION=3).
"""

from __future__ import annotations

import csv
import gzip
import io
import subprocess
import sys
from datetime import datetime, timedelta

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import cdrq

CSV16 = [
    "accountcode", "src", "dst", "dcontext", "clid", "channel", "dstchannel", "lastapp", "lastdata",
    "start", "answer", "end", "duration", "billsec", "disposition", "amaflags",
]  # fmt: skip
NEW_COLUMNS = ["peeraccount", "linkedid", "sequence"]
TIMES = {"start", "answer", "end"}
INTS = {"duration", "billsec"}


def layout(uniqueid: bool, userfield: bool, newcdrcolumns: bool) -> list[str]:
    """cdr_csv's fields for its options (cdr_csv.c build_csv_record)."""
    return CSV16 + ["uniqueid"] * uniqueid + ["userfield"] * userfield + NEW_COLUMNS * newcdrcolumns


# One call of two legs, as cdr_csv writes it with every option on (21 fields).
LINE_A = (
    '"sales","1001","2000","from-internal","""Alice Smith"" <1001>","PJSIP/1001-00000001",'
    '"PJSIP/2000-00000002","Dial","PJSIP/2000,30,tT","2024-01-28 10:18:20","2024-01-28 10:18:25",'
    '"2024-01-28 10:19:00","40","35","ANSWERED","DOCUMENTATION","pbx1-1706420300.0","vip",'
    '"","pbx1-1706420300.0","7"\n'
)
LINE_B = (
    '"","1001","2001","from-internal","1001","PJSIP/1001-00000003","","Queue","support,t,,,60",'
    '"2024-01-28 10:20:00",,"2024-01-28 10:20:30","30","0","NO ANSWER","BILLING",'
    '"pbx1-1706420400.3","","peer","pbx1-1706420300.0","8"\n'
)
EXPECTED_A = {
    "accountcode": "sales", "src": "1001", "dst": "2000", "dcontext": "from-internal",
    "clid": '"Alice Smith" <1001>', "channel": "PJSIP/1001-00000001", "dstchannel": "PJSIP/2000-00000002",
    "lastapp": "Dial", "lastdata": "PJSIP/2000,30,tT", "start": datetime(2024, 1, 28, 10, 18, 20),
    "answer": datetime(2024, 1, 28, 10, 18, 25), "end": datetime(2024, 1, 28, 10, 19, 0), "duration": 40,
    "billsec": 35, "disposition": "ANSWERED", "amaflags": "DOCUMENTATION", "uniqueid": "pbx1-1706420300.0",
    "userfield": "vip", "peeraccount": None, "linkedid": "pbx1-1706420300.0", "sequence": "7",
}  # fmt: skip
EXPECTED_B = {
    "accountcode": None, "src": "1001", "dst": "2001", "dcontext": "from-internal", "clid": "1001",
    "channel": "PJSIP/1001-00000003", "dstchannel": None, "lastapp": "Queue", "lastdata": "support,t,,,60",
    "start": datetime(2024, 1, 28, 10, 20, 0), "answer": None, "end": datetime(2024, 1, 28, 10, 20, 30),
    "duration": 30, "billsec": 0, "disposition": "NO ANSWER", "amaflags": "BILLING",
    "uniqueid": "pbx1-1706420400.3", "userfield": None, "peeraccount": "peer",
    "linkedid": "pbx1-1706420300.0", "sequence": "8",
}  # fmt: skip


def cut(line: str, names: list[str]) -> str:
    """`line` (21 fields) with only the fields of `names`, as cdr_csv would
    write them with fewer options."""
    full = layout(True, True, True)
    row = next(csv.reader(io.StringIO(line.rstrip("\n"))))
    raw = [f'"{v.replace(chr(34), chr(34) * 2)}"' if v or full[i] not in TIMES else "" for i, v in enumerate(row)]
    fields = [raw[full.index(n)] for n in names]
    return ",".join(fields) + "\n"


def check_row(row: dict, expected: dict, names: list[str]) -> None:
    for name in [*CSV16, "uniqueid", "userfield", *NEW_COLUMNS]:
        want = expected[name] if name in names else None
        assert row[name] == want, name
    # `sequence` keys the record beside `linkedid` (not without one).
    keyed = "linkedid" in names and expected["linkedid"]
    assert row["AcctId"] == (int(expected["sequence"]) if keyed else None)
    assert row["cdr_kind"] == "record"
    assert row["leg"] == 0
    assert row["session"] == row["linkedid"]


@pytest.mark.parametrize(
    "options",
    [(False, False, False), (True, False, False), (True, True, False), (False, False, True), (True, True, True)],
    ids=["16", "17", "18", "19", "21"],
)
def test_cdr_csv_golden_each_width(options):
    names = layout(*options)
    data = (cut(LINE_A, names) + cut(LINE_B, names)).encode()
    for fmt in ("asterisk-csv", "auto"):
        df = cdrq.read(data, format=fmt, tz=None)
        assert df.height == 2
        check_row(df.row(0, named=True), EXPECTED_A, names)
        check_row(df.row(1, named=True), EXPECTED_B, names)
        assert df.columns[-3:] == NEW_COLUMNS
        assert df.schema["start"] == pl.Datetime("us")
        assert df.schema["duration"] == pl.Int64


def test_cdr_csv_quirks_numeric_amaflags_zero_time_and_usegmtime():
    line = LINE_A.replace('"DOCUMENTATION"', '"3"').replace('"2024-01-28 10:18:25"', '"0000-00-00 00:00:00"')
    line2 = LINE_B.replace('"BILLING"', '"1"')
    line3 = LINE_B.replace('"BILLING"', '"2"')
    line4 = LINE_B.replace('"BILLING"', '"9"')
    df = cdrq.read((line + line2 + line3 + line4).encode(), format="asterisk-csv", tz="UTC")
    assert df["amaflags"].to_list() == ["DOCUMENTATION", "OMIT", "BILLING", "9"]
    assert df["answer"].to_list()[:2] == [None, None]
    # usegmtime: UTC wall clock, read with tz="UTC"; local: the PBX's zone.
    assert df.schema["start"] == pl.Datetime("us", "UTC")
    local = cdrq.read(LINE_A.encode(), format="asterisk-csv", tz="Europe/Berlin")
    assert str(local["start"][0]) == "2024-01-28 10:18:20+01:00"
    assert df["uniqueid"][0] == "pbx1-1706420300.0"


def test_sample_cdr_custom_template_is_the_default():
    # configs/samples/cdr_custom.conf.sample: CSV_QUOTE on all but `sequence`.
    line = (
        '"""Alice Smith"" <1001>","1001","2000","from-internal","PJSIP/1001-00000001","PJSIP/2000-00000002",'
        '"Dial","PJSIP/2000,30,tT","2024-01-28 10:18:20","2024-01-28 10:18:25","2024-01-28 10:19:00",'
        '"40","35","ANSWERED","3","sales","pbx1-1706420300.0","vip",7\n'
    )
    for fmt in ("asterisk-custom", "auto"):
        row = cdrq.read(line.encode(), format=fmt, tz=None).row(0, named=True)
        for name in EXPECTED_A:
            if name in ("peeraccount", "linkedid"):
                assert row[name] is None
            else:
                assert row[name] == EXPECTED_A[name], name
        assert (row["session"], row["cdr_kind"], row["AcctId"]) == (None, "record", None)


# Asterisk's own configs/cdr_custom.conf (not the sample) quotes with literal
# quotes and escapes nothing: `"${CDR(clid)}","${CDR(src)}",…` — 18 fields, as
# the sample before Asterisk 12 (configs/cdr_custom.conf.sample, CSV_QUOTE).
LITERAL_LINES = (
    b'""Doe, John" <8914>","8914","2000","from-internal","SIP/8914-0820a5e8","SIP/2000-0820f1c0","Dial",'
    b'"SIP/2000|30|tT","2009-01-14 23:53:15","2009-01-14 23:53:17","2009-01-14 23:53:20","5","3","ANSWERED",'
    b'"DOCUMENTATION","","1231977195.2",""\n'
    b'""Alice Smith" <1001>","1001","2000","from-internal","SIP/1001-1","SIP/2000-2","Dial","SIP/2000,30,tT",'
    b'"2009-01-14 23:54:15","2009-01-14 23:54:17","2009-01-14 23:54:20","5","3","ANSWERED","DOCUMENTATION","",'
    b'"1231977255.3",""\n'
    b'"""Bob"" <1002>","1002","2000","from-internal","SIP/1002-1","SIP/2000-2","Dial","SIP/2000,30,tT",'
    b'"2009-01-14 23:55:15","2009-01-14 23:55:17","2009-01-14 23:55:20","5","3","ANSWERED","DOCUMENTATION","",'
    b'"1231977315.4",""\n'
    # No comma in the name, but in lastdata: a part complete in its quotes
    # (`"2009-…"`) never closes the run before it.
    b'""Smith" <8914>","8914","100","from-internal","SIP/8914-1","SIP/100-2","Dial","SIP/100,30,tT",'
    b'"2009-01-14 23:56:15","2009-01-14 23:56:17","2009-01-14 23:56:20","5","3","ANSWERED","DOCUMENTATION","",'
    b'"1231977375.5",""\n'
)


@pytest.mark.parametrize("fmt", ["asterisk-custom", "auto", "custom-18"])
def test_a_template_quoting_literally_reads_its_values_never_shifted(fmt):
    """A value holding a comma splits into parts RFC 4180 cannot pair: the
    line is rejoined where its parts fit the template one way (before, the
    unquoted-lastdata rule took the extra part: a shifted row)."""
    names = "clid src dst dcontext channel dstchannel lastapp lastdata start answer end duration billsec"
    names += " disposition amaflags accountcode uniqueid userfield"
    columns = cdrq.custom_columns(",".join(f'"${{CDR({n})}}"' for n in names.split()))
    assert len(columns) == 18
    kwargs = {"format": "asterisk-custom", "columns": columns} if fmt == "custom-18" else {"format": fmt}
    df, rejects = cdrq.read(LITERAL_LINES, tz=None, on_error="collect", **kwargs)
    assert len(rejects) == 0
    assert df.select("clid", "caller_name", "src", "dst", "lastdata", "uniqueid").rows() == [
        ('"Doe, John" <8914>', "Doe, John", "8914", "2000", "SIP/2000|30|tT", "1231977195.2"),
        ('"Alice Smith" <1001>', "Alice Smith", "1001", "2000", "SIP/2000,30,tT", "1231977255.3"),
        ('"Bob" <1002>', "Bob", "1002", "2000", "SIP/2000,30,tT", "1231977315.4"),
        ('"Smith" <8914>', "Smith", "8914", "100", "SIP/100,30,tT", "1231977375.5"),
    ]
    assert df["start"].to_list() == [datetime(2009, 1, 14, 23, m, 15) for m in (53, 54, 55, 56)]
    assert df["billsec"].to_list() == [3, 3, 3, 3]


# A clid as Asterisk writes it (`"Name" <number>`, the name may hold commas),
# or a plain value; a template wraps each field in literal quotes, or not.
# (Not a name that starts or ends with a comma: its field's first part
# (`""`) or last (`" <1>"`) is whole in its quotes, which the rejoin takes
# for a field of its own, and it may find one way that is not the writer's.
# Caller names do not start or end so.)
names_with_commas = st.text(alphabet="ab ,", min_size=1, max_size=6).filter(lambda n: n.strip(",") == n)
literal_values = st.one_of(
    st.builds(lambda n, d: f'"{n}" <{d}>', names_with_commas, st.text(alphabet="0123", min_size=1, max_size=3)),
    st.text(alphabet="ab ,/1", max_size=6),
)  # fmt: skip


@settings(max_examples=80, deadline=None)
@given(st.data(), st.integers(1, 5))
def test_literal_quoting_template_reads_back_or_rejects(data, n):
    """Never a shifted row: each record of a template quoting literally reads
    back as written, or is a reject (its parts fit the fields twice, or RFC
    4180 pairs its quotes into another count)."""
    names = ["clid", "src", "dst", "userfield"]
    quoted = data.draw(st.lists(st.booleans(), min_size=4, max_size=4))
    # A bare value with a comma is no field any template can read back; a
    # `src` makes no line blank.
    bare = st.text(alphabet="ab /1", max_size=6)
    fields = [literal_values if q else bare for q in quoted]
    fields[1] = st.text(alphabet="0123", min_size=1, max_size=4)
    rows = [[data.draw(f) for f in fields] for _ in range(n)]
    lines = [",".join(f'"{v}"' if q else v for v, q in zip(row, quoted, strict=True)) for row in rows]
    df, rejects = cdrq.read(("\n".join(lines) + "\n").encode(), format="asterisk-custom", columns=names,
                            on_error="collect", tz=None)  # fmt: skip
    rejected = set(rejects["line"].to_list())
    assert df.height + len(rejected) == n
    kept = iter(df.iter_rows(named=True))
    for i, row in enumerate(rows, start=1):
        if i not in rejected:
            got = next(kept)
            assert [got[k] for k in names] == [v or None for v in row], lines[i - 1]


def test_literal_quotes_that_fit_two_ways_are_a_reject():
    # `"a` and `"a,b","c,b"`, or `"a,"a,b"` and `"c,b"`: the parts fit twice.
    lines = b'"a,"a,b","c,b"\n"ok","x"\n"a, "b", c","x"\n"a,"b,c","d"\n'
    df, rejects = cdrq.read(lines, format="asterisk-custom", columns=["clid", "src"], on_error="collect")
    # The third fits one way: ` "b"` and ` c"` close quotes they did not
    # open; the fourth too: `"d"` is complete in its quotes, a field alone.
    assert df.select("clid", "src").rows() == [("ok", "x"), ('a, "b", c', "x"), ('a,"b,c', "d")]
    assert rejects["line"].to_list() == [1]
    assert "more than one way" in rejects["reason"][0]


def test_cdr_csv_record_with_undoubled_quotes_is_a_reject_not_a_shifted_row():
    # cdr_csv doubles inner quotes (append_string); a literal-quoting template's
    # line forced through asterisk-csv has a part that would shift the fields.
    bad = b'"","""Doe, John"" <8914>","8914","2000","from-internal","SIP/8914-1","SIP/2000-2","Dial","x",'
    good = bad.replace(b'"""Doe, John"" <8914>"', b'"8914"')
    tail = b'"2009-01-14 23:53:15","2009-01-14 23:53:17","2009-01-14 23:53:20",5,3,"ANSWERED","DOCUMENTATION"\n'
    broken = b'"",""Doe, John" <8914>","2000","from-internal","SIP/8914-1","SIP/2000-2","Dial","x",' + tail
    df, rejects = cdrq.read(good + tail + broken, format="asterisk-csv", on_error="collect", tz=None)
    assert df["src"].to_list() == ["8914"]
    assert rejects["line"].to_list() == [2]
    assert "not doubled" in rejects["reason"][0]


def test_a_master_csv_cut_inside_its_first_line_is_told_by_its_second():
    # A copy of a live Master.csv (docs of a Kafka topic): line 1 is a tail.
    data = (
        b'2018-09-07 11:05:20","2018-09-07 11:05:20",0,0,"ANSWERED","DOCUMENTATION","1536293101.12461",""\n'
        b'"","2889","09243820431","pre-rec","""2889"" <2889>","SIP/2889-0000098e","Local/0924@default-05a6;1",'
        b'"Dial","Local/09243820431@default,30,t","2018-09-07 11:05:01","2018-09-07 11:05:20",'
        b'"2018-09-07 11:05:20",19,0,"ANSWERED","DOCUMENTATION","1536293101.12458",""\n'
    )
    df, rejects = cdrq.read(data, on_error="collect", tz=None)
    assert df.select("src", "dst", "caller_name", "uniqueid").rows() == [
        ("2889", "09243820431", "2889", "1536293101.12458")
    ]
    assert rejects["line"].to_list() == [1]
    with pytest.raises(cdrq.ParseError, match="not doubled, which cdr_csv never writes"):
        cdrq.read(data, tz=None)
    # Cut where line 1 leaves a quote open: still told by line 2.
    cut = data[data.index(b'"ANSWERED"') + 9 :]
    assert cut.startswith(b'","DOCUMENTATION"')
    frame, rejects = cdrq.read(cut, on_error="collect", tz=None)
    assert frame["uniqueid"].to_list() == ["1536293101.12458"] and rejects["line"].to_list() == [1]


def test_custom_columns_named_by_the_caller_and_the_helper():
    mapping = (
        "Master.csv => ${CSV_QUOTE(${CDR(start)})},${CSV_QUOTE(${CDR(src)})},${CSV_QUOTE(${CDR(dst)})},"
        "${CSV_QUOTE(${CDR(billsec)})},${CDR(linkedid)},${CSV_QUOTE(${CDR(callid)})},${CDR(amaflags,u)}"
    )
    columns = cdrq.custom_columns(mapping)
    assert columns == ["start", "src", "dst", "billsec", "linkedid", "callid", "amaflags"]
    data = b'"2024-01-28 10:18:20","1001","2000","35",pbx1-1.0,"abc@host",2\n"2024-01-28 10:20:00","1001",,"0",,"",3\n'
    df = cdrq.read(data, format="asterisk-custom", columns=columns, tz=None)
    assert df["start"].to_list() == [datetime(2024, 1, 28, 10, 18, 20), datetime(2024, 1, 28, 10, 20)]
    assert df["dst"].to_list() == ["2000", None]
    assert df["billsec"].to_list() == [35, 0]
    assert df["callid"].to_list() == ["abc@host", None]
    assert df.schema["callid"] == pl.String
    assert df["session"].to_list() == ["pbx1-1.0", None]
    assert df["amaflags"].to_list() == ["BILLING", "DOCUMENTATION"]
    assert df["clid"].to_list() == [None, None]
    with pytest.raises(cdrq.CdrqError, match="duplicate"):
        cdrq.read(data, format="asterisk-custom", columns=["src", "src"])


def test_custom_columns_keep_fractional_and_unparsed_fields_as_text():
    # A site template (dynax60/logstash-asterisk's README): func_cdr.c writes
    # `duration,f` with "%lf" and `start,u` as epoch seconds.
    mapping = (
        "Master.csv => ${CSV_QUOTE(${CDR(src)})},${CSV_QUOTE(${CDR(start,u)})},"
        "${CSV_QUOTE(${CDR(duration,f)})},${CSV_QUOTE(${CDR(billsec, f)})},${CDR(disposition,u)},${CDR(amaflags,u)}"
    )
    columns = cdrq.custom_columns(mapping)
    assert columns == ["src", "start_u", "duration_f", "billsec_f", "disposition_u", "amaflags"]
    data = b'"1001","1706420300.000000","40.012000","35.004000",8,2\n'
    row = cdrq.read(data, format="asterisk-custom", columns=columns, tz=None).row(0, named=True)
    assert (row["src"], row["start_u"], row["duration_f"], row["billsec_f"]) == (
        "1001",
        "1706420300.000000",
        "40.012000",
        "35.004000",
    )
    assert (row["disposition_u"], row["amaflags"]) == ("8", "BILLING")
    assert row["duration"] is row["start"] is row["disposition"] is None


def test_a_custom_template_reads_alike_in_read_scan_convert_and_the_cli(tmp_path):
    # `columns=` is asterisk-custom's alone: `auto` takes it as that format,
    # any other format refuses it, and scan, convert and the CLI read the
    # template as `read` does (pushdown and projection included).
    columns = ["start", "src", "dst", "billsec", "linkedid", "sequence", "callid"]
    data = (
        b'"2024-01-28 10:18:20","1001","2000","35","pbx1-1.0","7","abc@host"\n'
        b'"2024-01-28 10:20:00","1002","2001","0","pbx1-2.0","8",""\n'
        b'"2024-01-29 09:00:00","1001","2002","61","pbx1-3.0","9","def@host"\n'
    )
    path = tmp_path / "Master.csv"
    path.write_bytes(data)
    whole = cdrq.read(path, columns=columns, tz=None)
    assert whole.equals(cdrq.read(path, format="asterisk-custom", columns=columns, tz=None))
    assert whole["callid"].to_list() == ["abc@host", None, "def@host"]
    assert cdrq.scan(path, columns=columns, tz=None).collect().equals(whole)
    queried = cdrq.query(cdrq.scan(path, columns=columns, tz=None), "caller=1001&minDur=1").collect()
    assert queried.select("src", "dst").rows() == [("1001", "2000"), ("1001", "2002")]
    counts = cdrq.convert(path, tmp_path / "ds", columns=columns, tz=None)
    assert counts["written"] == 3
    assert sorted(cdrq.read(tmp_path / "ds")["callid"].drop_nulls().to_list()) == ["abc@host", "def@host"]
    with pytest.raises(cdrq.CdrqError, match="takes none"):
        cdrq.read(path, format="ucm-csv", columns=columns)
    with pytest.raises(cdrq.CdrqError, match="takes none"):
        cdrq.scan(path, format="asterisk-csv", columns=columns)
    with pytest.raises(cdrq.CdrqError, match="list of column names"):
        cdrq.read(path, columns="start,src")
    run = [sys.executable, "-m", "cdrq", "query", "--library", "--tz", "UTC", "--columns", ",".join(columns)]
    out = subprocess.run([*run, str(path), "caller=1001&format=csv"], capture_output=True, text=True, check=True)
    assert len(out.stdout.strip().splitlines()) == 3  # the header and two records
    mapping = "Master.csv => " + ",".join(f"${{CSV_QUOTE(${{CDR({c})}})}}" for c in columns)
    out = subprocess.run([*run[:-2], "--columns", mapping, str(path), "caller=1002"], capture_output=True, text=True)
    assert out.returncode == 0 and "1002" in out.stdout
    bad = subprocess.run([*run[:-1], "src,,dst", str(path), "caller=1"], capture_output=True, text=True)
    assert bad.returncode == 2 and "empty column name" in bad.stderr


def test_rejects_compression_many_files_and_scan(tmp_path):
    bad = LINE_B.replace('"30","0"', '"x","0"')
    short = '"a","b"\n'
    data = (LINE_A + bad + short + LINE_B).encode()
    df, rejects = cdrq.read(data, format="asterisk-csv", on_error="collect", tz=None)
    assert df.height == 2
    assert rejects["line"].to_list() == [2, 3]
    assert "duration is not an integer" in rejects["reason"][0]
    assert "16 to 21 fields" in rejects["reason"][1]
    with pytest.raises(cdrq.ParseError):
        cdrq.read(data, format="asterisk-csv")
    (tmp_path / "a.csv.gz").write_bytes(gzip.compress((LINE_A + LINE_B).encode()))
    (tmp_path / "b.csv").write_bytes(cut(LINE_A, CSV16).encode())
    both = cdrq.read(str(tmp_path), tz=None)
    assert both.height == 3
    assert both["linkedid"].to_list() == ["pbx1-1706420300.0", "pbx1-1706420300.0", None]
    scanned = cdrq.scan(str(tmp_path), tz=None).select("src", "dst", "session").collect()
    assert scanned.to_dicts() == both.select("src", "dst", "session").to_dicts()


def test_convert_keeps_each_leg(tmp_path):
    # The legs share `linkedid` (`session`); `sequence` (`AcctId`) tells them apart.
    (tmp_path / "Master.csv").write_text(LINE_A + LINE_B)
    counts = cdrq.convert(str(tmp_path / "Master.csv"), tmp_path / "ds")
    assert (counts["written"], counts["duplicates"]) == (2, 0)
    again = cdrq.convert(str(tmp_path / "Master.csv"), tmp_path / "ds")
    assert (again["written"], again["duplicates"]) == (0, 2)
    assert sorted(cdrq.read(str(tmp_path / "ds"))["AcctId"].to_list()) == [7, 8]


def test_auto_keeps_ucm_files():
    ucm = (
        '1201,,6039,6011,from-internal,"GVC Test" <6039>,PJSIP/6039-0000069e,PJSIP/6011-0000069f,Dial,'
        '"PJSIP/6011/sip:6011@,30",2015-11-10 17:58:47,,2015-11-10 17:58:51,4,0,NO ANSWER,DOCUMENTATION,'
        "1447207127.4182,Internal,6039,6011,s,GVC Test,,,,1447207127558984-6039,6039,DIAL,, \n"
    )
    assert cdrq.read(ucm.encode())["AcctId"].to_list() == [1201]
    # A quoted UCM header is no Asterisk record.
    header = ",".join(f'"{n}"' for n in ["AcctId", *CSV16]) + "\n"
    assert cdrq.read((header + ucm.split(",DOCUMENTATION,")[0] + ",DOCUMENTATION\n").encode()).height == 1


# Property: random records in random cdr_csv layouts / custom orders read back equal.
text = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")) | st.sampled_from(',"\n'))
stamps = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2037, 1, 1)).map(
    lambda d: d.replace(microsecond=0)
)
values = {
    **{n: text for n in [*CSV16, "uniqueid", "userfield", *NEW_COLUMNS]},
    "sequence": st.integers(0, 2**31).map(str),
    "start": stamps,
    "answer": st.none() | stamps,
    "end": stamps,
    "duration": st.integers(0, 10**9),
    "billsec": st.integers(0, 10**9),
    "amaflags": st.sampled_from(["OMIT", "BILLING", "DOCUMENTATION", "1", "2", "3", "0"]),
}
NAMES = {"1": "OMIT", "2": "BILLING", "3": "DOCUMENTATION"}


def quote(v) -> str:
    if v is None:
        return ""
    if isinstance(v, datetime):
        v = v.strftime("%Y-%m-%d %H:%M:%S")
    return '"' + str(v).replace('"', '""') + '"'


def expect(name, v):
    if name == "amaflags":
        return NAMES.get(v, v)
    return v if v != "" else None


@settings(max_examples=60, deadline=None)
@given(st.data(), st.tuples(st.booleans(), st.booleans(), st.booleans()), st.integers(1, 8))
def test_cdr_csv_round_trip(data, options, n):
    names = layout(*options)
    if names.count("uniqueid") + names.count("userfield") == 1:
        names = [("uniqueid" if x == "userfield" else x) for x in names]
    rows = [{k: data.draw(values[k]) for k in names} for _ in range(n)]
    raw = "".join(",".join(quote(r[k]) for k in names) + "\n" for r in rows).encode()
    df = cdrq.read(raw, format="asterisk-csv", tz=None, threads=2)
    assert df.height == n
    for got, row in zip(df.iter_rows(named=True), rows, strict=True):
        for k in names:
            assert got[k] == expect(k, row[k]), k
        assert got["session"] == expect("linkedid", row.get("linkedid", ""))
        keyed = "sequence" in row and row["linkedid"]
        assert got["AcctId"] == (int(row["sequence"]) if keyed else None)


@settings(max_examples=60, deadline=None)
@given(st.data(), st.permutations([*values, "x_custom"]), st.integers(1, 8))
def test_cdr_custom_round_trip(data, order, n):
    columns = order[: data.draw(st.integers(1, len(order)))]
    # A lone empty field would be a blank line, which no template writes.
    gen = {**values, "x_custom": text, "answer": values["answer"] if len(columns) > 1 else stamps}
    rows = [{k: data.draw(gen[k]) for k in columns} for _ in range(n)]
    raw = "".join(",".join(quote(r[k]) for k in columns) + "\n" for r in rows).encode()
    df = cdrq.read(raw, format="asterisk-custom", columns=columns, tz=None)
    assert df.height == n
    for got, row in zip(df.iter_rows(named=True), rows, strict=True):
        for k in columns:
            assert got[k] == expect(k, row[k]), k
        keyed = "sequence" in row and row.get("linkedid")
        assert got["AcctId"] == (int(row["sequence"]) if keyed else None)
        assert got["session"] == expect("linkedid", row.get("linkedid", ""))


# FreePBX's CDR report export (format="freepbx-csv").
# Old form, FreePBX/cdr functions.inc.php `cdr_export_csv` (FreePBX 2.x, commit
# 03c82757b370056d6201ac3327f63b9b62708685): a bare header of 16 names, then
# each value as it is, "enclosed in double-quotes" only if it holds a comma
# (inner quotes left as they are), fields joined with ",", lines with "\n".
FREEPBX_OLD = (
    "calldate,clid,src,dst,dcontext,channel,dstchannel,lastapp,lastdata,duration,billsec,disposition,amaflags,"
    "accountcode,uniqueid,userfield\n"
    '2024-01-28 10:18:20,""Doe, John" <89149825084>",89149825084,2000,from-trunk,SIP/trunk-00000001,'
    'SIP/2000-00000002,Dial,"SIP/2000,30,tT",40,35,ANSWERED,3,sales,pbx1-1706420300.0,vip\n'
    '2024-01-28 10:20:00,"Bob" <1001>,1001,2001,from-internal,SIP/1001-00000003,,Queue,"support,t,,,60",'
    "30,0,NO ANSWER,2,,1706420400.3,\n"
)
# Newer form, FreePBX/cdr functions.inc.php `cdr_export_csv` (FreePBX 13+):
# PHP's fputcsv (RFC 4180: a field with a space, comma or quote is quoted,
# inner quotes doubled) under this 26-name header.
FREEPBX_HEADER = (
    "calldate,clid,src,dst,dcontext,channel,dstchannel,lastapp,lastdata,duration,billsec,disposition,amaflags,"
    "accountcode,uniqueid,userfield,did,cnum,cnam,outbound_cnum,outbound_cnam,dst_cnam,recordingfile,linkedid,"
    "peeraccount,sequence"
).split(",")
FREEPBX_NEW = (
    ",".join(FREEPBX_HEADER) + "\n"
    '"2024-01-28 10:18:20","""Doe, John"" <89149825084>",89149825084,2000,from-trunk,SIP/trunk-00000001,'
    'SIP/2000-00000002,Dial,"SIP/2000,30,tT",40,35,ANSWERED,3,sales,pbx1-1706420300.0,vip,5551234,89149825084,'
    '"Doe, John",,,,in-2000-89149825084-20240128-101820-1706420300.0.wav,pbx1-1706420300.0,,7\n'
    '"2024-01-28 10:20:00","""Bob"" <1001>",1001,2001,from-internal,SIP/1001-00000003,,Queue,"support,t,,,60",'
    '30,0,"NO ANSWER",2,,1706420400.3,,,1001,Bob,,,,,pbx1-1706420300.0,peer,8\n'
)
FREEPBX_A = {
    "start": datetime(2024, 1, 28, 10, 18, 20), "end": datetime(2024, 1, 28, 10, 19, 0),
    "answer": datetime(2024, 1, 28, 10, 18, 25), "clid": '"Doe, John" <89149825084>', "caller_name": "Doe, John",
    "src": "89149825084", "dst": "2000", "dcontext": "from-trunk", "channel": "SIP/trunk-00000001",
    "dstchannel": "SIP/2000-00000002", "lastapp": "Dial", "lastdata": "SIP/2000,30,tT", "duration": 40,
    "billsec": 35, "disposition": "ANSWERED", "amaflags": "DOCUMENTATION", "accountcode": "sales",
    "uniqueid": "pbx1-1706420300.0", "userfield": "vip",
}  # fmt: skip
FREEPBX_B = {
    "start": datetime(2024, 1, 28, 10, 20, 0), "end": datetime(2024, 1, 28, 10, 20, 30), "answer": None,
    "clid": '"Bob" <1001>', "caller_name": "Bob", "src": "1001", "dst": "2001", "dcontext": "from-internal",
    "channel": "SIP/1001-00000003", "dstchannel": None, "lastapp": "Queue", "lastdata": "support,t,,,60",
    "duration": 30, "billsec": 0, "disposition": "NO ANSWER", "amaflags": "BILLING", "accountcode": None,
    "uniqueid": "1706420400.3", "userfield": None,
}  # fmt: skip
FREEPBX_NEW_A = {
    "did": "5551234", "cnum": "89149825084", "cnam": "Doe, John", "outbound_cnum": None, "outbound_cnam": None,
    "dst_cnam": None, "recordingfile": "in-2000-89149825084-20240128-101820-1706420300.0.wav",
    "recordfiles": "in-2000-89149825084-20240128-101820-1706420300.0.wav", "linkedid": "pbx1-1706420300.0",
    "session": "pbx1-1706420300.0", "peeraccount": None, "sequence": "7", "AcctId": 7,
}  # fmt: skip
FREEPBX_NEW_B = {
    "did": None, "cnum": "1001", "cnam": "Bob", "outbound_cnum": None, "outbound_cnam": None, "dst_cnam": None,
    "recordingfile": None, "recordfiles": None, "linkedid": "pbx1-1706420300.0", "session": "pbx1-1706420300.0",
    "peeraccount": "peer", "sequence": "8", "AcctId": 8,
}  # fmt: skip


def test_freepbx_old_export_golden_comma_in_name_reassembled():
    for fmt in ("freepbx-csv", "auto"):
        df = cdrq.read(FREEPBX_OLD.encode(), format=fmt, tz=None)
        assert df.height == 2
        for row, want in zip(df.iter_rows(named=True), [FREEPBX_A, FREEPBX_B], strict=True):
            for name, value in want.items():
                assert row[name] == value, name
            assert (row["cdr_kind"], row["leg"], row["session"], row["AcctId"]) == ("record", 0, None, None)
            assert (row["linkedid"], row["sequence"], row["peeraccount"]) == (None, None, None)
        assert "did" not in df.columns  # only the header's columns beyond the data model
        assert df.schema["end"] == pl.Datetime("us")


def test_freepbx_new_export_golden():
    for fmt in ("freepbx-csv", "auto"):
        df = cdrq.read(FREEPBX_NEW.encode(), format=fmt, tz=None)
        assert df.height == 2
        for row, want in zip(
            df.iter_rows(named=True), [{**FREEPBX_A, **FREEPBX_NEW_A}, {**FREEPBX_B, **FREEPBX_NEW_B}], strict=True
        ):
            for name, value in want.items():
                assert row[name] == value, name
            assert row["cdr_kind"] == "record"
        assert df.columns[-10:] == ["peeraccount", "linkedid", "sequence", *FREEPBX_HEADER[16:23]]
    # Header-driven: any subset, any order; a given `end`/`answer` is not derived.
    names = ["uniqueid", "billsec", "end", "calldate", "src"]
    data = ",".join(names) + "\n1.0,5,2024-01-28 10:19:00,2024-01-28 10:18:20,1001\n"
    row = cdrq.read(data.encode(), format="freepbx-csv", tz=None).row(0, named=True)
    assert (row["start"], row["end"], row["answer"]) == (
        datetime(2024, 1, 28, 10, 18, 20), datetime(2024, 1, 28, 10, 19), datetime(2024, 1, 28, 10, 18, 55)
    )  # fmt: skip
    assert row["duration"] is None


def test_freepbx_old_export_ambiguous_row_is_a_reject_never_a_shift():
    # `""a, b" <1>",","` is `"a, b" <1>` then `,`, or `"a, b" <1>",` then `"`.
    header = "calldate,clid,src,dst,duration,billsec\n"
    ok = '2024-01-28 10:18:20,""Doe, John" <1>",1,2,40,35\n'
    ambiguous = '2024-01-28 10:18:21,""a, b" <1>",",",2,40,35\n'
    none = "2024-01-28 10:18:22,a,b,c,d,40,35\n"
    data = (header + ok + ambiguous + none + ok).encode()
    df, rejects = cdrq.read(data, format="freepbx-csv", on_error="collect", tz=None)
    assert df["clid"].to_list() == ['"Doe, John" <1>'] * 2
    assert rejects["line"].to_list() == [3, 4]
    assert "more than one way to rejoin" in rejects["reason"][0]
    assert "no way to rejoin" in rejects["reason"][1]
    assert rejects["raw"].to_list() == [ambiguous.rstrip("\n"), none.rstrip("\n")]
    with pytest.raises(cdrq.ParseError, match=r":3:1: 8 comma-separated parts for 6 columns"):
        cdrq.read(data, format="freepbx-csv")
    short = cdrq.read((header + "2024-01-28 10:18:20,1\n").encode(), format="freepbx-csv", on_error="collect")[1]
    assert "expected 6 fields as in the header, found 2" in short["reason"][0]
    with pytest.raises(cdrq.ParseError, match="expected a header of Asterisk CDR names"):
        cdrq.read(b"2024-01-28 10:18:20,1\n", format="freepbx-csv")
    assert cdrq.read(b"", format="freepbx-csv").height == 0


def test_cdr_table_columns_through_asterisk_custom():
    # The `cdr` table of FreePBX's asteriskcdrdb (calldate, …) and of
    # cdr_pgsql (start/answer/end), written as Polars' write_csv writes it.
    table = pl.DataFrame({
        "calldate": [datetime(2024, 1, 28, 10, 18, 20)], "clid": ['"Doe, John" <8914>'], "src": ["8914"],
        "duration": [40], "billsec": [35], "amaflags": [3], "cnam": ["Doe, John"], "recordingfile": ["r.wav"],
        "linkedid": ["pbx1-1.0"], "sequence": [7], "did": ["555"],
    })  # fmt: skip
    row = cdrq.read(table.write_csv(include_header=False).encode(), format="asterisk-custom",
                    columns=table.columns, tz=None).row(0, named=True)  # fmt: skip
    assert (row["start"], row["end"], row["answer"]) == (
        datetime(2024, 1, 28, 10, 18, 20), datetime(2024, 1, 28, 10, 19), datetime(2024, 1, 28, 10, 18, 25)
    )  # fmt: skip
    assert (row["clid"], row["caller_name"], row["cnam"]) == ('"Doe, John" <8914>', "Doe, John", "Doe, John")
    assert (row["recordfiles"], row["recordingfile"], row["did"]) == ("r.wav", "r.wav", "555")
    assert (row["amaflags"], row["session"], row["AcctId"]) == ("DOCUMENTATION", "pbx1-1.0", 7)
    assert "calldate" not in row
    pgsql = pl.DataFrame({"start": ["2024-01-28 10:18:20"], "answer": [None], "end": ["2024-01-28 10:19:00"],
                          "billsec": [35], "calldate": ["x"]})  # fmt: skip
    row = cdrq.read(pgsql.write_csv(include_header=False).encode(), format="asterisk-custom",
                    columns=["Start", "ANSWER", "end", "billsec", "calldate"], tz=None).row(0, named=True)  # fmt: skip
    # A given (empty) answer stays empty; beside a `start`, `calldate` is text.
    assert (row["start"], row["answer"], row["calldate"]) == (datetime(2024, 1, 28, 10, 18, 20), None, "x")
    with pytest.raises(cdrq.CdrqError, match="duplicate"):
        cdrq.read(b"", format="asterisk-custom", columns=["calldate", "CallDate"])


def test_real_data_quirks():
    # An unquoted empty field inside a quoted line, a zero date, a prefixed uniqueid.
    line = LINE_A.replace('"2024-01-28 10:18:25"', '"0000-00-00 00:00:00"').replace('"vip"', "")
    row = cdrq.read(line.encode(), format="asterisk-csv", tz=None).row(0, named=True)
    assert (row["answer"], row["userfield"], row["uniqueid"]) == (None, None, "pbx1-1706420300.0")
    assert row["end"] == EXPECTED_A["end"]  # given, not derived
    # Non-UTF-8 bytes in a name: one reject for that record, not the file.
    latin = LINE_B.replace('"1001","2001"', '"M\xfcller","2001"').encode("latin-1")
    data = LINE_A.encode() + latin + LINE_A.encode()
    df, rejects = cdrq.read(data, format="asterisk-csv", on_error="collect", tz=None)
    assert (df.height, rejects["line"].to_list(), rejects["reason"].to_list()) == (2, [2], ["invalid UTF-8"])
    assert rejects["column"][0] == len('"","M') + 1  # the byte itself
    with pytest.raises(cdrq.ParseError, match=r":2:\d+: invalid UTF-8"):
        cdrq.read(data, format="asterisk-csv")
    assert cdrq.read(data, format="asterisk-csv", encoding="latin-1", tz=None)["src"][1] == "Müller"
    lossy = cdrq.read(data, format="asterisk-csv", encoding="utf8-lossy", tz=None)
    assert lossy["src"][1] == "M\ufffdller"
    # The same in a FreePBX export.
    fpbx = FREEPBX_OLD.replace("Bob", "J\xf6rg").encode("latin-1")
    df, rejects = cdrq.read(fpbx, format="freepbx-csv", on_error="collect", tz=None)
    assert (df.height, rejects["line"].to_list()) == (1, [3])
    assert cdrq.read(fpbx, encoding="latin-1", tz=None)["caller_name"].to_list() == ["Doe, John", "Jörg"]
    # A time a table wrote ISO-style; an out-of-range derived time is a reject.
    iso = b"2024-01-28T10:18:20.000000,9\n1970-01-01 00:00:00,99999999999999\n"
    df, rejects = cdrq.read(
        iso, format="asterisk-custom", columns=["calldate", "duration"], on_error="collect", tz=None
    )
    assert df["end"].to_list() == [datetime(2024, 1, 28, 10, 18, 29)]
    assert rejects["reason"].to_list() == ["end (start + duration) is out of range"]


def test_freepbx_many_files_compression_scan_pushdown_convert(tmp_path):
    (tmp_path / "a.csv.gz").write_bytes(gzip.compress(FREEPBX_NEW.encode()))
    (tmp_path / "b.csv").write_text(FREEPBX_OLD)
    both = cdrq.read(str(tmp_path), tz=None, include_source=True)
    assert both.height == 4
    assert both["caller_name"].to_list() == ["Doe, John", "Bob", "Doe, John", "Bob"]
    scanned = cdrq.scan(str(tmp_path), tz=None)
    picked = cdrq.query(scanned, "caller=1001&minDur=0").select("src", "dst", "end", "session").collect()
    assert picked.to_dicts() == [
        {"src": "1001", "dst": "2001", "end": datetime(2024, 1, 28, 10, 20, 30), "session": "pbx1-1706420300.0"},
        {"src": "1001", "dst": "2001", "end": datetime(2024, 1, 28, 10, 20, 30), "session": None},
    ]
    assert scanned.select("answer").collect()["answer"].to_list() == both["answer"].to_list()
    (tmp_path / "bad.csv").write_text(FREEPBX_NEW.replace(",40,35,", ",4x,35,"))
    with pytest.raises(cdrq.ParseError, match="duration is not an integer"):
        cdrq.scan(str(tmp_path / "bad.csv"), format="freepbx-csv").collect()
    counts = cdrq.convert(str(tmp_path / "a.csv.gz"), tmp_path / "ds")
    assert (counts["written"], counts["duplicates"]) == (2, 0)
    assert cdrq.convert(str(tmp_path / "a.csv.gz"), tmp_path / "ds")["duplicates"] == 2
    assert sorted(cdrq.read(str(tmp_path / "ds"))["AcctId"].to_list()) == [7, 8]


# Property: random records in both FreePBX forms read back equal.
freepbx_values = {
    **{n: text for n in FREEPBX_HEADER},
    "calldate": stamps,
    "duration": st.integers(0, 10**6),
    "billsec": st.integers(0, 10**6),
    "amaflags": values["amaflags"],
    "sequence": values["sequence"],
}


def freepbx_expected(row: dict) -> dict:
    """What a FreePBX row reads as: `calldate` is `start`, `end` and
    `answer` derived (README "Asterisk")."""
    want = {("start" if k == "calldate" else k): expect(k, v) for k, v in row.items()}
    if "duration" in row:
        end = row["calldate"] + timedelta(seconds=row["duration"])
        want["end"] = end
        if "billsec" in row:
            want["answer"] = end - timedelta(seconds=row["billsec"]) if row["billsec"] > 0 else None
    return want


@settings(max_examples=60, deadline=None)
@given(st.data(), st.permutations(FREEPBX_HEADER[1:]), st.integers(1, 8))
def test_freepbx_new_form_round_trip(data, order, n):
    names = order[: data.draw(st.integers(0, len(order)))]
    names.insert(data.draw(st.integers(0, len(names))), "calldate")
    rows = [{k: data.draw(freepbx_values[k]) for k in names} for _ in range(n)]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")  # RFC 4180 as PHP's fputcsv
    writer.writerow(names)
    for row in rows:
        writer.writerow([v.strftime("%Y-%m-%d %H:%M:%S") if isinstance(v, datetime) else v for v in row.values()])
    df = cdrq.read(out.getvalue().encode(), format="freepbx-csv", tz=None, threads=2)
    assert df.height == n
    for got, row in zip(df.iter_rows(named=True), rows, strict=True):
        for k, v in freepbx_expected(row).items():
            assert got[k] == v, k
        assert got["session"] == expect("linkedid", row.get("linkedid", ""))


# Old-form values: caller IDs with and without commas (quotes as FreePBX
# leaves them), lastdata with commas, random text of commas and spaces. Not
# random quote soup: a line whose quotes RFC 4180 pairs into the header's
# width another way reads as RFC 4180 does (README "Asterisk").
old_text = st.one_of(
    st.sampled_from(['"Doe, John" <1001>', '"Bob" <1001>', '"A, B, C" <1>', "SIP/2000,30,tT", "a,b", ",", "x"]),
    st.text(alphabet="ab ,", max_size=8),
)


def old_form(value) -> str:
    value = value.strftime("%Y-%m-%d %H:%M:%S") if isinstance(value, datetime) else str(value)
    return f'"{value}"' if "," in value else value


def groupings(parts: list[str], width: int) -> int:
    """Brute force: the ways to group `parts` into `width` fields, a run of
    two or more parts opening and closing with a quote (capped at 2)."""
    if not parts:
        return int(width == 0)
    if width == 0:
        return 0
    ways = groupings(parts[1:], width - 1)
    if parts[0].startswith('"'):
        for k in range(1, len(parts)):
            if parts[k].endswith('"'):
                ways += groupings(parts[k + 1 :], width - 1)
    return min(ways, 2)


@settings(max_examples=80, deadline=None)
@given(st.data(), st.integers(1, 6))
def test_freepbx_old_form_reads_back_or_rejects(data, n):
    names = FREEPBX_HEADER[:16]
    old_values = {**freepbx_values, **{k: old_text for k in ["clid", "lastdata", "userfield", "dcontext"]}}
    old_values |= {k: st.text(alphabet="ab1-/.", max_size=6) for k in names if old_values[k] is text}
    rows = [{k: data.draw(old_values[k]) for k in names} for _ in range(n)]
    lines = [",".join(old_form(v) for v in row.values()) for row in rows]
    df, rejects = cdrq.read(("\n".join([",".join(names), *lines]) + "\n").encode(), format="freepbx-csv",
                            on_error="collect", tz=None)  # fmt: skip
    rejected = set(rejects["line"].to_list())
    assert df.height + len(rejected) == n
    kept = iter(df.iter_rows(named=True))
    for i, (row, line) in enumerate(zip(rows, lines, strict=True), start=2):
        if i in rejected:
            # Never a silent shift: a reject only where the parts fit twice.
            assert groupings(line.split(","), len(names)) == 2, line
            continue
        got = next(kept)
        for k, v in freepbx_expected(row).items():
            assert got[k] == v, (k, line)


# Property: the same queries select the same records over the UCM's and
# Asterisk's rendering of the same calls.
names_of = st.text(alphabet="AaBbZü ,", max_size=8).map(str.strip)
digits = st.text(alphabet="0123456789", min_size=1, max_size=5)
calls = st.fixed_dictionaries({
    "src": digits, "dst": digits, "name": names_of,
    "start": st.datetimes(datetime(2024, 1, 1), datetime(2024, 1, 3)).map(lambda d: d.replace(microsecond=0)),
    "duration": st.integers(0, 600), "ringing": st.integers(0, 60),
    "disposition": st.sampled_from(["ANSWERED", "NO ANSWER", "BUSY", "FAILED"]),
})  # fmt: skip
patterns = st.lists(st.text(alphabet="0123", min_size=1, max_size=3), min_size=1, max_size=2).map(",".join)
stamp = st.datetimes(datetime(2024, 1, 1), datetime(2024, 1, 3)).map(lambda d: d.strftime("%Y-%m-%dT%H:%M:%S"))
query_parts = [
    ("caller", patterns), ("callee", patterns), ("startTime", stamp), ("endTime", stamp),
    ("minDur", st.integers(0, 300).map(str)), ("maxDur", st.integers(0, 300).map(str)),
    ("status", st.sampled_from(["answered", "noanswer", "busy,failed"])),
    ("callerName", st.sampled_from(["a", "Z", "ü"])),
    ("numRecords", st.integers(0, 5).map(str)), ("offset", st.integers(0, 3).map(str)), ("order", st.just("desc")),
]  # fmt: skip


def renderings(calls: list[dict]) -> tuple[bytes, bytes]:
    """The calls as a UCM CDR API CSV (with a header) and as cdr_csv's Master.csv (21 fields)."""
    ucm, asterisk = io.StringIO(), io.StringIO()
    ucm_writer = csv.writer(ucm, lineterminator="\n")
    ucm_names = ["AcctId", "src", "dst", "clid", "caller_name", "start", "answer", "end", "duration", "billsec",
                 "disposition", "session"]  # fmt: skip
    ucm_writer.writerow(ucm_names)
    for i, c in enumerate(calls):
        billsec = max(c["duration"] - c["ringing"], 0) if c["disposition"] == "ANSWERED" else 0
        end = c["start"] + timedelta(seconds=c["duration"])
        answer = end - timedelta(seconds=billsec) if billsec else None
        clid = f'"{c["name"]}" <{c["src"]}>' if c["name"] else c["src"]
        session = f"pbx1-{1706420300 + i // 2}.0"  # two legs a call
        times = [t.strftime("%Y-%m-%d %H:%M:%S") if t else "" for t in (c["start"], answer, end)]
        ucm_writer.writerow([i, c["src"], c["dst"], clid, c["name"], *times, c["duration"], billsec,
                             c["disposition"], session])  # fmt: skip
        fields = {"accountcode": "", "src": c["src"], "dst": c["dst"], "dcontext": "from-internal", "clid": clid,
                  "channel": "PJSIP/1-1", "dstchannel": "", "lastapp": "Dial", "lastdata": "x,y", "start": times[0],
                  "answer": times[1], "end": times[2], "duration": c["duration"], "billsec": billsec,
                  "disposition": c["disposition"], "amaflags": "3", "uniqueid": f"{i}.0", "userfield": "",
                  "peeraccount": "", "linkedid": session, "sequence": i}  # fmt: skip
        row = [quote(fields[k]) if fields[k] != "" or k not in TIMES else "" for k in layout(True, True, True)]
        asterisk.write(",".join(row) + "\n")
    return ucm.getvalue().encode(), asterisk.getvalue().encode()


@settings(max_examples=80, deadline=None)
@given(st.lists(calls, max_size=10), st.data())
def test_queries_agree_over_ucm_and_asterisk(calls, data):
    pieces = [f"{k}={data.draw(s)}" for k, s in query_parts if data.draw(st.booleans())]
    qs = "&".join(data.draw(st.permutations(pieces)))
    ucm_bytes, asterisk_bytes = renderings(calls)
    ucm = cdrq.read(ucm_bytes, format="ucm-csv", tz="UTC")
    asterisk = cdrq.read(asterisk_bytes, format="asterisk-csv", tz="UTC")
    columns = ["AcctId", "src", "dst", "clid", "caller_name", "start", "answer", "end", "duration", "billsec",
               "disposition", "session", "cdr_kind"]  # fmt: skip
    assert asterisk.select(columns).equals(ucm.select(columns))
    assert cdrq.query(asterisk, qs).select(columns).equals(cdrq.query(ucm, qs).select(columns))
