"""The UCM CDR API CSV reader (rust/src/read/csv.rs) on the vendor samples
and on each quirk of the format."""

from __future__ import annotations

import io
import json
import pathlib
from datetime import datetime, timezone

import polars as pl
import pytest

import cdrq
from cdrq.read import REJECT_SCHEMA

BASE_COLUMNS = [
    "AcctId", "accountcode", "src", "dst", "dcontext", "clid", "channel", "dstchannel", "lastapp",
    "lastdata", "start", "answer", "end", "duration", "billsec", "disposition", "amaflags", "uniqueid",
    "userfield", "channel_ext", "dstchannel_ext", "service", "caller_name", "recordfiles", "dstanswer",
    "chanext", "dstchanext", "session", "action_owner", "action_type", "src_trunk_name", "dst_trunk_name",
]  # fmt: skip
INT_COLUMNS = {"AcctId", "duration", "billsec"}
TIME_COLUMNS = {"start", "answer", "end"}

FW11_ROW = (
    '1201,,6039,6011,from-internal,"GVC Test" <6039>,PJSIP/6039-0000069e,PJSIP/6011-0000069f,Dial,'
    '"PJSIP/6011/sip:6011@,30",2015-11-10 17:58:47,,2015-11-10 17:58:51,4,0,NO ANSWER,DOCUMENTATION,'
    "1447207127.4182,Internal,6039,6011,s,GVC Test,,,,1447207127558984-6039,6039,DIAL,, "
)


def as_text(value: object) -> str:
    """A frame value as the vendor's JSON writes it."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return str(value)


def test_schema_is_the_data_model(samples):
    df = cdrq.read(samples / "ucm6510-fw1.0.2.5-cdrapi.csv")
    assert df.columns == [*BASE_COLUMNS, "cdr_kind", "leg"]
    for name, dtype in df.schema.items():
        if name in INT_COLUMNS or name == "leg":
            assert dtype == pl.Int64, name
        elif name in TIME_COLUMNS:
            assert dtype == pl.Datetime("us", "UTC"), name
        else:
            assert dtype == pl.String, name


def test_fw_1_0_2_5_every_field_equals_the_json_of_the_same_calls(samples):
    df = cdrq.read(samples / "ucm6510-fw1.0.2.5-cdrapi.csv", format="ucm-csv")
    expected = json.loads((samples / "ucm6100-fw1.0.x-cdrapi.json").read_text())["cdr"]
    assert df.height == len(expected) == 3
    for row, record in zip(df.iter_rows(named=True), expected, strict=True):
        assert set(record) == set(BASE_COLUMNS[:22])
        for name, value in record.items():
            assert as_text(row[name]) == value, name
        for name in BASE_COLUMNS[22:]:
            assert row[name] is None, name
        assert (row["cdr_kind"], row["leg"]) == ("record", 0)
    assert df["lastdata"].to_list() == ["SIP/5301,60,"] * 3
    assert df["clid"].to_list() == ['"pn01" <5300>'] * 3
    assert df["AcctId"].to_list() == [62, 63, 64]
    assert df["start"][0] == datetime(2013, 12, 3, 11, 46, 40, tzinfo=timezone.utc)


def test_fw_1_0_11_every_field(samples):
    df = cdrq.read(samples / "ucm6xxx-fw1.0.11-cdrapi.csv")
    utc = timezone.utc
    expected = {
        "AcctId": 1201, "accountcode": None, "src": "6039", "dst": "6011", "dcontext": "from-internal",
        "clid": '"GVC Test" <6039>', "channel": "PJSIP/6039-0000069e", "dstchannel": "PJSIP/6011-0000069f",
        "lastapp": "Dial", "lastdata": "PJSIP/6011/sip:6011@,30",
        "start": datetime(2015, 11, 10, 17, 58, 47, tzinfo=utc), "answer": None,
        "end": datetime(2015, 11, 10, 17, 58, 51, tzinfo=utc), "duration": 4, "billsec": 0,
        "disposition": "NO ANSWER", "amaflags": "DOCUMENTATION", "uniqueid": "1447207127.4182",
        "userfield": "Internal", "channel_ext": "6039", "dstchannel_ext": "6011", "service": "s",
        "caller_name": "GVC Test", "recordfiles": None, "dstanswer": None, "chanext": None,
        "dstchanext": None, "session": "1447207127558984-6039", "action_owner": "6039",
        "action_type": "DIAL", "src_trunk_name": None, "dst_trunk_name": None,
        "cdr_kind": "record", "leg": 0,
    }  # fmt: skip
    assert df.rows(named=True) == [expected]


@pytest.mark.parametrize("kind", ["str", "path", "bytes", "bytearray", "memoryview", "file"])
def test_every_kind_of_source(samples, kind):
    path = samples / "ucm6510-fw1.0.2.5-cdrapi.csv"
    data = path.read_bytes()
    source = {
        "str": str(path),
        "path": path,
        "bytes": data,
        "bytearray": bytearray(data),
        "memoryview": memoryview(data),
        "file": io.BytesIO(data),
    }[kind]
    assert cdrq.read(source).equals(cdrq.read(path))


def test_file_object_name_is_the_error_source(samples, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_bytes(FW11_ROW.replace("1201", "x1201", 1).encode())
    with bad.open("rb") as f, pytest.raises(cdrq.ParseError) as e:
        cdrq.read(f)
    assert e.value.source == str(bad)
    with pytest.raises(cdrq.ParseError) as e:
        cdrq.read(bad)
    assert e.value.source == str(bad)


@pytest.mark.parametrize(
    "text",
    [
        FW11_ROW + "\n" + FW11_ROW + "\n",
        FW11_ROW + "\r\n" + FW11_ROW + "\r\n",
        "\ufeff" + FW11_ROW + "\n" + FW11_ROW,
        "\n\n" + FW11_ROW + "\n   \n\r\n" + FW11_ROW + "\n\n",
        FW11_ROW + "\r\n" + FW11_ROW + "\r",
    ],
    ids=["lf", "crlf", "bom-no-final-newline", "blank-lines", "final-cr"],
)
def test_line_endings_bom_and_blank_lines(text):
    df = cdrq.read(text.encode())
    assert df.height == 2
    assert df["dst_trunk_name"].to_list() == [None, None]
    assert df["AcctId"].to_list() == [1201, 1201]
    assert df["lastdata"].to_list() == ["PJSIP/6011/sip:6011@,30"] * 2


def test_rfc_quoting_is_decoded():
    row = FW11_ROW.replace('"GVC Test" <6039>', '"Doe, ""JJ""\nline 2"', 1)
    df = cdrq.read(row.encode())
    assert df["clid"][0] == 'Doe, "JJ"\nline 2'


def test_clid_token_with_comma_inside_quotes_is_verbatim():
    row = FW11_ROW.replace('"GVC Test" <6039>', '"Doe, J" <6039>', 1)
    assert cdrq.read(row.encode())["clid"][0] == '"Doe, J" <6039>'


def test_32_field_rows_fill_dstchanext():
    fields = FW11_ROW.split(",")
    # Insert dstchanext after chanext (position 26 of the 32 JSON keys).
    row = ",".join([*fields[:9], '"PJSIP/6011/sip:6011@,30"', *fields[11:27], "6011", *fields[27:]])
    df = cdrq.read(row.encode())
    assert df["dstchanext"][0] == "6011"
    assert df["session"][0] == "1447207127558984-6039"


def test_22_field_headerless_rows_and_unquoted_lastdata():
    _header, *rows = (pathlib.Path(__file__).parent / "samples/ucm6510-fw1.0.2.5-cdrapi.csv").read_text().splitlines()
    df = cdrq.read("\n".join(rows).encode())
    assert df.height == 3
    assert df["lastdata"].to_list() == ["SIP/5301,60,"] * 3
    assert df["service"].to_list() == ["s"] * 3


def test_header_with_further_names_keeps_them_by_name():
    text = (
        "AcctId,src,dst,start,lastapp,lastdata,nat_call,Disposition,gds_call\n"
        "7,100,200,2024-05-01 10:00:00,Dial,SIP/1,30,,yes,ANSWERED,no\n"
    )
    df = cdrq.read(text.encode())
    assert df.columns[-2:] == ["nat_call", "gds_call"]
    row = df.row(0, named=True)
    assert (row["AcctId"], row["src"], row["lastdata"], row["nat_call"], row["gds_call"]) == (
        7, "100", "SIP/1,30,", "yes", "no"
    )  # fmt: skip
    assert row["disposition"] == "ANSWERED"  # header names match case-insensitively
    assert row["session"] is None


def test_time_zone_is_the_pbx_wall_clock(samples):
    df = cdrq.read(samples / "ucm6xxx-fw1.0.11-cdrapi.csv", tz="Europe/Berlin")
    assert df.schema["start"] == pl.Datetime("us", "Europe/Berlin")
    start = df["start"][0]
    assert start.replace(tzinfo=None) == datetime(2015, 11, 10, 17, 58, 47)
    assert start.astimezone(timezone.utc).replace(tzinfo=None) == datetime(2015, 11, 10, 16, 58, 47)
    naive = cdrq.read(samples / "ucm6xxx-fw1.0.11-cdrapi.csv", tz=None)
    assert naive.schema["start"] == pl.Datetime("us")


def test_dst_fall_back_hour_takes_the_earlier_instant():
    row = FW11_ROW.replace("2015-11-10 17:58:47", "2024-10-27 02:30:00", 1)
    start = cdrq.read(row.encode(), tz="Europe/Berlin")["start"][0]
    assert start.astimezone(timezone.utc).replace(tzinfo=None) == datetime(2024, 10, 27, 0, 30)


def test_asterisk_zero_time_is_null():
    row = FW11_ROW.replace(",,2015-11-10 17:58:51", ",0000-00-00 00:00:00,2015-11-10 17:58:51", 1)
    assert cdrq.read(row.encode())["answer"][0] is None


def test_empty_input_has_the_schema():
    for data in (b"", b"\n\n", b"\xef\xbb\xbf"):
        df = cdrq.read(data)
        assert df.height == 0
        assert df.columns == [*BASE_COLUMNS, "cdr_kind", "leg"]
    df, rejects = cdrq.read(b"", on_error="collect")
    assert rejects.schema == pl.Schema(REJECT_SCHEMA)


def test_options_are_checked():
    with pytest.raises(cdrq.CdrqError, match="unknown format"):
        cdrq.read(b"", format="excel")
    with pytest.raises(cdrq.CdrqError, match="on_error"):
        cdrq.read(b"", on_error="ignore")  # type: ignore[call-overload]
    with pytest.raises(cdrq.CdrqError, match="time zone"):
        cdrq.read(b"", tz="Mars/Olympus")
    with pytest.raises(cdrq.CdrqError, match="No such file"):
        cdrq.read("/nonexistent/cdr.csv")
    with pytest.raises(cdrq.CdrqError, match="type int"):
        cdrq.read(42)  # type: ignore[arg-type]


def test_auto_says_what_it_saw_when_the_guess_fails():
    with pytest.raises(cdrq.ParseError) as e:
        cdrq.read(b"PK\x03\x04 zipped,archive\n")
    assert "format auto read this as ucm-csv after seeing neither JSON, XML nor web UI labels" in e.value.reason
    assert "PK" in e.value.reason
    with pytest.raises(cdrq.ParseError, match="read this as ucm-json after seeing JSON"):
        cdrq.read(b'{"cdr": [}')
    with pytest.raises(cdrq.ParseError) as e:  # explicit formats are not second-guessed
        cdrq.read(b"1,2,3\n", format="ucm-csv")
    assert "format auto" not in e.value.reason


def test_threads_follow_polars_max_threads(samples, monkeypatch):
    monkeypatch.setenv("POLARS_MAX_THREADS", "1")
    assert cdrq.read(samples / "ucm6510-fw1.0.2.5-cdrapi.csv").height == 3


def test_strings_cross_as_views_without_copy(samples):
    from cdrq import _core

    stream, _ = _core.read(str(samples / "ucm6510-fw1.0.2.5-cdrapi.csv"))
    assert len(stream) == 3
    df = pl.DataFrame(stream)
    assert df.height == 3
    with pytest.raises(cdrq.CdrqError, match="closed stream"):
        stream.__arrow_c_stream__()
