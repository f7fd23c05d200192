"""`cdrq serve` over a dataset, by month (issue 16): each month read from its
parts on first use and kept in a bounded LRU, a time window reading only the
months it meets; every page byte-identical to `cdrq.cdrapi` over the whole
dataset read at once."""

from __future__ import annotations

import json
import random
import shutil
import ssl
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_cli import failed, run
from test_serve import PASSWORD, USER, Running

import cdrq
from cdrq.query import apply, compile_query
from cdrq.services import server
from cdrq.zones import DEFAULT_TZ

BERLIN = ZoneInfo("Europe/Berlin")
NUMBERS = ["1000", "1001", "5300", "6001", "6012", "6345", "7000"]


def call(session: str, acct: int, starts: list[datetime | None], rng: random.Random) -> dict:
    """A call in the CDR API's JSON: one leg is its own main record; several
    follow a stored main record that starts with the first."""

    def leg(when: datetime | None, k: int) -> dict:
        return {
            "AcctId": str(acct + k),
            "src": rng.choice(NUMBERS),
            "dst": rng.choice(NUMBERS),
            "start": "" if when is None else f"{when:%Y-%m-%d %H:%M:%S}",
            "billsec": str(rng.randrange(0, 300)),
            "disposition": rng.choice(["ANSWERED", "NO ANSWER", "BUSY"]),
            "session": session,
            "action_type": "DIAL",
        }

    legs = [leg(when, k) for k, when in enumerate(starts)]
    if len(legs) == 1:
        return {"cdr": session, "main_cdr": legs[0]}
    main = dict(legs[0], AcctId="", billsec=str(sum(int(x["billsec"]) for x in legs)))
    return {"cdr": session, "main_cdr": main} | {f"sub_cdr_{k}": x for k, x in enumerate(legs, 1)}


def calls(n: int, seed: int, first: datetime, days: int) -> list[dict]:
    """``n`` calls starting over ``days`` days from ``first`` (Berlin wall
    time), out of start order, 1-3 legs each, some legs with no start."""
    rng = random.Random(seed)
    out = []
    for k in range(n):
        when = first + timedelta(seconds=rng.randrange(days * 86400))
        starts: list[datetime | None] = [when + timedelta(minutes=3 * j) for j in range(rng.choice([1, 1, 2, 3]))]
        if rng.random() < 0.06:
            starts[-1] = None
        out.append(call(f"{seed}-{k}", 10 * (1000 * seed + k), starts, rng))
    return out


def write_run(directory: Path, name: str, records: list[dict]) -> Path:
    path = directory / name
    path.write_text(json.dumps({"cdr_root": records}))
    return path


@pytest.fixture(scope="module")
def months_dataset(tmp_path_factory, samples) -> Path:
    """Five months of 2024 in Europe/Berlin written in two runs (two parts a
    month), calls crossing a month boundary (in Berlin, and in UTC only), a
    leg without a start in a call that has one, and a 2015 month of CSV."""
    directory = tmp_path_factory.mktemp("months")
    first = datetime(2024, 1, 1)
    end_of_january = [datetime(2024, 1, 31, 23, 58), datetime(2024, 1, 31, 23, 59, 30), datetime(2024, 2, 1, 0, 1)]
    crossing = [
        call("across-feb", 10, end_of_january, random.Random(1)),
        call("across-utc-apr", 20, [datetime(2024, 4, 1, 1, 50), datetime(2024, 4, 1, 2, 10)], random.Random(2)),
        call("no-start", 30, [datetime(2024, 3, 5, 10, 0), None, datetime(2024, 3, 5, 10, 9)], random.Random(3)),
    ]
    runs = [calls(160, 1, first, 150) + crossing, calls(140, 2, first, 150)]
    root = directory / "ds"
    for k, records in enumerate(runs):
        counts = cdrq.convert(write_run(directory, f"run{k}.json", records), root, tz="Europe/Berlin")
        assert counts["rejects"] == 0
    cdrq.convert(samples / "ucm6xxx-fw1.0.11-cdrapi.csv", root, tz="Europe/Berlin")
    return root


def open_months(root: Path, months: int = 2, size: int = 1 << 30, **kw) -> server.Archive:
    return server.open_archive(
        root, user=USER, password=PASSWORD, permit=[], cache_months=months, cache_bytes=size, **kw
    )


def test_the_dataset_has_what_the_tests_need(months_dataset):
    served = open_months(months_dataset, tz=DEFAULT_TZ)
    assert served.frame is None and served.months is not None
    keys = served.months.keys
    assert (
        keys[0] == "year=2015/month=11"
        and keys[-1] == "year=__HIVE_DEFAULT_PARTITION__/month=__HIVE_DEFAULT_PARTITION__"
    )
    assert [k[5:9] + k[-2:] for k in keys[1:-1]] == [f"2024{m:02}" for m in range(1, 6)]
    assert all(len(served.months.files[k]) == 2 for k in keys[1:6])
    whole = cdrq.read(months_dataset)
    assert served.records == whole.height
    across = whole.filter(pl.col("session") == "across-feb").sort("leg")
    assert across["cdr_kind"].to_list() == ["main", "sub", "sub", "sub"] and across["start"][-1].month == 2


QUERY = st.fixed_dictionaries(
    {},
    optional={
        "caller": st.sampled_from(["1000", "6@", "1000-1001", "@5", "5300,6001-6012", "%"]),
        "callee": st.sampled_from(["6012", "1@", "6000-6999", "_0@"]),
        "startTime": st.sampled_from(
            [
                "2024-01-31T22:58:30Z",
                "2024-01-31T23:59:00%2B01:00",
                "2024-02-01T00:00:00",
                "2024-03-15T12:00:00Z",
                "2024-03-31T23:55:00Z",
                "2023-01-01T00:00:00Z",
                "2030-01-01T00:00:00Z",
            ]
        ),
        "endTime": st.sampled_from(
            [
                "2024-01-31T23:00:00Z",
                "2024-02-01T00:01:00%2B01:00",
                "2024-03-05T09:05:00Z",
                "2024-04-01T00:30:00Z",
                "2024-06-30T00:00:00Z",
                "2015-12-01T00:00:00Z",
            ]
        ),
        "minDur": st.sampled_from(["0", "30", "200"]),
        "format": st.sampled_from(["csv", "json", "xml", "JSON", "yaml"]),
        "numRecords": st.sampled_from(["1", "3", "7", "50", "1000", "5000"]),
        "offset": st.sampled_from(["0", "1", "2", "5", "40", "150", "400", "100000", "18446744073709551615"]),
    },
)


@pytest.fixture(scope="module")
def served_both(months_dataset):
    """By month (at most 2 months held) and the whole dataset, in the
    dataset's zone and in UTC."""
    return {
        zone: (open_months(months_dataset, tz=zone), cdrq.read(months_dataset, tz=zone)) for zone in (DEFAULT_TZ, "UTC")
    }


@settings(max_examples=250, deadline=None)
@given(QUERY, st.sampled_from([DEFAULT_TZ, "UTC"]), st.booleans())
def test_every_page_by_month_is_cdrapis_over_the_whole(served_both, params, zone, descending):
    by_month, whole = served_both[zone]
    qs = "&".join(f"{k}={v}" for k, v in params.items())
    if not descending:  # the UCM's parameters: exactly cdrq.cdrapi's text
        assert by_month.answer(qs) == (cdrq.cdrapi(whole, qs), by_month.answer(qs)[1]), qs
    else:  # no /cdrapi parameter orders: a library plan's descending answer
        try:
            plan = compile_query(qs + "&order=desc" if qs else "order=desc", None, library=True)
        except cdrq.QueryError:  # what the library refuses (format=yaml): no page
            return
        fmt = (plan.format or "csv").lower()
        count = 1000 if plan.num_records is None else min(plan.num_records, 1000)
        page = by_month.render(plan, plan.offset or 0, count, fmt).decode()
        assert page == cdrq.render(apply(whole, plan, clamp=True), fmt, legs_of=whole), qs
    months = by_month.months
    assert len(months.loaded.cache) <= 2


def test_a_window_reads_only_the_months_it_meets(months_dataset):
    served = open_months(months_dataset, months=3)
    months = served.months
    whole = cdrq.read(months_dataset, tz="UTC")

    def loads_for(qs: str) -> int:
        before = months.loads
        assert served.answer(qs)[0] == cdrq.cdrapi(whole, qs), qs
        return months.loads - before

    assert loads_for("startTime=2024-02-10T00:00:00Z&endTime=2024-02-11T00:00:00Z") == 1  # February
    assert loads_for("startTime=2024-02-12T00:00:00Z&endTime=2024-02-13T00:00:00Z&format=json") == 0  # kept
    # Across the end of January (Berlin): January and February, both held already or not.
    assert loads_for("startTime=2024-01-31T22:00:00Z&endTime=2024-01-31T23:30:00Z&format=xml") == 1
    assert loads_for("startTime=2015-11-01T00:00:00Z&endTime=2015-12-01T00:00:00Z") == 1  # 2015
    assert loads_for("startTime=2030-01-01T00:00:00Z") == 0  # after every month: none read
    assert loads_for("endTime=2000-01-01T00:00:00Z") == 0
    assert len(months.loaded.cache) == 3
    # No window: every month filtered in order, those not held from only the
    # columns the filter reads, so nothing is read whole (its page is in
    # January, held) and the months held stay.
    held = set(months.loaded.cache)
    assert loads_for("numRecords=7&offset=3") == 0
    assert set(months.loaded.cache) == held
    # The next pages of it are slices of its matches: only their months are read.
    loaded = months.loads
    total = whole.filter(pl.col("cdr_kind") != "main").height
    for offset in range(0, total + 5, 97):
        qs = f"numRecords=100&offset={offset}&format=json"
        assert served.answer(qs)[0] == cdrq.cdrapi(whole, qs)
        assert len(months.loaded.cache) <= 3
    assert months.loads - loaded <= len(months.keys)  # walking forward: each month read once
    assert served.matches.computed == 7  # the pages of one query: one filter


def test_the_null_start_month_is_read_only_by_queries_without_a_window(months_dataset):
    served = open_months(months_dataset, months=1)
    months = served.months
    null_month = months.keys[-1]
    assert null_month.startswith("year=__HIVE_DEFAULT_PARTITION__") and months.spans[null_month] is None
    read, scan = [], months.scan
    months.scan = lambda key: read.append(key) or scan(key)
    # Every month with a start is read, then the page's (the first) again.
    served.answer("startTime=2000-01-01T00:00:00Z&numRecords=1")
    assert read == months.keys[:-1] + months.keys[:1]
    served.answer("numRecords=1")  # the null month too (the first is held)
    assert read == months.keys[:-1] + months.keys[:1] + months.keys[1:]
    assert list(months.loaded.cache) == months.keys[:1]


def test_a_call_across_months_renders_under_its_main_record(months_dataset):
    served = open_months(months_dataset, months=1, tz=DEFAULT_TZ)
    whole = cdrq.read(months_dataset)
    for qs in ("format=json&startTime=2024-02-01T00:00:00%2B01:00&endTime=2024-02-01T00:02:00%2B01:00", "format=xml"):
        assert served.answer(qs)[0] == cdrq.cdrapi(whole, qs)
    doc = json.loads(served.answer("format=json&startTime=2024-01-31T23:00:30Z&endTime=2024-01-31T23:01:00Z")[0])
    (only,) = doc["cdr_root"]  # February's leg alone, under the main record kept in January
    assert list(only) == ["cdr", "main_cdr", "sub_cdr_1"] and only["main_cdr"]["session"] == "across-feb"
    assert only["main_cdr"]["start"] == "2024-01-31 23:58:00" and only["sub_cdr_1"]["start"] == "2024-02-01 00:01:00"


def test_a_page_spanning_two_months(months_dataset):
    served = open_months(months_dataset, months=1)
    whole = cdrq.read(months_dataset, tz="UTC")
    legs = whole.with_row_index().filter(pl.col("cdr_kind") != "main")
    # The legs around the first January → February change of part file.
    starts = legs["start"].dt.convert_time_zone("Europe/Berlin").dt.month()
    boundary = next(k for k in range(1, legs.height) if starts[k - 1] == 1 and starts[k] == 2)
    for fmt in ("csv", "json", "xml"):
        qs = f"format={fmt}&numRecords=4&offset={boundary - 2}"
        page = served.answer(qs)[0]
        assert page == cdrq.cdrapi(whole, qs)
    assert len(served.months.loaded.cache) == 1


def test_a_one_month_dataset_of_the_old_firmware(tmp_path, samples):
    # 22 columns: the archive has no value in a newer one, and no main rows.
    cdrq.convert(samples / "ucm6510-fw1.0.2.5-cdrapi.csv", tmp_path / "ds")
    served = open_months(tmp_path / "ds", tz=DEFAULT_TZ)
    whole = cdrq.read(tmp_path / "ds")
    assert len(served.months.keys) == 1
    for qs in ("format=csv", "format=json&caller=5300", "format=xml&numRecords=1&offset=1", "format=bogus", "x=1"):
        assert served.answer(qs)[0] == cdrq.cdrapi(whole, qs), qs
    assert served.answer("format=csv")[0].count(",", 0, served.answer("format=csv")[0].index("\n")) == 21


def test_an_empty_dataset_is_refused_as_read_refuses_it(tmp_path):
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "_cdrq_manifest.jsonl").touch()
    with pytest.raises(cdrq.CdrqError) as expected:
        cdrq.read(tmp_path / "ds")
    with pytest.raises(cdrq.CdrqError) as got:
        open_months(tmp_path / "ds")
    assert str(got.value) == str(expected.value) and "holds no records yet" in str(got.value)


def test_records_added_while_served_wait_for_a_restart(tmp_path, months_dataset):
    root = tmp_path / "ds"
    shutil.copytree(months_dataset, root)
    served = open_months(root, months=1, tz=DEFAULT_TZ)
    before = cdrq.read(root)
    late = [call("late-1", 40, [datetime(2024, 2, 20, 12, 0)], random.Random(4))]  # into a month served
    late += [call("late-2", 50, [datetime(2024, 9, 1, 12, 0)], random.Random(5))]  # a month new
    cdrq.convert(write_run(tmp_path, "late.json", late), root, tz="Europe/Berlin")
    for qs in ("format=json", "startTime=2024-02-01T00:00:00Z&endTime=2024-10-01T00:00:00Z&numRecords=1000"):
        assert served.answer(qs)[0] == cdrq.cdrapi(before, qs)
    restarted = open_months(root, tz=DEFAULT_TZ)
    assert restarted.records == served.records + 2
    qs = "startTime=2024-09-01T00:00:00Z"
    assert restarted.answer(qs)[0] == cdrq.cdrapi(cdrq.read(root), qs) != served.answer(qs)[0]


def test_the_byte_bound_keeps_only_the_month_in_use(months_dataset):
    served = open_months(months_dataset, months=100, size=1)
    whole = cdrq.read(months_dataset, tz="UTC")
    qs = "numRecords=1000&format=xml"
    assert served.answer(qs)[0] == cdrq.cdrapi(whole, qs)
    assert len(served.months.loaded.cache) == 1


def test_served_by_month_over_tls(months_dataset, tls):
    archive = open_months(months_dataset)
    running = Running([server.LegacyApi(archive)], tls)
    whole = cdrq.read(months_dataset, tz="UTC")
    try:
        context = ssl.create_default_context(cafile=str(tls / "ca.pem"))
        with httpx.Client(verify=context, auth=httpx.DigestAuth(USER, PASSWORD)) as c:
            for qs in ("format=json&startTime=2024-03-01T00:00:00Z&endTime=2024-03-09T00:00:00Z", "numRecords=5"):
                r = c.get(f"{running.urls[0]}/cdrapi?{qs}")
                assert r.status_code == 200 and r.text == cdrq.cdrapi(whole, qs)
    finally:
        running.stop()


@pytest.mark.parametrize("option", ["--cache-months", "--cache-mib"])
@pytest.mark.parametrize("value", ["0", "-1", "x", "1.5"])
def test_cache_options_must_be_whole_numbers_from_one(option, value, tmp_path):
    assert failed(run("serve", str(tmp_path), "--self-signed", option, value), 2, option)


def test_months_of_a_naive_dataset(tmp_path):
    # tz=None: wall times without a zone; months and windows on the wall clock.
    records = calls(60, 7, datetime(2024, 5, 20), 20)
    cdrq.convert(write_run(tmp_path, "naive.json", records), tmp_path / "ds", tz=None)
    served = open_months(tmp_path / "ds", months=1, tz=None)
    whole = cdrq.read(tmp_path / "ds", tz=None)
    assert whole.schema["start"] == pl.Datetime("us", None)
    for qs in ("startTime=2024-05-31T23:00:00&endTime=2024-06-01T01:00:00", "format=json&offset=20", "caller=6@"):
        assert served.answer(qs)[0] == cdrq.cdrapi(whole, qs), qs
    before = served.months.loads
    served.answer("startTime=2024-06-02T00:00:00Z&endTime=2024-06-03T00:00:00Z")
    assert served.months.loads - before == 1


def test_the_start_index_slices_a_month_in_start_order(tmp_path):
    # One part in start order: the index finds the window as a slice.
    base = datetime(2024, 7, 1, tzinfo=timezone.utc)
    records = [call(f"s{k}", 10 * k, [base + timedelta(hours=k)], random.Random(k)) for k in range(100)]
    cdrq.convert(write_run(tmp_path, "ordered.json", records), tmp_path / "ds")
    served = open_months(tmp_path / "ds")
    whole = cdrq.read(tmp_path / "ds", tz="UTC")
    qs = "startTime=2024-07-02T00:00:00Z&endTime=2024-07-02T05:00:00Z&format=json"
    assert served.answer(qs)[0] == cdrq.cdrapi(whole, qs)
    (key,) = served.months.keys
    chunk = served.months.chunk(key)
    assert chunk.index is not None and chunk.index[2]  # in start order
    assert isinstance(chunk.window(compile_query(qs, None, library=False)), range)
