"""PortSIP CDRs (rust/src/read/portsip.rs): the API response and the
webhook event mapped into the UCM data model, every PortSIP field kept."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import polars as pl
import pytest

import cdrq

UTC = timezone.utc


def test_api_response_sample_every_field(samples):
    path = samples / "portsip-v22-api-cdrs-response.partial.json"
    item = json.loads(path.read_text())["items"][0]
    df = cdrq.read(path, tz="Europe/Berlin")
    assert df.height == 1
    row = df.row(0, named=True)
    berlin = ZoneInfo("Europe/Berlin")
    mapped = {
        "AcctId": 878156644691742720, "uniqueid": "878156644691742720", "src": "102", "dst": "103",
        "channel_ext": "102", "dstchannel_ext": "103", "caller_name": "Kelly Cruickshank",
        "clid": '"Kelly Cruickshank" <102>',
        "start": datetime(2024, 8, 20, 6, 0, 59, 457188, tzinfo=UTC).astimezone(berlin),
        "answer": datetime(2024, 8, 20, 6, 1, 1, 965027, tzinfo=UTC).astimezone(berlin),
        "end": datetime(2024, 8, 20, 6, 1, 36, 158919, tzinfo=UTC).astimezone(berlin),
        "duration": 36, "billsec": 34, "disposition": "ANSWERED", "userfield": "Internal",
        "session": "JooRSqaUcdwZnsD7DNgA3Q..", "cdr_kind": "record", "leg": 0,
    }  # fmt: skip
    assert {k: row[k] for k in mapped} == mapped
    for key, value in item.items():  # every PortSIP field under its own name
        assert row[key] == (None if value == "" else str(value)), key
    assert df.schema["start"].time_zone == "Europe/Berlin"
    untouched = set(df.columns) - set(mapped) - set(item)
    assert all(row[c] is None for c in untouched if c not in ("cdr_kind", "leg"))


def test_webhook_sample(samples):
    df = cdrq.read(samples / "portsip-webhook-call_start.json")
    row = df.row(0, named=True)
    assert (row["AcctId"], row["src"], row["dst"], row["clid"]) == (
        798119942409949185,
        "101",
        "102",
        '"Tom" <101>',
    )
    assert row["start"] == datetime.fromtimestamp(1705051422, UTC)
    assert (row["end"], row["duration"], row["billsec"], row["disposition"]) == (None, None, None, None)
    assert (row["userfield"], row["session"]) == ("Internal", "Q0sXhDgxnowmQp1P9swHLw..")
    assert (row["caller"], row["session_id"], row["time"]) == (
        "sip:101@test.io",
        "798119942409949184",
        "1705051422",
    )


def item(**overrides):
    base = {
        "id": "1", "caller": "100", "callee": "200", "started_at": "2024-08-20T06:00:00Z",
        "answered_at": None, "ended_at": "2024-08-20T06:00:30Z", "direction": "INBOUND",
        "end_reason": "CALLER_DISCONNECT", "status_code": 0, "call_id": "c1",
    }  # fmt: skip
    return {**base, **overrides}


@pytest.mark.parametrize(
    ("overrides", "disposition", "billsec"),
    [
        ({"answered_at": "2024-08-20T06:00:10.5Z"}, "ANSWERED", 19),
        ({}, "NO ANSWER", 0),
        ({"end_reason": "CALLEE_BUSY"}, "BUSY", 0),
        ({"status_code": 486}, "BUSY", 0),
        ({"status_code": 503}, "FAILED", 0),
        ({"status_code": 487}, "NO ANSWER", 0),
        ({"end_reason": "MEDIA_ERROR"}, "FAILED", 0),
    ],
)
def test_disposition_and_billsec(overrides, disposition, billsec):
    df = cdrq.read(json.dumps({"count": 1, "items": [item(**overrides)]}).encode())
    assert (df["disposition"][0], df["billsec"][0], df["duration"][0]) == (disposition, billsec, 30)
    assert df["userfield"][0] == "Inbound"
    assert df["clid"][0] == "100"


def test_offsets_and_naive_times():
    data = json.dumps({"items": [item(started_at="2024-08-20T08:00:00+02:00")]}).encode()
    assert cdrq.read(data, tz=None)["start"][0] == datetime(2024, 8, 20, 6, 0)
    assert cdrq.read(data)["start"][0] == datetime(2024, 8, 20, 6, 0, tzinfo=UTC)


def test_bad_instant_rejects_the_record():
    data = json.dumps({"items": [item(), item(id="2", started_at="yesterday")]}).encode()
    with pytest.raises(cdrq.ParseError, match='start is not a YYYY-MM-DD HH:MM:SS time: "yesterday"'):
        cdrq.read(data, format="portsip-json")
    df, rejects = cdrq.read(data, on_error="collect")
    assert df["AcctId"].to_list() == [1]
    assert rejects.height == 1


# PortSIP v22's /api/cdrs answer in full (support.portsip.com, "Accessing CDRs
# and Recordings"): its own `duration` is talk seconds (35 for a call of 36.7 s
# answered for 34.2 s, 0 unanswered), so it is kept as `portsip_duration` and
# `duration` is the UCM's end - start.
API_WITH_DURATION = b"""{"count": 2, "items": [
 {"id": "878156644691742720", "caller": "102", "callee": "103", "started_at": "2024-08-20T06:00:59.457188Z",
  "answered_at": "2024-08-20T06:01:01.965027Z", "ended_at": "2024-08-20T06:01:36.158919Z",
  "call_id": "JooRSqaUcdwZnsD7DNgA3Q..", "status_code": 0, "trunk": "", "duration": 35},
 {"id": "878156595253481472", "caller": "101", "callee": "102", "started_at": "2024-08-20T06:00:47.670813Z",
  "answered_at": "", "ended_at": "2024-08-20T06:00:49.680179Z",
  "call_id": "zuRUKmbcjgfrNTrp46smiw..", "status_code": 486, "trunk": "", "duration": 0}]}"""


def test_vendor_duration_is_kept_as_portsip_duration():
    df = cdrq.read(API_WITH_DURATION, format="portsip-json")
    got = df.select("duration", "portsip_duration", "billsec", "disposition", "answer").rows()
    assert got == [
        (36, "35", 34, "ANSWERED", datetime(2024, 8, 20, 6, 1, 1, 965027, tzinfo=UTC)),
        (2, "0", 0, "BUSY", None),
    ]
    assert df["trunk"].to_list() == [None, None]


def test_vendor_duration_stays_out_of_duration_when_nothing_derives_it():
    data = json.dumps({"items": [item(started_at=None, duration=7)]}).encode()
    row = cdrq.read(data).row(0, named=True)
    assert (row["duration"], row["portsip_duration"]) == (None, "7")


# The call_cdr webhook (support.portsip.com, "Event Reference": epoch-second
# strings, "0" for never, talk_duration, the legs in call_targets).
CALL_CDR = b"""{"event_type": "call_cdr", "call_id": "c1", "session_id": "9", "caller": "1888722",
 "callee": "5000", "direction": "in", "start_time": "1725845648", "answered_time": "1725845650",
 "ended_time": "1725845669", "call_status": "answered", "status_code": "0", "talk_duration": 19,
 "ended_reason": "callee_disconnect", "call_targets": [
  {"id": "71", "callee": "5000", "caller": "1888722", "destination": "sip:5000@10.0.0.1:8922",
   "start_time": "1725845648", "answered_time": "1725845650", "ended_time": "1725845655",
   "status": "answered", "status_code": 0, "end_reason": "referred", "talk_duration": "5"},
  {"id": "72", "callee": "103", "caller": "1888722", "start_time": "1725845655",
   "answered_time": "0", "ended_time": "1725845669", "status": "noanswer", "status_code": 0}]}"""


def test_call_cdr_webhook_is_a_main_row_and_a_sub_row_per_call_target():
    df = cdrq.read(CALL_CDR)  # sniffed as portsip-json
    t = lambda s: datetime.fromtimestamp(s, UTC)  # noqa: E731
    got = df.select(
        "cdr_kind", "leg", "AcctId", "src", "dst", "start", "answer", "end", "duration", "billsec", "disposition",
        "session", "userfield",
    ).rows()  # fmt: skip
    assert got == [
        ("main", 0, None, "1888722", "5000", t(1725845648), t(1725845650), t(1725845669), 21, 19, "ANSWERED", "c1",
         "Inbound"),
        ("sub", 1, 71, "1888722", "5000", t(1725845648), t(1725845650), t(1725845655), 7, 5, "ANSWERED", "c1",
         "Inbound"),
        ("sub", 2, 72, "1888722", "103", t(1725845655), None, t(1725845669), 14, 0, "NO ANSWER", "c1", "Inbound"),
    ]  # fmt: skip
    # Every vendor field under its own name, the targets' in their rows.
    assert df["talk_duration"].to_list() == ["19", "5", None]
    assert df["answered_time"].to_list() == ["1725845650", "1725845650", "0"]
    assert df["destination"].to_list() == [None, "sip:5000@10.0.0.1:8922", None]
    assert (df["ended_reason"][0], df["end_reason"][1], df["status"][2]) == (
        "callee_disconnect",
        "referred",
        "noanswer",
    )
    assert "call_targets" not in df.columns  # its content is the sub rows
    df2, rejects = cdrq.read(CALL_CDR, on_error="collect")
    assert (df2.height, rejects.height) == (3, 0)


def test_call_cdr_never_answered():
    data = json.dumps({
        "event_type": "call_cdr", "call_id": "c2", "caller": "101", "callee": "102", "start_time": "1725845648",
        "answered_time": "0", "ended_time": "1725845658", "call_status": "noanswer", "call_targets": [],
    }).encode()  # fmt: skip
    row = cdrq.read(data, format="portsip-json").row(0, named=True)
    assert (row["cdr_kind"], row["answer"], row["duration"], row["billsec"], row["disposition"]) == (
        "record",
        None,
        10,
        0,
        "NO ANSWER",
    )


def test_call_cdr_failed_busy():
    data = json.dumps({"event_type": "call_cdr", "call_id": "c3", "start_time": "100", "answered_time": "0",
                       "ended_time": "101", "call_status": "fail", "status_code": "486"}).encode()  # fmt: skip
    assert cdrq.read(data)["disposition"].to_list() == ["BUSY"]


def test_a_null_call_target_is_a_reject_when_collecting():
    data = b'{"event_type": "call_cdr", "call_id": "c", "call_targets": [null, {"callee": "102"}]}'
    df, rejects = cdrq.read(data, on_error="collect")
    assert df.select("cdr_kind", "leg", "dst").rows() == [("main", 0, None), ("sub", 2, "102")]
    assert rejects["reason"].to_list() == ["a null leg holds no record"]


# PortSIP v12's call events (support.portsip.com, "Going Real-Time with PortSIP
# PBX Pub/Sub"): `time` is the moment of the event.
@pytest.mark.parametrize(
    ("event", "extra", "at", "disposition", "billsec"),
    [
        ("call_start", {}, "start", None, None),
        ("call_established", {}, "answer", None, None),
        ("call_ended", {}, "end", None, None),
        ("call_noanswer", {}, "end", "NO ANSWER", 0),
        ("call_fail", {"fail_code": 480}, "end", "FAILED", 0),
        ("call_fail", {"fail_code": 486}, "end", "BUSY", 0),
    ],
)
def test_v12_event_time_lands_where_the_event_says(event, extra, at, disposition, billsec):
    data = json.dumps({
        "event_type": event, "call_id": "K3", "call_target": "", "caller": "sip:102@sipiw.com",
        "callee": "sip:103@sipiw.com", "session_id": "4945", "tenant_id": "2360", "time": "1632671272", **extra,
    }).encode()  # fmt: skip
    row = cdrq.read(data, format="portsip-json").row(0, named=True)
    times = {k: row[k] for k in ("start", "answer", "end")}
    assert times == {k: datetime.fromtimestamp(1632671272, UTC) if k == at else None for k in times}
    assert (row["disposition"], row["billsec"], row["duration"]) == (disposition, billsec, None)
    assert (row["src"], row["dst"], row["session"], row["time"]) == ("102", "103", "K3", "1632671272")


@pytest.mark.parametrize(
    ("data", "seen"),
    [
        (b"{}", "found an empty object"),
        (b'{"cdr_root": [{"main_cdr": {"AcctId": "1"}}]}', "found an object with keys cdr_root"),
        (b'{"cdr": [{"AcctId": "1", "src": "100"}]}', "found an object with keys cdr"),
    ],
)
def test_explicit_portsip_json_refuses_other_json(data, seen):
    for mode in ("raise", "collect"):
        with pytest.raises(cdrq.ParseError) as e:
            cdrq.read(data, format="portsip-json", on_error=mode)
        assert (e.value.line, e.value.column) == (1, 1)
        assert e.value.reason.startswith("not PortSIP CDRs") and e.value.reason.endswith(seen)


# PortSIP v22's /api/recordings answer and a recording's detail (same guide).
RECORDINGS = b"""{"count": 2, "items": [
 {"id": "876741670492704768", "caller": "17108415934", "callee": "1012",
  "started_at": "2024-08-16T08:19:14.746Z", "ended_at": "2024-08-16T08:19:28.755Z"},
 {"id": "875996174459342848", "caller": "1107", "callee": "1106",
  "started_at": "2024-08-14T06:56:10.235Z", "ended_at": "2024-08-14T06:56:19.118Z"}]}"""
RECORDING = b"""{"items": [{"caller": "102", "callee": "103", "started_at": "2024-08-20T06:01:02.109Z",
 "duration": 34, "file_name": "a.wav", "file_size": 0, "file_url": "/api/blobs/rZTOS5yB"}]}"""


@pytest.mark.parametrize(("data", "n"), [(RECORDINGS, 2), (RECORDING, 1)])
@pytest.mark.parametrize("fmt", ["auto", "portsip-json"])
def test_a_recordings_answer_is_not_read_as_cdrs(data, n, fmt):
    with pytest.raises(cdrq.ParseError) as e:
        cdrq.read(data, format=fmt)
    assert e.value.reason.startswith("a recording (an /api/recordings answer), not a CDR")
    assert (e.value.line, e.value.column) == ((2, 2) if n == 2 else (1, 12))
    assert e.value.raw.startswith('{"') and e.value.raw.endswith("}")
    df, rejects = cdrq.read(data, format=fmt, on_error="collect")
    assert (df.height, rejects.height) == (0, n)


def test_items_without_cdr_keys_are_rejected_one_by_one():
    data = json.dumps({"items": [item(), {"id": "5", "foo": "bar"}, item(id="3")]}).encode()
    with pytest.raises(cdrq.ParseError, match="not a PortSIP CDR: none of call_id"):
        cdrq.read(data)
    df, rejects = cdrq.read(data, on_error="collect")
    assert df["AcctId"].to_list() == [1, 3]
    assert rejects["raw"].to_list() == ['{"id": "5", "foo": "bar"}']


def test_ids_that_are_no_integer_keep_the_record():
    data = json.dumps({"items": [item(id="NzAwNTUx"), item(direction="in2out")]}).encode()
    df = cdrq.read(data)
    assert df.select("AcctId", "uniqueid", "userfield").rows() == [(None, "NzAwNTUx", "Inbound"), (1, "1", "External")]


def test_call_targets_across_parallel_chunks():
    # Over a few MiB the items array is parsed in chunks split at `},{`,
    # which call_targets arrays hold too: every call still comes out whole.
    def call(i):
        target = {"callee": "102", "caller": "101", "start_time": "100", "ended_time": "110", "status": "noanswer"}
        return {"event_type": "call_cdr", "call_id": f"c{i}", "start_time": "100", "ended_time": "110",
                "call_targets": [target, {**target, "callee": f"{i}"}]}  # fmt: skip

    n = 15_000
    data = json.dumps({"items": [call(i) for i in range(n)]}).encode()
    assert len(data) > 4 << 20
    df = cdrq.read(data, threads=4)
    assert df["leg"].to_list() == [0, 1, 2] * n
    assert df["session"].to_list() == [f"c{i}" for i in range(n) for _ in range(3)]
    assert df.filter(pl.col("leg") == 2)["dst"].to_list() == [str(i) for i in range(n)]
    assert df.equals(cdrq.scan(data).collect())
