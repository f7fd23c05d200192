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
from datetime import datetime

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
