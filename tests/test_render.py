"""Rendering (python/cdrq/render.py): UCM csv / json / xml, sessions and
summaries, empty containers, round trips."""

from __future__ import annotations

import csv
import io
import json

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

import cdrq


def test_empty_containers():
    df = cdrq.read(b"")
    assert cdrq.render(df, "json") == '{"cdr_root": []}'
    assert cdrq.render(df, "xml") == '<?xml version="1.0" encoding="UTF-8"?>\n<cdr_root/>\n'
    assert cdrq.render(df, "csv").count("\n") == 1


def test_csv_sourced_legs_get_a_computed_summary(samples):
    rows = [
        '1,,1000,1001,from-internal,"John Doe" <1000>,c,d,Dial,x,2016-04-29 02:53:37,2016-04-29 02:53:44,'
        "2016-04-29 02:53:49,12,5,ANSWERED,DOCUMENTATION,1461920017.7,Internal,1000,1001,s,John Doe,,1001,,,"
        "1461920017104140-1000,1000,DIAL,,",
        '2,,1000,1002,from-internal-xfer,"John Doe" <1000>,c,d,Dial,y,2016-04-29 02:53:49,2016-04-29 02:53:49,'
        "2016-04-29 02:53:54,4,4,ANSWERED,DOCUMENTATION,1461920017.7,Internal,1000,1002,s,John Doe,,1002,,,"
        "1461920017104140-1000,1001,TRANSFER,,",
    ]
    df = cdrq.read("\n".join(rows).encode())
    call = json.loads(cdrq.render(df, "json"))["cdr_root"][0]
    assert list(call) == ["cdr", "main_cdr", "sub_cdr_1", "sub_cdr_2"]
    main = call["main_cdr"]
    # As the guide's transfer example: first leg's src/dst/start/session/action_type, summed durations.
    expected = json.loads((samples / "ucm6xxx-fw1.0.11-cdrapi-transfer.json").read_text())["cdr_root"][0]
    for key in (
        "src",
        "dst",
        "start",
        "duration",
        "billsec",
        "session",
        "action_type",
        "AcctId",
        "disposition",
    ):
        assert main[key] == expected["main_cdr"][key], key
    assert call["sub_cdr_2"]["action_type"] == "TRANSFER"


def test_stored_main_records_are_used_as_they_are(samples):
    df = cdrq.read(samples / "ucm6xxx-fw1.0.11-cdrapi-transfer.json")
    doc = json.loads(cdrq.render(df, "json"))
    original = json.loads((samples / "ucm6xxx-fw1.0.11-cdrapi-transfer.json").read_text())
    assert doc == original  # the vendor's document, value for value


def test_xml_is_escaped_and_well_formed():
    df = pl.DataFrame({"src": ['<&>"x'], "session": ['a"b'], "cdr_kind": ["record"]})
    xml = cdrq.render(df, "xml")
    assert '<src>&lt;&amp;&gt;"x</src>' in xml and 'session="a&quot;b"' in xml
    assert cdrq.read(xml.encode())["src"].to_list() == ['<&>"x']


def test_single_leg_session_is_its_own_main(samples):
    df = cdrq.read(samples / "ucm6xxx-fw1.0.11-cdrapi.csv")
    call = json.loads(cdrq.render(df, "json"))["cdr_root"][0]
    assert list(call) == ["cdr", "main_cdr"]
    assert call["main_cdr"]["lastdata"] == "PJSIP/6011/sip:6011@,30"
    assert all(isinstance(v, str) for v in call["main_cdr"].values())


TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs", "Cc"]), max_size=8)


@st.composite
def nested_frames(draw) -> pl.DataFrame:
    doc = {"cdr_root": []}
    for s in range(draw(st.integers(0, 4))):
        legs = draw(st.integers(1, 3))
        call = {"cdr": f"s{s}", "main_cdr": {"AcctId": "", "src": draw(TEXT), "session": f"s{s}"}}
        for n in range(1, legs + 1):
            call[f"sub_cdr_{n}"] = {
                "AcctId": str(n),
                "src": draw(TEXT),
                "lastdata": draw(TEXT),
                "session": f"s{s}",
            }
        doc["cdr_root"].append(call)
    return cdrq.read(json.dumps(doc).encode())


@given(nested_frames())
def test_read_render_read_is_identity(df):
    for fmt in ("json", "xml"):
        assert cdrq.read(cdrq.render(df, fmt).encode(), format=f"ucm-{fmt}").equals(df.select(df.columns[:34])), fmt
    legs = df.filter(pl.col("cdr_kind") == "sub").with_columns(cdr_kind=pl.lit("record"), leg=pl.lit(0, pl.Int64))
    back = cdrq.read(cdrq.render(legs.select(legs.columns[:34]), "csv").encode(), format="ucm-csv")
    assert back.equals(legs.select(legs.columns[:34]))


ANY_TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12)


@given(st.lists(ANY_TEXT, min_size=1, max_size=4))
def test_values_are_escaped_as_json_dumps_and_the_csv_module_writes_them(values):
    """Every byte the core writes for a value: JSON as Python's
    ``json.dumps(ensure_ascii=False)`` (control characters, quotes,
    backslashes), CSV quoted where a reader needs it."""
    df = pl.DataFrame({"src": values, "dst": values[::-1], "cdr_kind": ["record"] * len(values)})
    doc = cdrq.render(df, "json")
    for value in values:
        assert f'"src": {json.dumps(value, ensure_ascii=False)}, ' in doc
    assert [call["main_cdr"]["src"] for call in json.loads(doc)["cdr_root"]] == values
    header, *rows = csv.reader(io.StringIO(cdrq.render(df, "csv"), newline=""))
    assert [(row[header.index("src")], row[header.index("dst")]) for row in rows] == list(
        zip(values, values[::-1], strict=True)
    )
    assert cdrq.render_bytes(df, "json") == doc.encode()


def test_records_without_session_are_calls_of_their_own(samples):
    df = cdrq.read(samples / "ucm6510-fw1.0.2.5-cdrapi.csv")
    calls = json.loads(cdrq.render(df, "json"))["cdr_root"]
    assert [list(c) for c in calls] == [["cdr", "main_cdr"]] * 3
    assert [c["main_cdr"]["AcctId"] for c in calls] == ["62", "63", "64"]
    assert list(calls[0]["main_cdr"])[-1] == "service"  # the 22 fields of this firmware


def test_vendor_csv_renders_to_its_own_bytes(samples):
    # Firmware 1.0.2.5 writes `lastdata` (`SIP/5301,60,`) unquoted: so does cdrq
    # for the 22-column layout, and the reader rejoins it.
    path = samples / "ucm6510-fw1.0.2.5-cdrapi.csv"
    assert cdrq.render(cdrq.read(path), "csv") == path.read_text()


@given(st.lists(st.text(alphabet='ab,"<> 5', max_size=8), min_size=1, max_size=4))
def test_old_layout_lastdata_round_trips(samples, values):
    one = cdrq.read(samples / "ucm6510-fw1.0.2.5-cdrapi.csv").head(1)
    df = pl.concat([one] * len(values)).with_columns(lastdata=pl.Series(values).replace("", None))
    back = cdrq.read(cdrq.render(df, "csv").encode(), format="ucm-csv")
    assert back["lastdata"].to_list() == df["lastdata"].to_list()


def test_firmware_1_0_11_csv_renders_to_its_own_bytes(samples):
    # The guide's 1.0.11 row: no header, 31 fields (no dstchanext), ends `, `.
    path = samples / "ucm6xxx-fw1.0.11-cdrapi.csv"
    df = cdrq.read(path)
    assert cdrq.render(df, "csv", firmware="1.0.11") == path.read_text()
    assert cdrq.render(df.clear(), "csv", firmware="1.0.11") == ""
    # docs/query-language.md §5's layout of the same record: a header of 32 names, dstchanext empty.
    header, row = cdrq.render(df, "csv").splitlines()
    assert header.split(",")[-8:-5] == ["dstanswer", "chanext", "dstchanext"] and row.endswith(",DIAL,,")


def test_firmware_1_0_11_last_field_round_trips(samples):
    one = cdrq.read(samples / "ucm6xxx-fw1.0.11-cdrapi.csv")
    df = pl.concat([one, one]).with_columns(dst_trunk_name=pl.Series([None, "Trunk 1"]))
    text = cdrq.render(df, "csv", firmware="1.0.11")
    first, second = text.splitlines()
    assert first.endswith(",DIAL,, ") and second.endswith(",DIAL,,Trunk 1")
    assert cdrq.read(text.encode(), format="ucm-csv")["dst_trunk_name"].to_list() == [None, "Trunk 1"]


def test_firmware_1_0_2_5_json_renders_to_its_own_bytes(samples):
    # The UCM6100 guide's JSON: the flat {"cdr": [...]} of the 22 old fields.
    path = samples / "ucm6100-fw1.0.x-cdrapi.json"
    assert cdrq.render(cdrq.read(path), "json", firmware="1.0.2.5") == path.read_text()
    # The same records read from that firmware's CSV render the same JSON.
    csv = cdrq.read(samples / "ucm6510-fw1.0.2.5-cdrapi.csv")
    assert cdrq.render(csv, "json", firmware="1.0.2.5") == path.read_text()
    assert json.loads(cdrq.render(csv.clear(), "json", firmware="1.0.2.5")) == {"cdr": []}
    # Its CSV keeps 22 columns even for a frame of the newer firmware.
    newer = cdrq.read(samples / "ucm6xxx-fw1.0.11-cdrapi.csv")
    assert cdrq.render(newer, "csv", firmware="1.0.2.5").splitlines()[0].split(",")[-1] == "service"


def test_unknown_firmware_is_an_error():
    with pytest.raises(cdrq.CdrqError, match=r"firmware must be one of 1\.0\.2\.5, 1\.0\.11"):
        cdrq.render(cdrq.read(b""), "csv", firmware="2.0")


def test_cdrapi_answers_in_a_firmware_layout(samples):
    df = cdrq.read(samples / "ucm6xxx-fw1.0.11-cdrapi.csv")
    path = samples / "ucm6xxx-fw1.0.11-cdrapi.csv"
    assert cdrq.cdrapi(df, "format=csv&caller=6039", firmware="1.0.11") == path.read_text()
    assert cdrq.cdrapi(df, "format=csv&caller=6040", firmware="1.0.11") == ""
    assert cdrq.cdrapi(df, "format=bogus", firmware="1.0.11") == ""


def test_firmware_1_0_11_json_renders_to_its_own_bytes(samples):
    path = samples / "ucm6xxx-fw1.0.11-cdrapi-transfer.json"
    df = cdrq.read(path)
    assert cdrq.render(df, "json", firmware="1.0.11") == path.read_text()
    # The legs alone (as a CSV archive holds them): the computed summary is the guide's main_cdr.
    legs = df.filter(pl.col("cdr_kind") == "sub")
    assert cdrq.render(legs, "json", firmware="1.0.11") == path.read_text()


@pytest.mark.parametrize(
    "name", ["ucm6510-fw1.0.2.5-cdrapi.csv", "ucm6xxx-fw1.0.11-cdrapi-transfer.json", "ucm6100-fw1.0.x-cdrapi.json"]
)
@pytest.mark.parametrize("fmt", ["csv", "json", "xml"])
def test_cdrapi_given_the_main_rows_answers_as_without(samples, name, fmt):
    # Main rows alone would pick the columns: none at all (an old-firmware
    # CSV archive) read as "no old layout", 32 columns where 22 are right.
    frame = cdrq.read(samples / name)
    mains = frame.filter(pl.col("cdr_kind") == "main")
    qs = f"format={fmt}"
    assert cdrq.cdrapi(frame, qs, mains=mains) == cdrq.cdrapi(frame, qs)


CLID = st.text(alphabet=st.sampled_from('"<>, aO1'), min_size=1, max_size=10)


@given(st.lists(CLID, min_size=1, max_size=3))
def test_a_clid_renders_to_csv_that_reads_back_as_itself(clids):
    # The UCM writes a caller ID token `"Name" <ext>` unquoted; a clid of
    # any other shape (`"O"Brien" <1>`, `"A" <1>, x`) must be quoted, or a
    # reader takes it back wrong or not at all.
    df = pl.DataFrame({"AcctId": [str(i) for i in range(len(clids))], "clid": clids})
    back = cdrq.read(cdrq.render(df, "csv").encode(), format="ucm-csv")
    assert back["clid"].to_list() == clids
