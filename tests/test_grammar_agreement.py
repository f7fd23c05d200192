"""The Lark grammar (python/cdrq/grammar) and the Rust compiler agree: on
accept/reject for listed, generated, near-valid and arbitrary texts, and on
the exact rows a query selects from random frames."""

from __future__ import annotations

import string
from datetime import datetime, timedelta, timezone

import duckdb
import polars as pl
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.lark import from_lark

import cdrq
from cdrq.grammar import reference
from cdrq.query import compile_query, now_us

NOW = datetime(2024, 5, 17, 12, 30, tzinfo=timezone.utc)


def rust_accepts(qs: str) -> bool:
    try:
        compile_query(qs, NOW)
    except cdrq.QueryError:
        return False
    return True


def ref_accepts(qs: str) -> bool:
    try:
        reference.compile(qs, now_us(NOW))
    except reference.Rejected:
        return False
    return True


LISTED = [
    # (query, accepted)
    ("", True),
    ("caller=5300,5302-5304,_4@&startTime=2013-07-01T00:00:00&endTime=2013-07-31T23:59:59", True),
    ("https://192.168.1.1:8443/cdrapi?format=json&caller=5300", True),
    ("caller=5300&caller=6300-6399&callee=5@&minDur=8&format=json", True),
    ("numrecords=10&OFFSET=5&format=XML", True),
    ("startTime=&endTime=", True),
    ("startTime=2013-07-01T08:30:15.250Z&endTime=now", True),
    ("startTime=1372636800&endTime=08:30", True),
    ("startTime=2013-07-01T08:30%2B02:00", True),
    ("caller=0-0", True),
    ("caller=%40%2C5", True),  # "@,5" once decoded
    ("caler=5300", False),
    ("caller", False),
    ("caller=5300&", False),
    ("caller=", False),
    ("minDur=", False),
    ("offset=1&offset=2", False),
    ("format=json&FORMAT=csv", False),
    ("numRecords=1e3", False),
    ("maxDur=-1", False),
    ("caller=53 00", False),
    ("caller=5300+1", False),
    ("startTime=2013-07-01 08:30", False),
    ("caller=,5300", False),
    ("caller=5300,", False),
    ("caller=5300,,5301", False),
    ("caller=5300-5301-", False),
    ("startTime=2013-02-30", False),
    ("startTime=2013-07-01T24:00", False),
    ("format=html", False),
    ("callerNumber=3XXX&status=answered&order=desc", True),
    ("callerNumber=3X1", False),
    ("status=ringing", False),
    ("caller=%G1", False),
]


@pytest.mark.parametrize(("qs", "accepted"), LISTED)
def test_listed_cases(qs, accepted):
    assert rust_accepts(qs) == accepted
    assert ref_accepts(qs) == accepted


# Valid queries built from the syntax tree.
DIGITS = st.text("0123456789", min_size=1, max_size=22)
exact = st.text(string.digits + "ab*#+.", min_size=1, max_size=6)
wildcard = st.builds(
    lambda a, w, b: a + w + b,
    st.text(string.digits + "ab-.", max_size=3),
    st.sampled_from(["@", "_", "@@", "_@", "@_"]),
    st.text(string.digits + "ab-@_", max_size=3),
)
ranged = st.builds(
    lambda lo, hi: f"{lo}-{hi}",
    st.text(string.digits + "a", max_size=22),
    st.text(string.digits, max_size=22),
)
pattern_list = st.lists(st.one_of(exact, wildcard, ranged), min_size=1, max_size=4).map(",".join)
two = lambda hi: st.integers(0, hi).map(lambda v: f"{v:02}")  # noqa: E731
date = st.builds(lambda y, m, d: f"{y}-{m:02}-{d:02}", st.integers(2000, 2030), st.integers(1, 12), st.integers(1, 28))
zone = st.one_of(
    st.just(""),
    st.just("Z"),
    st.builds(lambda s, h, m: f"{s}{h}:{m}", st.sampled_from(["%2B", "-"]), two(14), two(59)),
)
clock = st.builds(
    lambda h, m, s, f, z: f"{h}:{m}" + (f":{s}" if s else "") + (f".{f}" if s and f else "") + z,
    two(23), two(59), st.one_of(st.none(), two(59)), st.one_of(st.none(), st.text("0123456789", min_size=1, max_size=6)), zone,
)  # fmt: skip
times = st.one_of(
    date, st.builds(lambda d, c: f"{d}T{c}", date, clock), clock, st.just("now"),
    st.integers(1_000_000_000, 1_900_000_000).map(str), st.just(""),
)  # fmt: skip
webui = st.lists(
    st.builds(lambda p, x, a: p + x + a, st.text("0123456789ab", max_size=3), st.sampled_from(["", "X", "XX", "xXX"]),
              st.sampled_from(["", "."])).filter(bool),
    min_size=1, max_size=3,
).map(",".join)  # fmt: skip


def encode(value: str, how: int) -> str:
    """As a browser would send it: '+' always escaped, '@' sometimes."""
    value = value.replace("+", "%2B")
    return value.replace("@", "%40") if how % 2 else value


@st.composite
def queries(draw) -> str:
    pieces = []
    for name, strategy in [
        ("caller", pattern_list), ("callee", pattern_list), ("startTime", times), ("endTime", times),
        ("minDur", st.integers(0, 900).map(str)), ("maxDur", st.integers(0, 900).map(str)),
        ("numRecords", st.integers(0, 50).map(str)), ("offset", st.integers(0, 20).map(str)),
        ("callerNumber", webui), ("status", st.sampled_from(["answered", "noanswer", "busy", "failed", "busy,failed"])),
        ("callerName", st.sampled_from(["ann", "BOB", "o"])), ("order", st.sampled_from(["asc", "desc"])),
        ("extGroup", st.sampled_from(["Sales", "Ops", "Sales,Ops"])),
    ]:  # fmt: skip
        if draw(st.booleans()) and draw(st.booleans()):
            key = draw(st.sampled_from([name, name.lower(), name.upper()]))
            pieces.append(f"{key}={encode(draw(strategy), draw(st.integers(0, 3)))}")
    return "&".join(draw(st.permutations(pieces)))


ZONES = ["UTC", "Europe/Berlin", "America/New_York"]
values = st.one_of(
    st.none(), st.just(""), st.text("0123456789", min_size=1, max_size=6), st.text("0123456789", min_size=20, max_size=25),
    st.text("0123456789ab-+", max_size=8),
)  # fmt: skip


@st.composite
def frames(draw) -> pl.DataFrame:
    n = draw(st.integers(0, 25))
    tz = draw(st.sampled_from(ZONES))
    base = datetime(2013, 6, 1)
    rows = {
        "AcctId": list(range(n)),
        "src": [draw(values) for _ in range(n)],
        "dst": [draw(values) for _ in range(n)],
        "start": [draw(st.none() | st.integers(0, 400 * 86_400).map(lambda s: base + timedelta(seconds=s))) for _ in range(n)],
        "billsec": [draw(st.none() | st.integers(0, 1000)) for _ in range(n)],
        "disposition": [draw(st.sampled_from(["ANSWERED", "NO ANSWER", "BUSY", "FAILED", "CONGESTION"])) for _ in range(n)],
        "caller_name": [draw(st.sampled_from([None, "Ann", "bob", "Zoë"])) for _ in range(n)],
        "cdr_kind": [draw(st.sampled_from(["record", "sub", "main"])) for _ in range(n)],
    }  # fmt: skip
    df = pl.DataFrame(rows, schema_overrides={"start": pl.Datetime("us"), "src": pl.String, "dst": pl.String})
    return df.with_columns(pl.col("start").dt.replace_time_zone(tz, ambiguous="earliest", non_existent="null"))


GROUPS = {"Sales": ["5300", "6001", ""], "Ops": ["12", "0123456789"]}


@given(frames(), queries())
def test_same_rows_as_the_reference(df, qs):
    expected = [
        r["AcctId"] for r in reference.select(reference.compile(qs, now_us(NOW), groups=GROUPS), df.rows(named=True))
    ]
    assert cdrq.query(df, qs, now=NOW, groups=GROUPS)["AcctId"].to_list() == expected
    assert cdrq.query(df.lazy(), qs, now=NOW, groups=GROUPS).collect()["AcctId"].to_list() == expected


@given(frames(), queries())
@settings(max_examples=25)
def test_scan_and_sql_give_the_reference_rows(tmp_path_factory, df, qs):
    # One plan, compiled once, through the reader's pushdown and through SQL.
    plan = compile_query(qs, NOW, GROUPS)
    ref = reference.compile(qs, now_us(NOW), groups=GROUPS)
    con = duckdb.connect()
    con.register("cdrs", df.with_row_index("_order"))
    rows = con.sql(cdrq.to_sql(plan, "duckdb", tz="UTC", order_by="_order")).pl()
    assert rows["AcctId"].to_list() == [r["AcctId"] for r in reference.select(ref, df.rows(named=True))]
    # A CSV archive holds legs only (its reader sets cdr_kind itself).
    legs = df.filter(pl.col("cdr_kind") != "main")
    csv = tmp_path_factory.mktemp("scan") / "cdrs.csv"
    legs.with_columns(pl.col("start").dt.replace_time_zone(None)).write_csv(csv, datetime_format="%Y-%m-%d %H:%M:%S")
    scanned = cdrq.query(cdrq.scan(csv, tz=legs.schema["start"].time_zone), plan).collect()
    assert scanned["AcctId"].to_list() == [r["AcctId"] for r in reference.select(ref, legs.rows(named=True))]


PARSER = reference.PARSER


@given(from_lark(PARSER, start="pattern_list"))
def test_grammar_generated_pattern_lists(text):
    assume(len(text) < 200)
    assert rust_accepts(f"caller={text}") == ref_accepts(f"caller={text}")


@given(from_lark(PARSER, start="time"))
def test_grammar_generated_times(text):
    qs = "startTime=" + text.replace("+", "%2B")
    assert rust_accepts(qs) == ref_accepts(qs)


@given(from_lark(PARSER, start="webui_list"))
def test_grammar_generated_webui(text):
    assert rust_accepts(f"callerNumber={text}") == ref_accepts(f"callerNumber={text}")


@given(st.text(max_size=40))
def test_arbitrary_text_only_ever_raises_query_error(text):
    assert rust_accepts(text) == ref_accepts(text)
    for prefix in ("caller=", "startTime=", "callerNumber="):
        assert rust_accepts(prefix + text) == ref_accepts(prefix + text)
