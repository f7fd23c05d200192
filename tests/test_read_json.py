"""The UCM CDR API JSON reader (rust/src/read/json.rs): both shapes, the
vendor samples and each quirk of real UCM63xx output."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

import cdrq
from cdrq import _core

UTC = timezone.utc


def rows(data: object, **kwargs):
    return cdrq.read(json.dumps(data).encode(), **kwargs)


def test_old_shape_equals_its_csv_twin(samples):
    from_json = cdrq.read(samples / "ucm6100-fw1.0.x-cdrapi.json")
    from_csv = cdrq.read(samples / "ucm6510-fw1.0.2.5-cdrapi.csv")
    assert from_json.equals(from_csv)
    assert from_json["lastdata"].to_list() == ["SIP/5301,60,"] * 3


def test_transfer_sample_every_field(samples):
    df = cdrq.read(samples / "ucm6xxx-fw1.0.11-cdrapi-transfer.json", format="ucm-json")
    raw = json.loads((samples / "ucm6xxx-fw1.0.11-cdrapi-transfer.json").read_text())["cdr_root"][0]
    assert df.height == 3
    assert "cdr" not in df.columns  # the call's session id, not a field
    assert df["cdr_kind"].to_list() == ["main", "sub", "sub"]
    assert df["leg"].to_list() == [0, 1, 2]
    assert df["duration"].to_list() == [16, 12, 4]
    assert df["billsec"].to_list() == [9, 5, 4]
    for row, record in zip(
        df.iter_rows(named=True), [raw["main_cdr"], raw["sub_cdr_1"], raw["sub_cdr_2"]], strict=True
    ):
        for name, value in record.items():
            got = row[name]
            if isinstance(got, datetime):
                got = got.strftime("%Y-%m-%d %H:%M:%S")
            assert ("" if got is None else str(got)) == value, name
    assert df["start"][1] == datetime(2016, 4, 29, 2, 53, 37, tzinfo=UTC)
    assert df["lastdata"][1] == "PJSIP/1001/sip:1001@,60,ztTkKA(dialog-being-recorded)M(reco"
    assert df["clid"][1] == '"John Doe" <1000>'


def test_twelve_legs_sort_numerically_and_keep_their_own_session():
    call = {"cdr": "s1", "main_cdr": {"session": "s1", "AcctId": ""}}
    for n in [10, 2, 12, 1, 11, 3, 9, 4, 8, 5, 7, 6]:
        call[f"sub_cdr_{n}"] = {"AcctId": str(n), "session": "s1" if n != 7 else "s7-own"}
    df = rows({"cdr_root": [call]})
    assert df["leg"].to_list() == list(range(13))
    assert df["AcctId"].to_list() == [None, *range(1, 13)]
    assert df["session"][7] == "s7-own"


def test_empty_cdr_string_and_null_elements():
    assert rows({"cdr": ""}).height == 0
    data = {"cdr_root": [None, {"cdr": "s", "main_cdr": {"src": "1"}, "sub_cdr_1": None}, None]}
    df = rows(data)
    assert df["src"].to_list() == ["1"]
    df, rejects = rows(data, on_error="collect")
    assert df.height == 1
    assert rejects.height == 3
    assert all("holds no record" in r for r in rejects["reason"])


def test_values_may_be_numbers_or_null_and_unknown_keys_are_kept():
    data = {
        "cdr": [
            {"AcctId": 7, "src": 5300, "duration": 16, "billsec": None, "nat_call": "yes", "answer": ""},
            {"AcctId": "8", "src": "5301", "gds_call": 0, "dst": 'a"b\\n\u00e9\ud83d\ude00'},
        ]
    }
    df = rows(data)
    assert df["AcctId"].to_list() == [7, 8]
    assert df["src"].to_list() == ["5300", "5301"]
    assert df["duration"].to_list() == [16, None]
    assert df["billsec"].to_list() == [None, None]
    assert df["answer"].to_list() == [None, None]
    assert df.columns[-2:] == ["nat_call", "gds_call"]
    assert df["nat_call"].to_list() == ["yes", None]
    assert df["gds_call"].to_list() == [None, "0"]
    assert df["dst"].to_list() == [None, 'a"b\\n\u00e9\U0001f600']


def test_bare_array_of_records():
    assert rows([{"src": "1"}, {"src": "2"}])["src"].to_list() == ["1", "2"]


def test_bad_value_rejects_its_record_only():
    data = b'{"cdr": [\n{"AcctId": "1"},\n{"AcctId": "x2", "src": "9"},\n{"AcctId": "3"}\n]}'
    with pytest.raises(cdrq.ParseError) as e:
        cdrq.read(data)
    assert (e.value.line, e.value.column, e.value.raw) == (3, 13, '{"AcctId": "x2", "src": "9"}')
    assert e.value.reason == 'AcctId is not an integer: "x2"'
    df, rejects = cdrq.read(data, on_error="collect")
    assert df["AcctId"].to_list() == [1, 3]
    assert rejects["line"].to_list() == [3]


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b'{"cdr": [{"src": "1"}', "expected ',' or ']'"),
        (b'{"cdr": [{"src": "1}]}', "unterminated string"),
        (b'{"cdr": [{"src": "\\x"}]}', "invalid escape"),
        (b'{"cdr": [{"src": 1.}]}', "invalid number"),
        (b'{"cdr": []} x', "unexpected text"),
    ],
)
def test_syntax_errors_fail_the_read_even_in_collect_mode(data, reason):
    with pytest.raises(cdrq.ParseError, match=reason):
        cdrq.read(data, format="ucm-json", on_error="collect")


# Property: random records in either shape read back as written.

TEXT_KEYS = ["src", "dst", "clid", "lastdata", "session", "caller_name", "nat_call"]
values = st.one_of(st.none(), st.text(max_size=8))
records = st.fixed_dictionaries(
    {"AcctId": st.none() | st.integers(0, 10**12)},
    optional={k: values for k in TEXT_KEYS} | {"duration": st.integers(0, 10**6).map(str)},
)


def expect(record: dict) -> dict:
    out = {k: (None if v == "" else v) for k, v in record.items()}
    if "duration" in out:
        out["duration"] = int(out["duration"])
    return out


@given(st.lists(records, max_size=8), st.booleans())
def test_round_trip_flat(recs, indent):
    df = cdrq.read(json.dumps({"cdr": recs}, indent=1 if indent else None).encode())
    assert df["cdr_kind"].to_list() == ["record"] * len(recs)
    for row, record in zip(df.iter_rows(named=True), recs, strict=True):
        assert {k: row[k] for k in record} == expect(record)
        assert all(row[k] is None for k in TEXT_KEYS if k not in record and k in row)


@given(st.lists(st.tuples(records, st.lists(records, max_size=12)), max_size=4))
def test_round_trip_nested(calls):
    root = []
    for main, legs in calls:
        call = {"cdr": "s", "main_cdr": main}
        call.update({f"sub_cdr_{n}": leg for n, leg in enumerate(legs, 1)})
        root.append(dict(reversed(list(call.items()))))  # key order must not matter
    df = cdrq.read(json.dumps({"cdr_root": root}).encode())
    expected = [r for main, legs in calls for r in [(main, 0), *((leg, n) for n, leg in enumerate(legs, 1))]]
    assert df["leg"].to_list() == [n for _, n in expected]
    for row, (record, _) in zip(df.iter_rows(named=True), expected, strict=True):
        assert {k: row[k] for k in record} == expect(record)


tricky = st.sampled_from(['},{"x": 1}', "}, null,{", "", "a,b", '"quoted"', "\\u00e9"])


@given(
    st.lists(st.one_of(st.none(), records), min_size=1, max_size=30),
    st.lists(tricky, max_size=30),
    st.integers(1, 300),
    st.booleans(),
)
def test_chunked_parse_equals_one_chunk(recs, texts, chunk_bytes, nested):
    for record, text in zip(recs, texts, strict=False):
        if record is not None:
            record["lastdata"] = text  # element-like text inside strings
    if nested:
        doc = {"cdr_root": [r and {"cdr": "s", "main_cdr": r, "sub_cdr_1": r} for r in recs]}
    else:
        doc = {"cdr": recs}
    data = json.dumps(doc, indent=1 if chunk_bytes % 2 else None).encode()
    one, one_rejects = _core.read(data, threads=1, on_error="collect")
    many, many_rejects = _core.read(data, threads=4, on_error="collect", chunk_bytes=chunk_bytes)
    assert pl.DataFrame(one).equals(pl.DataFrame(many))
    assert one_rejects == many_rejects


def test_facts_of_real_data_survive_as_written():
    record = {
        "AcctId": "7", "src": "", "dst": "s", "channel": "DAHDI/1-1",  # an analog (FXO) inbound call
        "uniqueid": "1447207127.4180",  # an identifier, not a number: the trailing 0 stays
        "recordfiles": "2022-08/auto-1661157307-07917330699-203.wav@",
        "recordfiles_desc": "duration=31,size=489324B,start-time=1661157307@",
        "action_type": "RINGGROUP[6400]",
    }  # fmt: skip
    conference = {**record, "action_type": "CONFERENCE [6300]"}
    df = rows({"cdr": [record, conference]})
    assert df.schema["uniqueid"] == pl.String and df["uniqueid"][0] == "1447207127.4180"
    assert (df["src"][0], df["dst"][0], df["channel"][0]) == (None, "s", "DAHDI/1-1")
    assert df["recordfiles"][0] == record["recordfiles"]
    assert df["recordfiles_desc"][0] == record["recordfiles_desc"]
    assert df["action_type"].to_list() == ["RINGGROUP[6400]", "CONFERENCE [6300]"]


def test_newer_firmware_keys_become_columns_in_first_seen_order():
    later = ["nat_call", "nat_call_peer", "video_call", "gdms_unique_code", "gds_call", "gsc_call",
             "wave_src_seqid", "wave_dst_seqid", "device_info", "device_info_peer", "recordfiles_desc",
             "anonymous_call", "reason", "wave_src_hide", "wave_dst_hide", "new_src", "sn"]  # fmt: skip
    record = {"AcctId": "1", **{k: f"v{i}" for i, k in enumerate(later)}}
    df = rows({"cdr_root": [{"cdr": "s", "main_cdr": record}]})
    assert df.columns[34:] == later
    assert df.row(0)[34:] == tuple(f"v{i}" for i in range(len(later)))


def keyed(n: int, fmt: str = "json") -> bytes:
    """n records, each with a key of its own beyond the data model."""
    if fmt == "xml":
        cdrs = "".join(f"<cdr><src>1</src><dst>2</dst><k{i}>v</k{i}></cdr>" for i in range(n))
        return f"<root>{cdrs}</root>".encode()
    return json.dumps({"cdr": [{"src": "1", "dst": "2", f"k{i}": "v"} for i in range(n)]}).encode()


@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_a_new_key_in_every_record_is_an_error_not_a_frame_of_nulls(fmt):
    """20 000 records of a key each made a frame of 20 000 by 20 000 nulls
    (8 GB, 30 s): beyond MAX_COLUMNS columns a document is no CDR export."""
    extra = _core.MAX_COLUMNS - 34  # the data model's 32, cdr_kind and leg
    if fmt == "json":
        wide = json.dumps({"cdr": [{"src": "1", **{f"k{i}": "v" for i in range(extra)}}] * 3}).encode()
    else:
        fields = "".join(f"<k{i}>v</k{i}>" for i in range(extra))
        wide = f"<root>{f'<cdr><src>1</src>{fields}</cdr>' * 3}</root>".encode()
    frame = cdrq.read(wide)
    assert frame.width == _core.MAX_COLUMNS and frame.height == 3
    for on_error in ("raise", "collect"):
        # Whichever bound it meets first: the columns, or their nulls.
        with pytest.raises(cdrq.CdrqError, match=f"more than {_core.MAX_COLUMNS} columns|beyond the data model"):
            cdrq.read(keyed(20_000, fmt=fmt), on_error=on_error)
    with pytest.raises(cdrq.CdrqError, match=r"columns|beyond the data model"), cdrq.scan_errors():
        cdrq.scan(keyed(20_000, fmt=fmt)).collect()


@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_a_frame_mostly_of_nulls_is_an_error(fmt):
    """One record naming 980 keys, then 100 000 of one key: 1.7 GB of nulls
    of 1.2 MB. Values of keys beyond the data model are bounded by the
    input's bytes (past the first 65 536)."""
    first = {"src": "5300", **{f"k{i}": "v" for i in range(980)}}
    if fmt == "json":
        doc = ('{"cdr":[' + json.dumps(first) + ',{"src":"1"}' * 100_000 + "]}").encode()
    else:
        head = "<cdr>" + "".join(f"<{k}>{v}</{k}>" for k, v in first.items()) + "</cdr>"
        doc = ("<root>" + head + "<cdr><src>1</src></cdr>" * 100_000 + "</root>").encode()
    for on_error in ("raise", "collect"):
        with pytest.raises(cdrq.CdrqError, match="beyond the data model"):
            cdrq.read(doc, on_error=on_error)
    with pytest.raises(cdrq.CdrqError, match="beyond the data model"), cdrq.scan_errors():
        cdrq.scan(doc).collect()
    # The same keys in every record are an export's.
    dense = {"src": "5300", **{f"k{i}": "v" for i in range(50)}}
    assert cdrq.read(json.dumps({"cdr": [dense] * 2000}).encode()).shape == (2000, 84)


def test_sources_naming_too_many_columns_in_all_are_an_error(tmp_path):
    for k in range(3):
        record = {"src": "1", **{f"k{500 * k + i}": "v" for i in range(500)}}
        (tmp_path / f"{k}.json").write_text(json.dumps({"cdr": [record] * 3}))
    assert cdrq.read(tmp_path / "0.json").width == 534
    with pytest.raises(cdrq.CdrqError, match="in all"):
        cdrq.read(tmp_path)
    with pytest.raises(cdrq.CdrqError, match="in all"), cdrq.scan_errors():
        cdrq.scan(tmp_path).collect()


def test_many_arrays_under_repeated_keys_are_all_read():
    # Each array searched the rest of the input for chunk bounds: 150 000
    # repeated "cdr" keys (3 MB) took 44 s.
    doc = "{" + ",".join(f'"cdr":[{{"AcctId":"{i}","src":"1"}}]' for i in range(1, 3001)) + "}"
    assert cdrq.read(doc.encode())["AcctId"].to_list() == list(range(1, 3001))
