"""The UCM XML reader (rust/src/read/xml.rs): the JSON samples rendered as
XML read exactly like the JSON; entities, CDATA, empty elements, legs."""

from __future__ import annotations

import json
from xml.sax.saxutils import escape

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

import cdrq
from cdrq import _core


def fields_xml(record: dict) -> str:
    return "".join(f"<{k}/>" if v is None else f"<{k}>{escape(str(v))}</{k}>" for k, v in record.items())


def to_xml(doc: dict, indent: bool = True) -> bytes:
    """The UCM's XML for a document in either JSON shape."""
    nl = "\n  " if indent else ""
    calls = []
    if "cdr" in doc:
        calls = [f"<cdr>{fields_xml(r)}</cdr>" for r in doc["cdr"]]
    else:
        for call in doc["cdr_root"]:
            legs = "".join(f"{nl}<{k}>{fields_xml(v)}</{k}>" for k, v in call.items() if k != "cdr")
            calls.append(f'<cdr session="{escape(call["cdr"])}">{legs}</cdr>')
    body = nl.join(calls)
    return f'<?xml version="1.0" encoding="UTF-8"?>\n<cdr_root>{nl}{body}\n</cdr_root>\n'.encode()


@pytest.mark.parametrize("name", ["ucm6100-fw1.0.x-cdrapi.json", "ucm6xxx-fw1.0.11-cdrapi-transfer.json"])
def test_samples_as_xml_read_like_the_json(samples, name):
    doc = json.loads((samples / name).read_text())
    from_json = cdrq.read(samples / name)
    from_xml = cdrq.read(to_xml(doc))
    assert from_xml.equals(from_json)
    assert from_xml.height in (3,)


def test_entities_cdata_empty_and_legs_in_order():
    x = b"""<?xml version="1.0"?>
<cdr_root>
 <cdr session="s1">
  <sub_cdr_2><AcctId>2</AcctId><clid>&quot;J &amp; D&quot; &lt;1000&gt; &#233;&#x1F600;</clid></sub_cdr_2>
  <main_cdr><AcctId></AcctId><duration>16</duration><answer/></main_cdr>
  <sub_cdr_10><AcctId>10</AcctId></sub_cdr_10>
  <sub_cdr_1><AcctId>1</AcctId><src><![CDATA[a<b&c]]></src><nat_call>yes</nat_call></sub_cdr_1>
 </cdr>
 <cdr><AcctId>62</AcctId><lastdata>SIP/5301,60,</lastdata></cdr>
</cdr_root>"""
    df = cdrq.read(x, format="ucm-xml")
    assert df["cdr_kind"].to_list() == ["main", "sub", "sub", "sub", "record"]
    assert df["leg"].to_list() == [0, 1, 2, 10, 0]
    assert df["AcctId"].to_list() == [None, 1, 2, 10, 62]
    assert df["clid"][2] == '"J & D" <1000> \u00e9\U0001f600'
    assert df["src"][1] == "a<b&c"
    assert df["nat_call"].to_list() == [None, "yes", None, None, None]
    assert df["answer"][0] is None and df["duration"][0] == 16
    assert df["lastdata"][4] == "SIP/5301,60,"


def test_empty_call_and_leg_are_rejects_in_collect_mode():
    x = b"<cdr_root><cdr/><cdr><main_cdr><src>1</src></main_cdr><sub_cdr_1/></cdr></cdr_root>"
    assert cdrq.read(x)["src"].to_list() == ["1"]
    df, rejects = cdrq.read(x, on_error="collect")
    assert (df.height, rejects.height) == (1, 2)
    assert all("holds no record" in r for r in rejects["reason"])


def test_bad_value_rejects_its_record():
    x = b"<cdr_root>\n<cdr><AcctId>1</AcctId></cdr>\n<cdr><start>yesterday</start></cdr>\n</cdr_root>"
    with pytest.raises(cdrq.ParseError) as e:
        cdrq.read(x)
    assert (e.value.line, e.value.raw) == (3, "<cdr><start>yesterday</start></cdr>")
    df, rejects = cdrq.read(x, on_error="collect")
    assert (df.height, rejects.height) == (1, 1)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"<cdr_root><cdr><src>1</dst></cdr></cdr_root>", "invalid XML"),
        (b"<cdr_root><cdr><src>&bogus;</src></cdr></cdr_root>", "unknown entity &bogus;"),
        (b"<cdr_root><cdr><src>1</src></cdr>", "invalid XML"),
    ],
)
def test_syntax_errors_fail_the_read(data, reason):
    with pytest.raises(cdrq.ParseError, match=reason):
        cdrq.read(data, format="ucm-xml", on_error="collect")


TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs", "Cc"]), max_size=8)
record = st.fixed_dictionaries(
    {"AcctId": st.integers(0, 10**9).map(str)},
    optional={k: TEXT for k in ["src", "dst", "clid", "lastdata", "gds_call"]},
)


@given(st.lists(st.tuples(record, st.lists(record, max_size=11)), max_size=4), st.booleans())
def test_xml_reads_like_json(calls, indent):
    doc = {"cdr_root": []}
    for main, legs in calls:
        call = {"cdr": "s", "main_cdr": main}
        call.update({f"sub_cdr_{n}": leg for n, leg in enumerate(legs, 1)})
        doc["cdr_root"].append(call)
    assert cdrq.read(to_xml(doc, indent)).equals(cdrq.read(json.dumps(doc).encode()))


def test_large_inputs_are_built_in_parts_with_one_schema():
    # More than one build part (65,536 rows each); a key only the last part has.
    n = 70_000
    body = "".join(f"<cdr><AcctId>{i}</AcctId><src>{i % 97}</src></cdr>" for i in range(n))
    tail = "<cdr><AcctId>-1</AcctId><late_key>x</late_key></cdr>"
    df = cdrq.read(f"<cdr_root>{body}{tail}</cdr_root>".encode())
    assert df.height == n + 1
    assert df["AcctId"].to_list() == [*range(n), -1]
    assert df["late_key"].null_count() == n and df["late_key"][-1] == "x"
    assert df["src"][69_999] == str(69_999 % 97)


@given(
    st.lists(st.tuples(record, st.lists(record, max_size=3)), min_size=1, max_size=12),
    st.integers(1, 400),
    st.booleans(),
)
def test_chunked_parse_equals_one_pass(calls, chunk_bytes, indent):
    doc = {"cdr_root": []}
    for main, legs in calls:
        main = {**main, "lastdata": "<cdr> or <cdr/>"}  # call-like text inside values
        call = {"cdr": "s", "main_cdr": main}
        call.update({f"sub_cdr_{n}": leg for n, leg in enumerate(legs, 1)})
        doc["cdr_root"].append(call)
    # A literal `<cdr` inside CDATA makes a false chunk start: it must be re-parsed.
    data = to_xml(doc, indent).replace(b"&lt;cdr&gt; or &lt;cdr/&gt;", b"<![CDATA[<cdr> or <cdr/>]]>")
    data += b"<!-- <cdr> -->"
    one, one_rejects = _core.read(data, threads=1, on_error="collect", format="ucm-xml")
    many, many_rejects = _core.read(data, threads=4, on_error="collect", format="ucm-xml", chunk_bytes=chunk_bytes)
    assert pl.DataFrame(one).equals(pl.DataFrame(many))
    assert one_rejects == many_rejects


def test_a_document_of_empty_non_cdr_elements_is_an_error_not_an_empty_frame():
    for doc in (b"<html><head/><body/></html>", b"<cdr_root><x/></cdr_root>", b'<svg xmlns="x"><path d="M0"/></svg>'):
        with pytest.raises(cdrq.ParseError, match="neither a call nor a record"):
            cdrq.read(doc)
    frame, rejects = cdrq.read(b"<cdr_root><cdr/><x/></cdr_root>", on_error="collect")
    assert frame.height == 0 and len(rejects) == 2
    assert cdrq.read(b"<cdr_root><cdr/></cdr_root>").height == 0  # the UCM's null, as in JSON
    assert cdrq.read(b"<cdr_root></cdr_root>").height == 0
