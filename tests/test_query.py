"""Every rule, error and Decision of docs/query-language.md, through
`cdrq.query` (library API) and `cdrq.cdrapi` (the UCM-identical surface)."""

from __future__ import annotations

from datetime import datetime, timezone

import polars as pl
import pytest

import cdrq

NOW = datetime(2013, 7, 15, 12, 0, tzinfo=timezone.utc)


def frame(tz: str = "UTC") -> pl.DataFrame:
    rows = [
        # AcctId, src, dst, start (PBX wall clock), billsec, disposition, caller_name, kind, session
        (1, "5300", "5301", "2013-07-01 08:00:00", 9, "ANSWERED", "Ann", "record", "s1"),
        (2, "6345", "5555", "2013-07-01 09:00:00", 3, "NO ANSWER", "Bob", "record", "s2"),
        (3, "1400", "6300", "2013-07-02 10:00:00", None, "BUSY", None, "record", "s3"),
        (4, None, "s", "2013-07-03 11:00:00", 0, "CONGESTION", "ann lee", "record", "s4"),
        (5, "1234567890123456789012345", "5300", "2013-07-31 23:59:59", 20, "FAILED", "Zoë", "record", "s5"),
        (6, "x-5302", "", None, 8, "ANSWERED", "", "record", "s6"),
        (7, "5300", "5301", "2013-07-04 08:00:00", 9, "ANSWERED", "Ann", "main", "s7"),
    ]
    cols = ["AcctId", "src", "dst", "start", "billsec", "disposition", "caller_name", "cdr_kind", "session"]
    df = pl.DataFrame(rows, schema=cols, orient="row")
    return df.with_columns(pl.col("start").str.to_datetime("%Y-%m-%d %H:%M:%S").dt.replace_time_zone(tz))


def ids(qs: str, **kw) -> list[int]:
    return cdrq.query(frame(**{k: v for k, v in kw.items() if k == "tz"}), qs, now=NOW)["AcctId"].to_list()


@pytest.mark.parametrize(
    ("qs", "expected"),
    [
        ("", [1, 2, 3, 4, 5, 6]),  # main rows are summaries, not legs
        ("caller=5300", [1]),
        ("caller=5300,1400", [1, 3]),
        ("caller=5300&caller=1400", [1, 3]),  # repeats joined with ','
        ("CALLER=5300", [1]),  # names without regard to case
        ("caller=5@", [1]),
        ("caller=@5", [2, 5]),  # the 25-digit value ends with 5
        ("callee=@5", [2]),
        ("callee=@1", [1]),
        ("caller=_4@", [3]),  # 4 as the second character
        ("caller=6300-6399", [2]),
        ("caller=0-0", [4]),  # no digits (null is empty) counts as 0; "x-5302" has digits
        ("caller=5302-5302", [6]),  # non-digits stripped from the value
        ("caller=6399-6300", []),  # LO > HI
        ("caller=1234567890123456789012344-1234567890123456789012346", [5]),  # 25 digits, no overflow
        ("callee=s", [4]),
        ("callee=S", []),  # exact is case-sensitive
        ("caller=x-5302", [1, 3, 4, 6]),  # one '-': a range, letters stripped (x is 0)
        ("minDur=9", [1, 5]),  # a missing billsec never matches a bound
        ("maxDur=3", [2, 4]),
        ("minDur=3&maxDur=9", [1, 2, 6]),
        ("startTime=2013-07-02&endTime=2013-07-31T23:59:59", [3, 4, 5]),  # inclusive; null start never
        ("startTime=2013-07-01T09:00:00.000001", [3, 4, 5]),
        ("endTime=2013-07-01T08:00", [1]),
        ("startTime=2013-07-01T10:00%2B02:00&endTime=2013-07-01T08:00Z", [1]),
        ("startTime=&endTime=", [1, 2, 3, 4, 5, 6]),  # empty = unbounded
        ("startTime=now", [5]),
        ("endTime=1372636800", []),  # Unix seconds: 2013-07-01 00:00 UTC
        ("numRecords=2", [1, 2]),
        ("offset=4", [5, 6]),
        ("offset=1&numRecords=2", [2, 3]),
        ("numRecords=0", []),
        ("format=json&caller=5300", [1]),
    ],
)
def test_rules(qs, expected):
    assert ids(qs) == expected


def test_start_is_compared_as_an_instant_in_the_archive_zone():
    # 08:00 wall clock in Berlin (summer) is 06:00 UTC.
    assert cdrq.query(frame("Europe/Berlin"), "startTime=2013-07-01T06:00&endTime=2013-07-01T06:00", now=NOW)[
        "AcctId"
    ].to_list() == [1]


@pytest.mark.parametrize(
    ("qs", "param", "text", "position"),
    [
        ("caler=5300", "caler", "caler", 0),
        ("caller", "", "caller", 0),
        ("caller=1&", "", "&", 8),
        ("caller=", "caller", "", 0),
        ("format=csv&offset=1&offset=2", "offset", "offset", 20),
        ("numRecords=12a", "numRecords", "a", 13),
        ("callee=5300&caller=53%2000", "caller", " ", 21),
        ("caller=,1", "caller", ",", 7),
        ("caller=1,", "caller", ",", 8),
        ("caller=1,,2", "caller", ",", 9),
        ("caller=5300-5301-", "caller", "5300-5301-", 7),
        ("startTime=2013-02-30", "startTime", "2013-02-30", 10),
        ("startTime=2013-07-01 08:00", "startTime", " ", 20),
        ("format=html", "format", "html", 7),
    ],
)
def test_errors_raise_query_error_naming_param_text_position(qs, param, text, position):
    with pytest.raises(cdrq.QueryError) as e:
        cdrq.query(frame(), qs)
    assert (e.value.param, e.value.text, e.value.position) == (param, text, position)
    assert isinstance(e.value, cdrq.CdrqError)


def test_library_paging_has_no_clamp_and_cdrapi_clamps_to_1000():
    big = pl.DataFrame({"AcctId": range(2500), "src": ["1"] * 2500, "cdr_kind": ["record"] * 2500})
    big = big.with_columns(start=pl.lit(None, pl.Datetime("us", "UTC")), billsec=pl.lit(1))
    assert cdrq.query(big, "").height == 2500
    assert cdrq.query(big, "numRecords=2000").height == 2000
    csv = cdrq.cdrapi(big, "numRecords=5000")
    assert csv.count("\n") == 1001  # header + 1000
    assert cdrq.cdrapi(big, "").count("\n") == 1001  # default page
    assert cdrq.cdrapi(big, "offset=2400").count("\n") == 101


@pytest.mark.parametrize(
    ("qs", "empty"),
    [
        ("format=json&caler=1", '{"cdr_root": []}'),
        ("format=xml&caller=", '<?xml version="1.0" encoding="UTF-8"?>\n<cdr_root/>\n'),
        ("format=json&caller=5300&", '{"cdr_root": []}'),
        ("format=html&caller=5300", None),  # a bad format: the CSV header
        ("caller=1,,2", None),
    ],
)
def test_cdrapi_errors_are_empty_containers(qs, empty):
    body = cdrq.cdrapi(frame(), qs)
    if empty is None:
        assert body.count("\n") == 1 and body.startswith("AcctId,")
    else:
        assert body == empty


def test_web_ui_filters_are_library_only():
    assert ids("callerNumber=5XXX") == [1]
    assert ids("callerNumber=1.") == [3, 5]
    assert ids("callerNumber=.") == [1, 2, 3, 4, 5, 6]  # anything, a null (empty) number included
    assert ids("calleeNumber=5X.") == [1, 2, 5]
    assert ids("callerName=ann") == [1, 4]
    assert ids("status=answered") == [1, 6]
    assert ids("status=failed") == [4, 5]  # CONGESTION counts as failed
    assert ids("status=no%20answer,busy") == [2, 3]
    assert ids("order=desc&numRecords=2") == [6, 5]
    with pytest.raises(cdrq.QueryError, match="not one of the listed words"):
        ids("status=ringing")
    assert cdrq.cdrapi(frame(), "format=json&callerNumber=5XXX") == '{"cdr_root": []}'


def test_trunk_action_account_and_groups():
    df = pl.DataFrame(
        {
            "AcctId": [1, 2, 3, 4, 5],
            "src": ["1000", "0711", "1001", "1002", "2000"],
            "dst": ["0800", "1000", "1003", "0900", "2001"],
            "src_trunk_name": [None, "T1", None, "T1", None],
            "dst_trunk_name": ["T2", None, None, "T2", None],
            "dcontext": ["from-internal", "ext-did-1", "from-internal", "x", "ext-did-2"],
            "dstchannel": ["PJSIP/trunk_2-1", None, "PJSIP/1003", None, None],
            "action_type": ["DIAL", "RINGGROUP[6400]", "FOLLOW_ME", "CONFERENCE [6300]", "Ring Group"],
            "accountcode": [None, "A1", None, None, "A1"],
            "cdr_kind": ["record"] * 5,
        }
    )
    q = lambda qs, **kw: cdrq.query(df, qs, **kw)["AcctId"].to_list()  # noqa: E731
    assert q("callType=outbound") == [1]
    assert q("callType=inbound") == [2, 5]  # 5: no trunk fields, ext-did context
    assert q("callType=external") == [4]
    assert q("callType=internal") == [3]
    assert q("srcTrunk=T1&dstTrunk=T2") == [4]
    assert q("actionType=Ring%20Group") == [2]
    assert q("actionType=follow_me,conference") == [3, 4]
    assert q("accountCode=A1") == [2, 5]
    assert q("extGroup=Sales", groups={"Sales": ["1003", "2000"]}) == [3, 5]
    with pytest.raises(cdrq.QueryError, match="unknown extension group"):
        q("extGroup=Ops", groups={"Sales": ["1"]})


def test_compile_pattern_matches_and_expr_agree():
    pat = cdrq.compile_pattern("5300,6300-6399,_4@,@9,1@2")
    values = ["5300", "6345", "1400", "79", "112", "x", None, "6399"]
    expected = [True, True, True, True, True, False, False, True]
    assert [pat.matches(v) for v in values] == expected
    df = pl.DataFrame({"v": values})
    assert df.select(pat.expr("v"))["v"].to_list() == expected
    webui = cdrq.compile_pattern("3XXX,4.", dialect="webui")
    assert [webui.matches(v) for v in ["3123", "312", "4", "49x", "5"]] == [True, False, True, True, False]
    with pytest.raises(cdrq.QueryError):
        cdrq.compile_pattern("3X1", dialect="webui")


def test_guide_examples_on_a_fixture_archive(samples):
    df = cdrq.read(samples / "ucm6510-fw1.0.2.5-cdrapi.csv")
    examples = {
        "format=csv&caller=5300,5302-5304,_4@&startTime=2013-07-01T00:00:00&endTime=2013-12-31T23:59:59": 3,
        "format=json&caller=5300&callee=5301&minDur=6": 1,
        "format=xml&callee=5@&numRecords=2&offset=1": 2,
        "caller=5300&startTime=2013-12-03T14:00:00": 2,
        "callee=5301&maxDur=4": 2,
        "caller=6300-6399": 0,
    }
    for qs, n in examples.items():
        assert cdrq.query(df, qs).height == n, qs


# A plan is compiled once and travels ------------------------------------------


def test_a_plan_carries_its_groups_into_a_scan(samples):
    path = samples / "ucm6510-fw1.0.2.5-cdrapi.csv"
    groups = {"S": ["5301"]}
    expected = cdrq.query(cdrq.read(path), "extGroup=S", groups=groups)
    assert expected.height > 0
    # The query is pushed into the scan's reader with its groups (a second
    # compile without them used to fail: "unknown extension group").
    scanned = cdrq.query(cdrq.scan(path), "extGroup=S", groups=groups).collect()
    assert scanned.equals(expected)


def test_one_now_for_the_reader_and_the_exact_filter(samples):
    path = samples / "ucm6510-fw1.0.2.5-cdrapi.csv"
    frame = cdrq.read(path)
    now = frame["start"].sort()[2]  # `endTime=now` keeps the first three calls
    plan = cdrq.compile_query("endTime=now", now=now)
    assert plan.now_us == int(now.timestamp() * 1_000_000)
    assert cdrq.query(cdrq.scan(path), plan).collect().equals(cdrq.query(frame, plan))
    assert cdrq.query(frame, plan).height == 3
    assert cdrq.to_sql(plan, "duckdb") == cdrq.to_sql("endTime=now", "duckdb", now=now)


def test_a_plan_is_typed_and_refuses_a_second_now_or_groups():
    plan = cdrq.compile_query("caller=5300,6300-6399&status=busy,failed&numRecords=5", groups={"G": ["1"]})
    assert plan.caller == [("exact", "5300"), ("range", ("6300", "6399"))]
    assert plan.dispositions == ["BUSY", "FAILED", "CONGESTION"]
    assert (plan.num_records, plan.offset, plan.groups) == (5, None, [("G", ["1"])])
    assert plan.mask("caller") is not None and plan.mask("callee") is None
    with pytest.raises(cdrq.CdrqError, match="already fixed"):
        cdrq.query(pl.DataFrame({"src": ["1"]}), plan, now=datetime(2024, 1, 1, tzinfo=timezone.utc))
    with pytest.raises(cdrq.CdrqError, match="library=False"):
        cdrq.cdrapi(pl.DataFrame({"src": ["1"]}), plan)


def test_frames_derived_from_a_scan_are_filtered_by_polars(samples):
    path = samples / "ucm6510-fw1.0.2.5-cdrapi.csv"
    derived = cdrq.scan(path).select("AcctId", "src", "cdr_kind")
    got = cdrq.query(derived, "caller=5300").collect()
    assert got["AcctId"].to_list() == cdrq.query(cdrq.read(path), "caller=5300")["AcctId"].to_list()


@pytest.mark.parametrize(
    "qs", ["offset=9223372036854775808", "offset=18446744073709551615&numRecords=18446744073709551615"]
)
def test_offsets_past_any_frame_give_an_empty_page(samples, qs):
    frame = cdrq.read(samples / "ucm6510-fw1.0.2.5-cdrapi.csv")
    assert cdrq.query(frame, qs).height == 0
    assert cdrq.query(frame.lazy(), qs).collect().height == 0
    assert cdrq.cdrapi(frame, qs).count("\n") == 1  # the CSV header alone
