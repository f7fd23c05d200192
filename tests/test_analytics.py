"""cdrq.calls, report, concurrency, peak_concurrency and rate
(python/cdrq/analytics.py, rust/src/analytics/) against brute force written
here in plain Python: calls and KPIs over the vendor samples and
hand-made archives with legs, concurrency against a per-second sweep,
rating against a longest-prefix loop."""

from __future__ import annotations

import bisect
import math
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cdrq
from cdrq import analytics

SAMPLES = Path(__file__).parent / "samples"
FIXTURES = Path(__file__).parent / "fixtures"
ARCHIVES = sorted(p for p in SAMPLES.iterdir() if p.suffix in (".csv", ".json")) + sorted(FIXTURES.glob("*.zst"))
IDS = ("session", "linkedid", "uniqueid", "AcctId")
BERLIN = ZoneInfo("Europe/Berlin")

# A UCM JSON archive: a transfer (main + 2 legs), a ring group (3 parallel
# legs, one answered), a call with only its main row, a busy call.
LEGS_JSON = b"""{"cdr_root": [
 {"cdr": "s1", "main_cdr": {"session": "s1", "src": "1000", "dst": "1001", "start": "2024-03-31 01:59:50",
   "end": "", "billsec": "9", "duration": "16", "action_type": "DIAL"},
  "sub_cdr_1": {"session": "s1", "AcctId": "1", "src": "1000", "dst": "1001", "start": "2024-03-31 01:59:50",
   "answer": "2024-03-31 01:59:57", "end": "2024-03-31 03:00:02", "billsec": "5", "disposition": "ANSWERED",
   "dstanswer": "1001", "action_type": "DIAL"},
  "sub_cdr_2": {"session": "s1", "AcctId": "2", "src": "1000", "dst": "1002", "start": "2024-03-31 03:00:02",
   "answer": "2024-03-31 03:00:02", "end": "2024-03-31 03:00:06", "billsec": "4", "disposition": "ANSWERED",
   "dstanswer": "1002", "action_type": "TRANSFER"}},
 {"cdr": "s2", "main_cdr": {"session": "s2", "src": "0301234", "dst": "6400", "start": "2024-03-31 03:00:00",
   "src_trunk_name": "Telekom", "action_type": "RINGGROUP[6400]"},
  "sub_cdr_1": {"session": "s2", "AcctId": "3", "src": "0301234", "dst": "6401", "start": "2024-03-31 03:00:00",
   "end": "2024-03-31 03:00:05", "billsec": "0", "disposition": "NO ANSWER", "src_trunk_name": "Telekom"},
  "sub_cdr_2": {"session": "s2", "AcctId": "4", "src": "0301234", "dst": "6402", "start": "2024-03-31 03:00:00",
   "answer": "2024-03-31 03:00:04", "end": "2024-03-31 03:00:40", "billsec": "36", "disposition": "ANSWERED",
   "dstanswer": "6402", "src_trunk_name": "Telekom"},
  "sub_cdr_3": {"session": "s2", "AcctId": "5", "src": "0301234", "dst": "6403", "start": "2024-03-31 03:00:00",
   "end": "2024-03-31 03:00:04", "billsec": "0", "disposition": "NO ANSWER", "src_trunk_name": "Telekom"}},
 {"cdr": "s3", "main_cdr": {"session": "s3", "src": "1003", "dst": "004930555", "start": "2024-03-31 23:59:30",
   "answer": "2024-03-31 23:59:35", "end": "2024-04-01 00:00:40", "billsec": "65", "disposition": "ANSWERED",
   "dst_trunk_name": "Telekom", "action_type": "DIAL"}},
 {"cdr": "s4", "sub_cdr_1": {"session": "s4", "AcctId": "6", "src": "1004", "dst": "1005",
   "start": "2024-03-31 12:00:00", "end": "2024-03-31 12:00:03", "billsec": "0", "disposition": "BUSY"}}
]}"""


def asterisk_line(*, src, dst, start, answer, end, billsec, disposition, uniqueid, linkedid, sequence, dstchannel=""):
    """cdr_csv's 21 fields (loguniqueid, loguserfield, newcdrcolumns)."""
    duration = int((datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds())
    fields = ["", src, dst, "from-internal", src, f"PJSIP/{src}-1", dstchannel, "Dial", "", start, answer, end]
    fields += [str(duration), str(billsec), disposition, "DOCUMENTATION", uniqueid, "", "", linkedid, sequence]
    return ",".join(f'"{f}"' for f in fields).encode() + b"\n"


# An Asterisk Master.csv: a blind transfer (two records, one linkedid), an
# outbound call over a trunk channel, a zero-length failed call.
ASTERISK_CSV = b"".join(
    [
        asterisk_line(src="1001", dst="2000", start="2024-01-28 10:18:20", answer="2024-01-28 10:18:25",
                      end="2024-01-28 10:19:00", billsec=35, disposition="ANSWERED", uniqueid="p-1.0",
                      linkedid="p-1.0", sequence="7"),
        asterisk_line(src="1001", dst="2001", start="2024-01-28 10:19:00", answer="2024-01-28 10:19:00",
                      end="2024-01-28 10:19:30", billsec=30, disposition="ANSWERED", uniqueid="p-1.3",
                      linkedid="p-1.0", sequence="8"),
        asterisk_line(src="1002", dst="004930555", start="2024-01-28 10:18:50", answer="",
                      end="2024-01-28 10:19:10", billsec=0, disposition="BUSY", uniqueid="p-2.0",
                      linkedid="p-2.0", sequence="9", dstchannel="SIP/trunk_1-0001"),
        asterisk_line(src="1003", dst="1004", start="2024-01-28 10:19:10", answer="",
                      end="2024-01-28 10:19:10", billsec=0, disposition="FAILED", uniqueid="p-3.0",
                      linkedid="p-3.0", sequence="10"),
    ]
)  # fmt: skip


def read_archive(name: str) -> pl.DataFrame:
    if name == "legs.json":
        return cdrq.read(LEGS_JSON, tz="Europe/Berlin")
    if name == "asterisk.csv":
        return cdrq.read(ASTERISK_CSV, format="asterisk-csv", tz="Europe/Berlin")
    return cdrq.read(name, tz="Europe/Berlin")


ALL_ARCHIVES = [str(p) for p in ARCHIVES] + ["legs.json", "asterisk.csv"]


# --- brute force --------------------------------------------------------------


def call_type(row: dict) -> str:
    """docs/query-language.md §6, written out again."""
    src, dst = bool(row.get("src_trunk_name")), bool(row.get("dst_trunk_name"))
    if src and dst:
        return "external"
    if src:
        return "inbound"
    if dst:
        return "outbound"
    if (row.get("dcontext") or "").startswith("ext-did"):
        return "inbound"
    if "trunk_" in (row.get("dstchannel") or ""):
        return "outbound"
    return "internal"


def utc(t: datetime) -> datetime:
    return t.astimezone(timezone.utc) if t.tzinfo else t


def brute_calls(rows: list[dict]) -> dict:
    """Call id → the call view, from the rows in archive order."""
    groups: dict = defaultdict(list)
    for i, row in enumerate(rows):
        key = next((str(row[c]) for c in IDS if row.get(c) is not None), None)
        groups[key if key is not None else ("row", i)].append(row)
    out = {}
    for key, rs in groups.items():
        legs = [r for r in rs if r.get("cdr_kind") != "main"] or rs
        answered = [r for r in rs if (r.get("disposition") or "").upper() == "ANSWERED"]
        dispositions = [r["disposition"] for r in rs if r.get("disposition") is not None]
        # In UTC: Python compares and subtracts times of one zone by the wall clock.
        starts = [utc(r["start"]) for r in rs if r.get("start") is not None]
        ends = [utc(r["end"]) for r in rs if r.get("end") is not None]
        answers = [utc(r["answer"]) for r in rs if r.get("answer") is not None]
        start, end = min(starts, default=None), max(ends, default=None)
        trunks = {
            t: next((r[t] for r in rs if r.get(t) is not None), None) for t in ("src_trunk_name", "dst_trunk_name")
        }
        first = rs[0]
        out[key] = {
            "start": start,
            "answer": min(answers, default=None),
            "end": end,
            "duration": int((end - start).total_seconds()) if start and end else None,
            "talk": sum(r.get("billsec") or 0 for r in legs),
            "disposition": "ANSWERED" if answered else (dispositions[-1].upper() if dispositions else None),
            "direction": call_type({**first, **trunks}),
            "trunk": trunks["src_trunk_name"] or trunks["dst_trunk_name"],
            "src": first.get("src"),
            "dst": first.get("dst"),
            "answered_by": (answered[0].get("dstanswer") or answered[0].get("dst")) if answered else None,
            "legs": len(legs),
            "accountcode": first.get("accountcode"),
            "action_type": first.get("action_type"),
        }
    return out


def quantile(values: list[int], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    pos = q * (len(values) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (pos - lo)


def brute_kpis(calls: list[dict], short: int = 10) -> dict:
    answered = [c for c in calls if c["disposition"] == "ANSWERED"]
    talks = [c["talk"] for c in answered]
    n = len(answered)
    return {
        "calls": len(calls),
        "answered": n,
        "asr": n / len(calls) if calls else None,
        "acd": sum(talks) / n if n else None,
        "talk_total": sum(talks),
        "talk_avg": sum(talks) / n if n else None,
        "talk_p50": quantile(talks, 0.5),
        "talk_p95": quantile(talks, 0.95),
        "short_calls": sum(t < short for t in talks),
        "missed": sum(c["disposition"] == "NO ANSWER" for c in calls),
        "busy": sum(c["disposition"] == "BUSY" for c in calls),
        "failed": sum(c["disposition"] in ("FAILED", "CONGESTION") for c in calls),
    }


def close(a, b) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return a is not None and b is not None and math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
    return a == b


def assert_rows_equal(got: list[dict], want: list[dict]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert set(g) == set(w)
        for k in g:
            assert close(g[k], w[k]) or (g[k] is None and w[k] is None), (k, g, w)


def check_calls(df: pl.DataFrame) -> None:
    got = cdrq.calls(df)
    assert got.columns == list(cdrq.analytics.CALL_VIEW)
    want = brute_calls(df.to_dicts())
    assert got.height == len(want)
    by_call = {}
    for row in got.to_dicts():
        key = row.pop("call")
        by_call[key if key is not None else ("row", len(by_call))] = row
    for key, row in by_call.items():
        if isinstance(key, tuple):
            continue  # rows with no id: matched below by count only
        assert_rows_equal([row], [want[key]])
    assert sorted(str(k) for k in by_call if not isinstance(k, tuple)) == sorted(
        str(k) for k in want if not isinstance(k, tuple)
    )


def check_report(df: pl.DataFrame, by: list[str], every: str | None = None) -> None:
    got = cdrq.report(df, by=by or None, every=every)
    calls = list(brute_calls(df.to_dicts()).values())
    zone = getattr(df.schema.get("start"), "time_zone", None)
    groups: dict = defaultdict(list)
    for c in calls:
        key = [c[b] for b in by]
        if every == "hour_of_day":
            key.append(
                c["start"].astimezone(ZoneInfo(zone)).hour if c["start"] and zone else c["start"] and c["start"].hour
            )
        groups[tuple(key)].append(c)
    if not by and every is None:
        groups = {(): calls}
    want = [
        {**dict(zip([*by, *(["period"] if every else [])], k, strict=True)), **brute_kpis(v)} for k, v in groups.items()
    ]
    want.sort(key=lambda r: tuple((v is None, v) for v in r.values())[: len(by) + bool(every)])
    assert got.columns == [*by, *(["period"] if every else []), *cdrq.analytics.KPIS]
    assert_rows_equal(got.to_dicts(), want)


# --- calls and report ------------------------------------------------------------


def check_calls_and_reports(df: pl.DataFrame, by: list[str], by_hour: list[str]) -> None:
    check_calls(df)
    check_report(df, [])
    check_report(df, by)
    check_report(df, by_hour, every="hour_of_day")


@pytest.mark.parametrize("name", ALL_ARCHIVES, ids=lambda n: Path(n).name)
def test_calls_and_report_equal_brute_force_over_the_archives(name):
    check_calls_and_reports(read_archive(name), ["direction", "disposition"], ["trunk"])


def test_a_transfer_is_one_call():
    calls = cdrq.calls(cdrq.read(SAMPLES / "ucm6xxx-fw1.0.11-cdrapi-transfer.json"))
    assert calls.select("talk", "legs", "disposition", "answered_by", "duration").rows() == [
        (9, 2, "ANSWERED", "1001", 17)
    ]
    assert cdrq.report(cdrq.read(SAMPLES / "ucm6xxx-fw1.0.11-cdrapi-transfer.json"))["calls"].item() == 1


def test_legs_golden():
    calls = cdrq.calls(read_archive("legs.json"))
    assert calls.select("call", "talk", "legs", "disposition", "direction", "trunk", "answered_by").rows() == [
        ("s1", 9, 2, "ANSWERED", "internal", None, "1001"),
        ("s2", 36, 3, "ANSWERED", "inbound", "Telekom", "6402"),
        ("s4", 0, 1, "BUSY", "internal", None, None),
        ("s3", 65, 1, "ANSWERED", "outbound", "Telekom", "004930555"),
    ]
    asterisk = cdrq.calls(read_archive("asterisk.csv"))
    assert asterisk.select("call", "talk", "legs", "disposition", "direction").rows() == [
        ("p-1.0", 65, 2, "ANSWERED", "internal"),
        ("p-2.0", 0, 1, "BUSY", "outbound"),
        ("p-3.0", 0, 1, "FAILED", "internal"),
    ]


@pytest.mark.parametrize("name", ["legs.json", "asterisk.csv", str(SAMPLES / "ucm6510-fw1.0.2.5-cdrapi.csv")])
@pytest.mark.parametrize(
    "options",
    [{}, {"by": "direction", "every": "1h"}, {"by": ["trunk", "dst_prefix"], "digits": 2, "every": "1d"},
     {"every": "day_of_week", "qs": "status=answered"}, {"by": "dcontext", "every": "1mo"}],
)  # fmt: skip
def test_report_on_a_scan_equals_report_on_the_read_frame(name, options, tmp_path):
    path = tmp_path / Path(name).name
    data = {"legs.json": LEGS_JSON, "asterisk.csv": ASTERISK_CSV}.get(name) or Path(name).read_bytes()
    path.write_bytes(data)
    fmt = "asterisk-csv" if name == "asterisk.csv" else "auto"
    read = cdrq.report(cdrq.read(path, format=fmt, tz="Europe/Berlin"), **options)
    scanned = cdrq.report(cdrq.scan(path, format=fmt, tz="Europe/Berlin"), **options)
    assert read.equals(scanned, null_equal=True)
    assert (
        cdrq.calls(cdrq.scan(path, format=fmt, tz="Europe/Berlin"))
        .collect()
        .equals(cdrq.calls(cdrq.read(path, format=fmt, tz="Europe/Berlin")))
    )


def test_report_and_calls_on_a_dataset(tmp_path):
    src = tmp_path / "legs.json"
    src.write_bytes(LEGS_JSON)
    cdrq.convert(str(src), str(tmp_path / "ds"), tz="Europe/Berlin")
    want = cdrq.report(cdrq.read(src, tz="Europe/Berlin"), by="trunk")
    assert cdrq.report(str(tmp_path / "ds"), by="trunk").equals(want, null_equal=True)
    assert cdrq.report(cdrq.read(str(tmp_path / "ds")), by="trunk").equals(want, null_equal=True)
    assert cdrq.calls(str(tmp_path / "ds")).collect().height == 4


LEG_ROWS = st.fixed_dictionaries(
    {
        "session": st.sampled_from([None, "a", "b", "c", "d"]),
        "uniqueid": st.sampled_from([None, "u1", "u2"]),
        "AcctId": st.one_of(st.none(), st.integers(1, 4)),
        "cdr_kind": st.sampled_from(["record", "main", "sub"]),
        "start_s": st.one_of(st.none(), st.integers(0, 7200)),
        "length": st.integers(-5, 300),
        "answer_after": st.one_of(st.none(), st.integers(0, 20)),
        "billsec": st.one_of(st.none(), st.integers(0, 100)),
        "disposition": st.sampled_from(
            [None, "ANSWERED", "NO ANSWER", "BUSY", "FAILED", "CONGESTION", "answered", "Odd"]
        ),
        "src": st.sampled_from([None, "1000", "0301234", "+4930"]),
        "dst": st.sampled_from([None, "1001", "004930555", "6400"]),
        "dstanswer": st.sampled_from([None, "1001"]),
        "src_trunk_name": st.sampled_from([None, "T1"]),
        "dst_trunk_name": st.sampled_from([None, "T2"]),
        "dcontext": st.sampled_from([None, "from-internal", "ext-did-0001"]),
        "dstchannel": st.sampled_from([None, "PJSIP/1001-1", "SIP/trunk_2-7"]),
        "accountcode": st.sampled_from([None, "sales"]),
        "action_type": st.sampled_from([None, "DIAL", "RINGGROUP[6400]"]),
    }
)
EPOCH = datetime(2024, 3, 30, 23, 0, tzinfo=timezone.utc)


def legs_frame(rows: list[dict]) -> pl.DataFrame:
    out = []
    for r in rows:
        start = EPOCH + timedelta(seconds=r["start_s"]) if r["start_s"] is not None else None
        end = start + timedelta(seconds=r["length"]) if start else None
        answer = start + timedelta(seconds=r["answer_after"]) if start and r["answer_after"] is not None else None
        row = {k: v for k, v in r.items() if k not in ("start_s", "length", "answer_after")}
        out.append({**row, "start": start, "answer": answer, "end": end})
    schema = {k: pl.String for k in out[0] if k not in ("AcctId", "billsec", "start", "answer", "end")} if out else {}
    times = pl.Datetime("us", "Europe/Berlin")
    frame = pl.DataFrame(
        out, schema={**schema, "AcctId": pl.Int64, "billsec": pl.Int64, "start": times, "answer": times, "end": times}
    )
    return frame


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(LEG_ROWS, min_size=1, max_size=25))
def test_calls_and_report_equal_brute_force_on_random_legs(rows):
    df = legs_frame(rows)
    check_calls_and_reports(df, ["direction", "trunk"], ["disposition"])
    # The streaming engine agrees with the in-memory one.
    assert cdrq.report(df.lazy(), by="direction").equals(cdrq.report(df, by="direction"), null_equal=True)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(LEG_ROWS, min_size=1, max_size=30), st.randoms(use_true_random=False), st.integers(1, 3))
def test_a_stream_of_legs_gives_the_calls_of_the_frame(rows, random, hashes):
    """A LazyFrame is grouped where its legs lie, a few rows at a time; a
    call's legs far apart and calls sharing a call-id hash (narrowed here
    to 1 to 3 values) change nothing."""
    random.shuffle(rows)
    df = legs_frame(rows)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(analytics, "BATCH_ROWS", 2)
        patch.setattr(analytics, "call_hash", lambda call: call.hash(1) % hashes)
        streamed = cdrq.calls(df.lazy()).collect()
        reports = [cdrq.report(df.lazy(), **options) for options in REPORTS]
        peaks = cdrq.peak_concurrency(df.lazy(), by="trunk")
    assert streamed.sort(pl.all(), nulls_last=True).equals(cdrq.calls(df).sort(pl.all(), nulls_last=True))
    for options, report in zip(REPORTS, reports, strict=True):
        assert report.equals(cdrq.report(df, **options), null_equal=True), options
    assert peaks.equals(cdrq.peak_concurrency(df, by="trunk"))


def test_legs_that_change_between_the_two_passes_are_an_error():
    """A source read twice (a file rewritten meanwhile) that gives other
    rows the second time: an error, not calls closed at the wrong rows."""
    from polars.io.plugins import register_io_source

    frames = [legs_frame([{**row, "session": str(i)} for i, row in enumerate(ROWS * n)]) for n in (1, 2)]
    # The same number of rows, one leg of another call.
    frames += [frames[0], frames[0].with_columns(session=pl.Series(["0", "1", "1"]))]
    passes = iter(frames)

    def source(with_columns, predicate, n_rows, batch_size):
        frame = next(passes)
        yield frame if with_columns is None else frame.select(with_columns)

    lazy = register_io_source(source, schema=frames[0].schema)
    for _ in range(2):
        with pytest.raises(cdrq.CdrqError, match="changed between the two passes"):
            cdrq.calls(lazy).collect()


ROWS = [{"session": None, "uniqueid": None, "AcctId": 1, "cdr_kind": "record", "start_s": 0, "length": 9,
         "answer_after": 1, "billsec": 8, "disposition": "ANSWERED", "src": "1000", "dst": "1001", "dstanswer": None,
         "src_trunk_name": None, "dst_trunk_name": None, "dcontext": None, "dstchannel": None, "accountcode": None,
         "action_type": None}] * 3  # fmt: skip


REPORTS = [{}, {"by": "trunk", "every": "1h"}, {"by": ["disposition", "src"]}, {"every": "hour_of_day", "short": 30}]


def test_report_buckets_and_prefixes():
    df = read_archive("legs.json")
    out = cdrq.report(df, by="src_prefix", digits=2, every="1d")
    assert out.select("src_prefix", "period", "calls").rows() == [
        ("03", datetime(2024, 3, 31, tzinfo=BERLIN), 1),
        ("10", datetime(2024, 3, 31, tzinfo=BERLIN), 3),
    ]
    assert cdrq.report(df, every="day_of_week")["period"].to_list() == [7]
    assert cdrq.report(df, every="hour_of_day").select("period", "calls").rows() == [(1, 1), (3, 1), (12, 1), (23, 1)]


# --- a frame of calls, asked again --------------------------------------------------

RATES = pl.DataFrame({"prefix": ["0", "00", "1", "6"], "rate": [0.1, 0.3, 0.0, 0.05], "increment": ["60/60"] * 4})
QUESTIONS = {
    "calls": cdrq.calls,
    "report": cdrq.report,
    "report by trunk, dst prefix, hour": lambda d: cdrq.report(d, by=["trunk", "dst_prefix"], digits=2, every="1h"),
    "report by disposition, weekday": lambda d: cdrq.report(d, by="disposition", every="day_of_week", short=30),
    "report by answered_by, src": lambda d: cdrq.report(d, by=["answered_by", "src"]),
    "concurrency": cdrq.concurrency,
    "concurrency by direction per 10m": lambda d: cdrq.concurrency(d, by="direction", every="10m"),
    "peak_concurrency by trunk": lambda d: cdrq.peak_concurrency(d, by="trunk"),
    "rate": lambda d: cdrq.rate(d, RATES),
}


@pytest.mark.parametrize("name", ALL_ARCHIVES, ids=lambda n: Path(n).name)
def test_a_frame_of_calls_gives_the_answers_of_its_legs(name):
    """Every function takes `calls`' frame as it is (the report page groups
    the legs once and asks it everything): the same answers as of the legs."""
    legs = read_archive(name)
    calls = cdrq.calls(legs)
    for question, ask in QUESTIONS.items():
        assert ask(calls).equals(ask(legs), null_equal=True), question
    assert cdrq.report(calls.lazy(), by="trunk").equals(cdrq.report(legs, by="trunk"), null_equal=True)
    assert cdrq.calls(calls.lazy()).collect().equals(calls)


def test_a_frame_of_calls_keeps_no_leg_columns():
    calls = cdrq.calls(read_archive("legs.json"))
    with pytest.raises(cdrq.CdrqError, match=r"report needs the column\(s\) 'dcontext'.*it has: call, start"):
        cdrq.report(calls, by="dcontext")
    with pytest.raises(cdrq.CdrqError, match="'start'"):
        cdrq.concurrency(calls.drop("start"))  # no longer a frame of calls: its rows are legs


def test_no_calls_give_empty_answers_of_the_right_schema(tmp_path):
    """No rows, no rows left by a query, no calls: empty frames typed as
    ever; the totals one row of zeros, ASR and the talk times null (no NaN)."""
    legs = read_archive("legs.json")
    (tmp_path / "legs.json").write_bytes(LEGS_JSON)
    scanned = cdrq.scan(tmp_path / "legs.json", tz="Europe/Berlin")
    times = legs.schema["start"]
    empties = {
        "cleared": legs.clear(),
        "its calls": cdrq.calls(legs.clear()),
        "queried": cdrq.query(legs, "caller=99999"),
        "scan queried": cdrq.query(scanned, "caller=99999"),
    }
    for name, data in empties.items():
        assert cdrq.report(data).rows() == [(0, 0, None, None, 0, None, None, None, 0, 0, 0, 0)], name
        assert cdrq.report(data, by="trunk", every="1d").height == 0, name
        per_hour = cdrq.concurrency(data, by="trunk", every="1h")
        assert per_hour.height == 0, name
        assert per_hour.schema == pl.Schema({"trunk": pl.String, "period": times, "peak": pl.Int64, "at": times})
        assert cdrq.concurrency(data, every="hour_of_day").schema["period"] == pl.Int8, name
        assert cdrq.peak_concurrency(data).rows() == [(0, None)], name
    assert cdrq.report(scanned, qs="caller=99999")["asr"].to_list() == [None]


# --- careless and hostile input ----------------------------------------------------


def test_an_empty_frame_has_empty_answers():
    empty = cdrq.read(b"")
    assert cdrq.calls(empty).height == 0
    assert cdrq.report(empty).select("calls", "answered", "asr").rows() == [(0, 0, None)]
    assert cdrq.report(empty, by="trunk").height == 0
    assert cdrq.concurrency(empty).height == 0
    assert cdrq.peak_concurrency(empty).rows() == [(0, None)]
    assert cdrq.concurrency(empty, every="1h").height == 0


def test_missing_columns_are_named():
    frame = pl.DataFrame({"src": ["1"], "billsec": [3], "disposition": ["ANSWERED"]})
    with pytest.raises(cdrq.CdrqError, match=r"'start', 'end'.*it has: src, billsec, disposition"):
        cdrq.concurrency(frame)
    with pytest.raises(cdrq.CdrqError, match="'start'"):
        cdrq.calls(frame)
    with pytest.raises(cdrq.CdrqError, match="'start'"):
        cdrq.report(frame, every="1h")
    assert cdrq.report(frame)["calls"].item() == 1  # no time needed without `every`
    with pytest.raises(cdrq.CdrqError, match="'nosuch' is neither a field of the call view"):
        cdrq.report(frame, by="nosuch")
    with pytest.raises(cdrq.CdrqError, match="expected a Polars DataFrame"):
        cdrq.report(42)


@pytest.mark.parametrize("every", ["7x", "0h", "1", "h", "1 h", "-1d", "1s", ""])
def test_bad_every_is_an_error(every):
    df = read_archive("legs.json")
    with pytest.raises(cdrq.CdrqError, match="every="):
        cdrq.report(df, every=every)
    with pytest.raises(cdrq.CdrqError, match="every="):
        cdrq.concurrency(df, every=every)


@pytest.mark.parametrize("digits", [None, 0, -1, 2.5, True])
def test_prefix_groups_need_digits(digits):
    with pytest.raises(cdrq.CdrqError, match="digits=N"):
        cdrq.report(read_archive("legs.json"), by="dst_prefix", digits=digits)


def test_end_before_start_is_never_in_progress():
    t = datetime(2024, 1, 1, 12, tzinfo=timezone.utc)
    frame = pl.DataFrame(
        {
            "session": ["a", "b", "c"],
            "start": [t, t, t + timedelta(seconds=5)],
            "end": [t - timedelta(seconds=10), t, t + timedelta(seconds=8)],
            "billsec": [0, 0, 3],
            "disposition": ["FAILED", "FAILED", "ANSWERED"],
        }
    )
    assert cdrq.calls(frame)["duration"].to_list() == [-10, 0, 3]
    assert cdrq.concurrency(frame)["calls"].to_list() == [1, 0]
    assert cdrq.peak_concurrency(frame).rows() == [(1, t + timedelta(seconds=5))]


# --- concurrency -----------------------------------------------------------------


def brute_counts(spans: list[tuple[int, int]], lo: int, hi: int) -> dict[int, int]:
    return {t: sum(s <= t < e for s, e in spans) for t in range(lo, hi)}


def step_values(steps: pl.DataFrame, base: datetime) -> callable:
    """The step function as seconds from ``base`` → calls in progress."""
    times = [int(t) for t in steps["time"].dt.epoch("s") - int(base.timestamp())]
    calls = steps["calls"].to_list()
    return lambda t: calls[bisect.bisect_right(times, t) - 1] if bisect.bisect_right(times, t) else 0


SPANS = st.lists(st.tuples(st.integers(0, 6 * 3600), st.integers(-60, 4000)), min_size=1, max_size=30)
DST_DAYS = [datetime(2024, 3, 30, 22, tzinfo=timezone.utc), datetime(2024, 10, 26, 22, tzinfo=timezone.utc)]


def spans_frame(spans, base: datetime, groups=None) -> pl.DataFrame:
    times = pl.Datetime("us", "Europe/Berlin")
    return pl.DataFrame(
        {
            "session": [f"c{i}" for i in range(len(spans))],
            "start": [base + timedelta(seconds=s) for s, _ in spans],
            "end": [base + timedelta(seconds=s + n) for s, n in spans],
            "trunk_group": groups or ["x"] * len(spans),
        },
        schema={"session": pl.String, "start": times, "end": times, "trunk_group": pl.String},
    )


@settings(max_examples=25, deadline=None)
@given(SPANS, st.sampled_from(DST_DAYS))
def test_concurrency_equals_a_per_second_sweep(spans, base):
    """Calls spanning midnight and the DST change (zoned times), zero-length
    and backwards ones; the step function and the peaks per hour and per
    local day against a count at every second."""
    df = spans_frame(spans, base)
    steps = cdrq.concurrency(df)
    intervals = [(s, s + n) for s, n in spans]
    lo, hi = min(s for s, _ in spans) - 2, max(s + max(n, 0) for s, n in spans) + 2
    counts = brute_counts(intervals, lo, hi)
    value = step_values(steps, base)
    for t, count in counts.items():
        assert value(t) == count, t
    # Only changes are listed.
    assert all(a != b for a, b in zip(steps["calls"], steps["calls"][1:], strict=False))
    assert steps["time"].dt.epoch("us").is_sorted()  # instants: Python sorts a zone's times by the wall clock
    peak = cdrq.peak_concurrency(df)
    best = max(counts.values())
    first = min((t for t, c in counts.items() if c == best), default=None)
    peak = peak.with_columns(pl.col("at").dt.convert_time_zone("UTC"))
    assert peak.rows() == ([(best, base + timedelta(seconds=first))] if best else [(0, None)])
    for every, key in [("1h", lambda at: at.astimezone(timezone.utc).replace(minute=0, second=0)),
                       ("1d", lambda at: at.astimezone(BERLIN).date())]:  # fmt: skip
        buckets = cdrq.concurrency(df, every=every)
        changes = [t for t in range(lo + 1, hi) if counts[t] != counts[t - 1]]
        want: dict = {}
        if changes:
            first_bucket, last_bucket = (
                key(base + timedelta(seconds=changes[0])),
                key(base + timedelta(seconds=changes[-1])),
            )
            for t in range(lo, hi):
                at = base + timedelta(seconds=t)
                if first_bucket <= key(at) <= last_bucket and (key(at) not in want or counts[t] > want[key(at)][0]):
                    want[key(at)] = (counts[t], at.astimezone(timezone.utc))
        # In UTC: Python never finds a time in the repeated hour equal to one of another zone.
        got = {key(p): (peak, at.astimezone(timezone.utc)) for p, peak, at in buckets.rows()}
        # Buckets no second of the sweep's range falls in hold no change: peak 0 or carried.
        assert {k: v for k, v in got.items() if k in want} == want, every
        assert set(want) <= set(got)


@settings(max_examples=25, deadline=None)
@given(SPANS, st.lists(st.sampled_from(["T1", "T2", "T3"]), min_size=30, max_size=30))
def test_concurrency_by_group(spans, labels):
    labels = labels[: len(spans)]
    df = spans_frame(spans, DST_DAYS[0], labels)
    steps = cdrq.concurrency(df, by="trunk_group")
    peaks = cdrq.peak_concurrency(df, by="trunk_group")
    assert peaks["trunk_group"].to_list() == sorted(peaks["trunk_group"].to_list())
    for label in sorted(set(labels)):
        mine = [(s, s + n) for (s, n), g in zip(spans, labels, strict=True) if g == label]
        counts = brute_counts(mine, -2, 6 * 3600 + 4002)
        value = step_values(steps.filter(pl.col("trunk_group") == label), DST_DAYS[0])
        best = max(counts.values())
        for t in sorted({s for s, _ in mine} | {e for _, e in mine}):
            assert value(t) == counts.get(t, 0)
        got = peaks.filter(pl.col("trunk_group") == label)
        if best:
            assert got["peak"].item() == best
        else:
            assert got.height == 0


def test_concurrency_counts_calls_not_legs():
    """A ring group's three parallel legs are one call in progress."""
    peaks = cdrq.peak_concurrency(read_archive("legs.json"))
    assert peaks.rows() == [(2, datetime(2024, 3, 31, 3, tzinfo=BERLIN))]


# --- rating ----------------------------------------------------------------------


def brute_rate(number: str | None, table: list[dict], minute: int | None) -> dict | None:
    if number is None:
        return None
    best = None
    for row in table:
        band = row.get("band")
        in_force = (
            band is None
            or band[0] == band[1]
            or (
                minute is not None
                and (band[0] <= minute < band[1] if band[0] < band[1] else (minute >= band[0] or minute < band[1]))
            )
        )
        if number.startswith(row["prefix"]) and in_force and (best is None or len(row["prefix"]) > len(best["prefix"])):
            best = row
    return best


def billed(talk: int, first: int, step: int) -> int:
    if talk <= first:
        return first
    return first + math.ceil((talk - first) / step) * step


PREFIXES = st.text(alphabet="0123459+#", max_size=6)


RATE_ROWS = st.tuples(st.floats(0, 5), st.sampled_from(["60/60", "1/1", "30/6"]))
NUMBERS = st.one_of(st.none(), st.text(alphabet="0123459+#", max_size=9))


@settings(max_examples=60, deadline=None)
@given(
    st.dictionaries(PREFIXES, RATE_ROWS, min_size=1, max_size=40),
    st.lists(st.tuples(NUMBERS, st.integers(0, 200)), min_size=1, max_size=40),
)
def test_rating_equals_a_longest_prefix_loop(table, calls):
    rates = pl.DataFrame(
        {"prefix": list(table), "rate": [r for r, _ in table.values()], "increment": [i for _, i in table.values()]},
        schema={"prefix": pl.String, "rate": pl.Float64, "increment": pl.String},
    )
    t = datetime(2024, 5, 1, 9, 30, tzinfo=timezone.utc)
    frame = pl.DataFrame(
        {
            "session": [f"c{i:03}" for i in range(len(calls))],
            "dst": [n for n, _ in calls],
            "start": [t] * len(calls),
            "end": [t + timedelta(seconds=talk) for _, talk in calls],
            "billsec": [talk for _, talk in calls],
            "disposition": ["ANSWERED"] * len(calls),
        },
        schema_overrides={"dst": pl.String},
    )
    got = cdrq.rate(frame, rates).sort("call")
    rows = [{"prefix": p, "rate": r, "increment": i} for p, (r, i) in table.items()]
    for (number, talk), out in zip(calls, got.to_dicts(), strict=True):
        best = brute_rate(number, rows, 9 * 60 + 30)
        if best is None:
            assert (out["prefix"], out["rate"], out["cost"]) == (None, None, None)
            continue
        first, step = map(int, best["increment"].split("/"))
        cost = 0.0 if talk == 0 else best["rate"] * billed(talk, first, step) / 60
        assert out["prefix"] == best["prefix"]
        assert math.isclose(out["cost"], cost, rel_tol=1e-12, abs_tol=1e-12)


def test_rating_with_time_bands_fees_and_descriptions(tmp_path):
    rates = tmp_path / "rates.csv"
    rates.write_text(
        "prefix,rate,increment,connection_fee,description,from,to\n"
        "0049,0.10,60/60,0.05,Germany day,08:00,20:00\n"
        "0049,0.02,60/60,0.05,Germany night,20:00,08:00\n"
        "004930,0.01,1/1,0,Berlin,,\n"
        "100,0,1/1,0,Internal,,\n"
    )
    out = cdrq.rate(read_archive("legs.json"), str(rates)).select("call", "prefix", "destination", "rate", "cost")
    # s3 starts at 23:59:30 local, to 004930555: Berlin (longest), 65 s at 0.01/min.
    assert out.rows() == [
        ("s1", "100", "Internal", 0.0, 0.0),
        ("s2", None, None, None, None),
        ("s4", "100", "Internal", 0.0, 0.0),
        ("s3", "004930", "Berlin", 0.01, pytest.approx(0.01 * 65 / 60)),
    ]
    night = pl.DataFrame(
        {"prefix": ["0049", "0049"], "rate": [0.1, 0.02], "from": ["08:00", "20:00"], "to": ["20:00", "08:00"]}
    )
    assert cdrq.rate(read_archive("legs.json"), night, on="dst").filter(pl.col("call") == "s3")["rate"].item() == 0.02
    lazy = cdrq.rate(read_archive("legs.json").lazy(), str(rates))
    assert isinstance(lazy, pl.LazyFrame)
    assert lazy.collect().select("call", "prefix", "destination", "rate", "cost").equals(out)


@pytest.mark.parametrize(
    ("rates", "message"),
    [
        ({"prefix": ["49", "1", "49"], "rate": [1.0, 1.0, 2.0]}, r'prefix "49" is in rows 1 and 3'),
        ({"prefix": ["49"], "rate": [-0.5]}, "row 1: a negative rate"),
        ({"prefix": ["49", "4"], "rate": ["0.1", "x"]}, "row 2: the rate is not a number"),
        ({"prefix": ["49"], "rate": [float("inf")]}, "row 1: the rate is not finite"),
        ({"prefix": ["49", None], "rate": [1.0, 1.0]}, "row 2: no prefix"),
        ({"prefix": ["49"], "rate": [1.0], "increment": ["60"]}, "increment must be FIRST/STEP"),
        ({"prefix": ["49"], "rate": [1.0], "increment": ["60/0"]}, "increment must be FIRST/STEP"),
        ({"prefix": ["49"], "rate": [1.0], "connection_fee": [-1.0]}, "connection fee"),
        ({"prefix": ["49"], "rate": [1.0], "from": ["25:00"], "to": ["08:00"]}, "from must be a time HH:MM"),
        ({"prefix": ["49"], "rate": [1.0], "from": ["08:00"], "to": ["8h"]}, "to must be a time HH:MM"),
        ({"prefix": ["49"], "rate": [1.0], "from": ["08:00"], "to": [None]}, "from and to come together"),
        ({"prefix": ["49"], "rate": [1.0], "from": ["08:00"]}, "one of from/to"),
        (
            {"prefix": ["49", "49"], "rate": [1.0, 2.0], "from": ["08:00", "17:00"], "to": ["18:00", "07:00"]},
            "overlapping",
        ),
        ({"number": ["49"], "rate": [1.0]}, "'prefix'"),
    ],
)
def test_bad_rate_tables_are_errors(rates, message):
    with pytest.raises(cdrq.CdrqError, match=message):
        cdrq.rate(read_archive("legs.json"), pl.DataFrame(rates))


def test_rate_table_from_a_missing_file_and_bad_on(tmp_path):
    with pytest.raises(cdrq.CdrqError, match="cannot read the rate table"):
        cdrq.rate(read_archive("legs.json"), str(tmp_path / "nope.csv"))
    with pytest.raises(cdrq.CdrqError, match="on='call'"):
        cdrq.rate(read_archive("legs.json"), pl.DataFrame({"prefix": ["1"], "rate": [1.0]}), on="call")


def test_non_digit_prefixes_match_byte_for_byte():
    frame = pl.DataFrame(
        {"session": ["a", "b", "c"], "dst": ["+4930", "004930", "*97"], "billsec": [60, 60, 60],
         "disposition": ["ANSWERED"] * 3, "start": [datetime(2024, 1, 1)] * 3, "end": [datetime(2024, 1, 1, 0, 1)] * 3}
    )  # fmt: skip
    rates = pl.DataFrame({"prefix": ["+49", "0049", "*", ""], "rate": [1.0, 2.0, 3.0, 9.0]})
    assert cdrq.rate(frame, rates)["prefix"].to_list() == ["+49", "0049", "*"]
    assert cdrq.rate(frame, rates, on="src")["cost"].to_list() == [None, None, None]  # no src column: null numbers
