"""PortSIP CDRs (rust/src/read/portsip.rs): the API response and the
webhook event mapped into the UCM data model, every PortSIP field kept."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

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
