"""Property tests: random records written the way each firmware writes them
read back identical, and a parse split into many chunks equals one."""

from __future__ import annotations

from datetime import datetime, timezone

import polars as pl
from hypothesis import given
from hypothesis import strategies as st

import cdrq
from cdrq import _core

FW_1_0_2_5 = [
    "AcctId", "accountcode", "src", "dst", "dcontext", "clid", "channel", "dstchannel", "lastapp",
    "lastdata", "start", "answer", "end", "duration", "billsec", "disposition", "amaflags", "uniqueid",
    "userfield", "channel_ext", "dstchannel_ext", "service",
]  # fmt: skip
FW_1_0_11 = [
    *FW_1_0_2_5, "caller_name", "recordfiles", "dstanswer", "chanext", "session", "action_owner",
    "action_type", "src_trunk_name", "dst_trunk_name",
]  # fmt: skip
INTS = {"AcctId", "duration", "billsec"}
TIMES = {"start", "answer", "end"}

# Non-ASCII letters, separators and quotes, so every quirk gets exercised.
ANY_TEXT = st.text(alphabet=st.sampled_from('ab Zé李\t,"\n\r;<>@/-0123456789'), max_size=12)
SAFE_TEXT = st.text(alphabet=st.sampled_from("ab Zé李\t;<>@/-0123456789"), max_size=12)
NAME = st.text(alphabet=st.sampled_from("ab Zé李,;-"), max_size=10)
times = st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(2100, 12, 31)).map(
    lambda d: d.replace(microsecond=0)
)


def clids(name_text: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    token = st.builds(lambda n, e: f'"{n}" <{e}>', name_text, st.integers(0, 99_999))
    return st.one_of(token, st.integers(0, 99_999).map(str))


@st.composite
def records(draw, names: list[str], text: st.SearchStrategy[str]) -> dict[str, object]:
    record: dict[str, object] = {}
    for name in names:
        if name in INTS:
            record[name] = draw(st.none() | st.integers(0, 10**15))
        elif name in TIMES:
            record[name] = draw(st.none() | times)
        elif name == "clid":
            record[name] = draw(clids(NAME))
        elif name == "lastdata" and text is SAFE_TEXT:
            # fw 1.0.2.5 writes lastdata unquoted, commas and all.
            record[name] = draw(st.lists(SAFE_TEXT, max_size=4).map(",".join))
        else:
            record[name] = draw(text)
    return record


def as_field(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return str(value)


def write_fw_1_0_11(name: str, value: object) -> str:
    """Quoted (RFC 4180) when it holds a separator, a quote or a line break;
    a caller ID token `"Name" <ext>` is written as it is."""
    text = as_field(value)
    is_token = name == "clid" and text.startswith('"')
    if not is_token and any(c in text for c in ',"\r\n'):
        return '"' + text.replace('"', '""') + '"'
    return text


def expected(record: dict[str, object], names: list[str]) -> dict[str, object]:
    out: dict[str, object] = {}
    for name in names:
        value = record[name]
        if isinstance(value, datetime):
            value = value.replace(tzinfo=timezone.utc)
        if value == "":
            value = None
        out[name] = value
    last = names[-1]
    if isinstance(out[last], str) and not out[last].strip(" \t") and not any(c in out[last] for c in "\r\n"):
        out[last] = None  # the whitespace-only last field of a line is empty
    return out


def read_rows(data: bytes, names: list[str]) -> list[dict[str, object]]:
    return cdrq.read(data).select(names).rows(named=True)


@given(st.lists(records(FW_1_0_11, ANY_TEXT), max_size=20), st.sampled_from(["\n", "\r\n"]))
def test_fw_1_0_11_round_trip(rows, newline):
    lines = []
    for record in rows:
        fields = [write_fw_1_0_11(n, record[n]) for n in FW_1_0_11]
        if fields[-1] == "":
            fields[-1] = " "  # the guide's trailing `, `
        lines.append(",".join(fields))
    data = newline.join(lines).encode()
    assert read_rows(data, FW_1_0_11) == [expected(r, FW_1_0_11) for r in rows]


@given(st.lists(records(FW_1_0_2_5, SAFE_TEXT), max_size=20), st.booleans())
def test_fw_1_0_2_5_round_trip(rows, final_newline):
    lines = [",".join(FW_1_0_2_5)]
    lines += [",".join(as_field(r[n]) for n in FW_1_0_2_5) for r in rows]
    data = ("\n".join(lines) + ("\n" if final_newline else "")).encode()
    assert read_rows(data, FW_1_0_2_5) == [expected(r, FW_1_0_2_5) for r in rows]


@given(
    st.lists(records(FW_1_0_11, ANY_TEXT), min_size=1, max_size=30),
    st.integers(1, 400),
    st.lists(st.sampled_from(["", "garbage,row", '"open']), max_size=3),
)
def test_chunked_parse_equals_one_thread(rows, chunk_bytes, junk):
    lines = [",".join(write_fw_1_0_11(n, r[n]) for n in FW_1_0_11) for r in rows]
    for i, line in enumerate(junk):
        lines.insert((i * 7) % (len(lines) + 1), line)
    data = "\n".join(lines).encode()
    one_stream, one_rejects = _core.read(data, threads=1, on_error="collect")
    many_stream, many_rejects = _core.read(data, threads=4, on_error="collect", chunk_bytes=chunk_bytes)
    assert pl.DataFrame(one_stream).equals(pl.DataFrame(many_stream))
    assert one_rejects == many_rejects
