"""`cdrq pull` against more hostile or broken PBXs: compression bombs,
Digest challenges httpx cannot answer, empty answers, damaged state,
redirects, hang-ups mid-body, clocks ahead and calls that end late. Each
attack is served on loopback and ends within seconds."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import socket
import threading
import tracemalloc
import zlib

import pytest
from test_pull import hostile, page_of, pull_from, query, records, reply
from test_pull_portsip import FakePortsip, item
from test_serve import PASSWORD, USER

import cdrq
from cdrq import cli
from cdrq.services.pull import STATE, Limits, PullError, pull

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


def gzipped(chunks):
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    return b"".join(packer.compress(c) for c in chunks) + packer.flush()


def test_a_gzip_bomb_is_refused_before_it_inflates(tls, tmp_path):
    # 64 MiB of spaces: 64 KiB on the wire, which httpx would inflate a
    # whole read at a time, whatever the page limit; gzipped twice, about a
    # kilobyte, which httpx would inflate whole.
    once = gzipped(b" " * (1 << 20) for _ in range(64))
    bombs = {b"gzip": once, b"gzip, gzip": gzipped([once])}
    encoding = b"gzip"

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        headers = [(b"content-type", b"application/json"), (b"content-encoding", encoding)]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": bombs[encoding]})

    tracemalloc.start()
    try:
        with hostile(tls, app) as url:
            with pytest.raises(PullError, match=r"127\.0\.0\.1:\d+: the answer to /cdrapi is over 1048576"):
                pull_from(url, tls, tmp_path / "ds", limits=Limits(max_page_bytes=1 << 20))
            encoding = b"gzip, gzip"
            with pytest.raises(PullError, match=r"127\.0\.0\.1:\d+: .*encoded 'gzip, gzip'.*refused"):
                pull_from(url, tls, tmp_path / "ds2", limits=Limits(max_page_bytes=1 << 20))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20


def test_a_gzipped_page_still_arrives_and_unknown_encodings_are_refused(tls, tmp_path):
    mode = "gzip"

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        body = page_of(records(3)) if int(query(scope)["offset"]) == 0 else page_of([])
        encoding = b"x-made-up" if mode == "x-made-up" else b"gzip"
        if mode != "x-made-up":
            body = gzipped([body])[: -12 if mode == "cut" else None]
        headers = [(b"content-type", b"application/json"), (b"content-encoding", encoding)]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    with hostile(tls, app) as url:
        assert pull_from(url, tls, tmp_path / "ds")["written"] == 3
        mode = "x-made-up"
        with pytest.raises(PullError, match=r"127\.0\.0\.1:\d+: .*x-made-up"):
            pull_from(url, tls, tmp_path / "ds2")
        mode = "cut"  # a gzip stream cut short inside, though HTTP framed the body whole
        with pytest.raises(PullError, match=r"127\.0\.0\.1:\d+: .*ends inside its gzip stream"):
            pull_from(url, tls, tmp_path / "ds3")


@pytest.mark.parametrize(
    "challenge",
    ['Digest realm="ucm", nonce="abc", qop="auth-int"', 'Digest realm="ucm", nonce="abc", algorithm=MD6'],
    ids=["auth-int only", "unknown algorithm"],
)
def test_a_digest_challenge_it_cannot_answer_is_one_error_naming_the_host(tls, tmp_path, challenge, capsys):
    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        headers = [(b"www-authenticate", challenge.encode())]
        await send({"type": "http.response.start", "status": 401, "headers": headers})
        await send({"type": "http.response.body", "body": b""})

    with hostile(tls, app) as url:
        with pytest.raises(PullError, match=r"127\.0\.0\.1:\d+"):
            pull_from(url, tls, tmp_path / "ds")
        status = cli.main(["pull", url, "--api", "legacy", "--user", USER, "--password", PASSWORD, "--since",
                           "2024-01-01", "--ca", str(tls / "ca.pem"), "--to", str(tmp_path / "cli")])  # fmt: skip
    err = capsys.readouterr().err
    assert status == 1 and "Traceback" not in err and "Error:" not in err
    assert err.splitlines()[-1].startswith("cdrq: 127.0.0.1:")


def test_an_empty_answer_is_an_error_not_an_empty_month(tls, tmp_path):
    # The UCM answers "no records" with the empty container ({"cdr_root": []});
    # an empty body is a broken answer, and taking it for an empty month
    # would move the saved position past that month for good.
    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        await reply(send, 200, b"" if query(scope)["startTime"][:7] in ("2024-01", "2000-01") else page_of([]))

    with hostile(tls, app) as url:
        with pytest.raises(PullError, match=r"127\.0\.0\.1:\d+: .*2024-01.* empty"):
            pull_from(url, tls, tmp_path / "ds", until=dt.date(2024, 2, 29))
        assert not (tmp_path / "ds" / STATE).exists()
        with pytest.raises(PullError, match=r"127\.0\.0\.1:\d+: .* empty"):
            pull_from(url, tls, tmp_path / "history", since=None)


DAMAGED_STATES = {
    "truncated": b'{"https://127.0.0.1:9": {"mon',
    "empty": b"",
    "a list": b"[]",
    "a position that is no object": b'{"https://127.0.0.1:9": "2024-01"}',
    "month no text": b'{"https://127.0.0.1:9": {"month": 202401, "offset": 0}}',
    "month no month": b'{"https://127.0.0.1:9": {"month": "2024-13", "offset": 0}}',
    "negative offset": b'{"https://127.0.0.1:9": {"month": "2024-01", "offset": -50}}',
    "offset no number": b'{"https://127.0.0.1:9": {"month": "2024-01", "offset": "50"}}',
    "started_at no text": b'{"https://127.0.0.1:9": {"started_at": 5}}',
}


@pytest.mark.parametrize("damaged", DAMAGED_STATES.values(), ids=DAMAGED_STATES.keys())
def test_a_damaged_state_file_is_one_error_naming_it(tmp_path, damaged):
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / STATE).write_bytes(damaged)
    with pytest.raises(PullError, match=STATE):
        pull("https://127.0.0.1:9", tmp_path / "ds", user=USER, password=PASSWORD, api="legacy",
             until=dt.date(2024, 2, 1), limits=Limits(timeout=1))  # fmt: skip
    assert (tmp_path / "ds" / STATE).read_bytes() == damaged  # left for the user to look at


def test_a_redirect_is_not_followed(tls, tmp_path):
    elsewhere = []

    async def other(scope, receive, send):
        if scope["type"] == "http":
            elsewhere.append(dict(scope["headers"]))
            await reply(send, 200, page_of(records(3)))

    with hostile(tls, other) as target:

        async def app(scope, receive, send):
            if scope["type"] != "http":
                return
            headers = [(b"location", f"{target}/cdrapi".encode())]
            await send({"type": "http.response.start", "status": 301, "headers": headers})
            await send({"type": "http.response.body", "body": b""})

        with hostile(tls, app) as url, pytest.raises(PullError, match=r"127\.0\.0\.1:\d+/cdrapi.*HTTP 301"):
            pull_from(url, tls, tmp_path / "ds")
    assert elsewhere == []  # neither the request nor its credentials went to the other host


def test_a_hang_up_mid_body_is_one_error_and_keeps_nothing_of_the_page(tmp_path):
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(5)
    body = page_of(records(5))

    def serve():
        with contextlib.suppress(OSError):
            connection, _ = listener.accept()
            with connection:
                connection.recv(65536)
                head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
                connection.sendall(head.encode() + body[: len(body) // 2])

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        with pytest.raises(PullError, match=r"127\.0\.0\.1:\d+: .*(closed|incomplete)"):
            pull(f"http://127.0.0.1:{listener.getsockname()[1]}", tmp_path / "ds", user=USER, password=PASSWORD,
                 since="2024-01-01", until=dt.date(2024, 1, 31), api="legacy", limits=Limits(timeout=2))  # fmt: skip
    finally:
        thread.join(5)
        listener.close()
    assert not (tmp_path / "ds" / STATE).exists()


def pull_portsip(url, tls, to, **kw):
    return pull(url, to, user="admin", password="pw", api="portsip", ca=str(tls / "ca.pem"), page_size=20, **kw)


def test_a_portsip_clock_ahead_does_not_move_the_resume_point_into_the_future(tls, tmp_path):
    app = FakePortsip(10, ttl=60)
    ahead = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=400)
    app.items.append({**item(500), "started_at": ahead.strftime("%Y-%m-%dT%H:%M:%S.%fZ")})
    with hostile(tls, app) as url:
        pull_portsip(url, tls, tmp_path / "ds", since="2024-08-01", until=dt.date(2999, 12, 31))
        saved = json.loads((tmp_path / "ds" / STATE).read_text())[url]["started_at"]
        assert dt.datetime.fromisoformat(saved.replace("Z", "+00:00")) <= dt.datetime.now(dt.timezone.utc)
        recent = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=1)  # a call that ended after the first pull
        app.items.append({**item(11), "started_at": recent.strftime("%Y-%m-%dT%H:%M:%S.%fZ")})
        again = pull_portsip(url, tls, tmp_path / "ds", until=dt.date(2999, 12, 31))
    assert again["written"] == 1
    assert "call-11" in cdrq.read(tmp_path / "ds")["session"].to_list()


def test_a_long_portsip_call_that_ends_after_a_pull_is_not_lost(tls, tmp_path):
    # PortSIP lists a call once it has ended, by started_at: a call that
    # began before the newest one pulled but ended after the pull comes
    # later, with an earlier started_at than where the pull stopped.
    app = FakePortsip(30, ttl=60)
    long_call = app.items.pop(20)
    with hostile(tls, app) as url:
        first = pull_portsip(url, tls, tmp_path / "ds", since="2024-08-01")
        assert first["written"] == 29
        app.items.append(long_call)
        again = pull_portsip(url, tls, tmp_path / "ds")
    assert again["written"] == 1
    assert cdrq.read(tmp_path / "ds").height == 30


def test_pages_that_overlap_store_each_record_once(tls, tmp_path):
    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        offset = int(query(scope)["offset"])
        first = max(0, offset - 5)
        await reply(send, 200, page_of(records(min(50, 120 - first), first)))

    with hostile(tls, app) as url:
        counts = pull_from(url, tls, tmp_path / "ds")
    back = cdrq.read(tmp_path / "ds")  # each page repeats the last five of the one before
    assert sorted(back["AcctId"].to_list()) == list(range(120)) and counts["written"] == 120


class FakeUcm:
    """A UCM's ``/cdrapi`` that lists by start: the records whose start
    (UTC) lies between ``startTime`` and ``endTime``, to the second, sorted
    by start and paged by ``offset``. ``items`` may grow between pulls, as
    calls end."""

    def __init__(self, items):
        self.items, self.asked = list(items), []

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return
        q = query(scope)
        self.asked.append(q)
        lo, hi = (dt.datetime.fromisoformat(q[k].replace(" ", "+")) for k in ("startTime", "endTime"))
        at = lambda i: dt.datetime.fromisoformat(i["main_cdr"]["start"]).replace(tzinfo=dt.timezone.utc)  # noqa: E731
        chosen = sorted((i for i in self.items if lo <= at(i) <= hi), key=at)
        offset = int(q["offset"])
        await reply(send, 200, page_of(chosen[offset : offset + int(q["numRecords"])]))


def call(acct, start):
    return records(1, acct, at=start - dt.timedelta(minutes=acct))[0]


def stored(path):
    back = cdrq.read(path)
    assert back["AcctId"].n_unique() == back.height  # none twice
    return sorted(back["AcctId"].to_list())


def test_a_ucm_call_that_ends_after_the_pull_left_its_month_is_not_lost(tls, tmp_path):
    # The UCM writes a call when it ends but lists it by its start: a call
    # from 23:50 on January 31 that ends after a pull moved on to February
    # comes later, dated in January.
    app = FakeUcm(records(3, at=dt.datetime(2024, 1, 31, 20)) + records(2, 10, at=dt.datetime(2024, 2, 1, 0, 30)))
    until = dt.date(2024, 2, 29)
    with hostile(tls, app) as url:
        assert pull_from(url, tls, tmp_path / "ds", until=until)["written"] == 5
        assert json.loads((tmp_path / "ds" / STATE).read_text())[url]["month"] == "2024-02"
        app.items.append(call(50, dt.datetime(2024, 1, 31, 23, 50)))
        app.asked.clear()
        again = pull_from(url, tls, tmp_path / "ds", since=None, until=until)
    assert again["written"] == 1 and stored(tmp_path / "ds") == [0, 1, 2, 10, 11, 50]
    assert app.asked[0]["startTime"] == "2024-01-31T18:41:00+00:00"  # 6 h before the newest start, 00:41


def test_a_ucm_call_listed_before_the_saved_offset_is_not_lost(tls, tmp_path):
    # 120 calls from 10:00, a minute apart; then one from 11:00:30 ends: the
    # UCM lists it 61st, before the offset (120) where the last pull stopped.
    app = FakeUcm(records(120))
    with hostile(tls, app) as url:
        assert pull_from(url, tls, tmp_path / "ds")["written"] == 120
        app.items.append(call(500, dt.datetime(2024, 1, 5, 11, 0, 30)))
        again = pull_from(url, tls, tmp_path / "ds", since=None)
    assert again["written"] == 1 and stored(tmp_path / "ds") == [*range(120), 500]
    state = json.loads((tmp_path / "ds" / STATE).read_text())[url]
    assert state["started_at"] == "2024-01-05T11:59:00Z"


def test_a_ucm_clock_ahead_does_not_move_the_resume_point_into_the_future(tls, tmp_path):
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None, microsecond=0)
    app = FakeUcm([call(i, now - dt.timedelta(hours=2, minutes=-i)) for i in range(3)])
    app.items.append(call(9, now + dt.timedelta(days=20)))  # dated by a clock ahead
    span = {"since": (now - dt.timedelta(days=1)).date(), "until": (now + dt.timedelta(days=40)).date()}
    with hostile(tls, app) as url:
        assert pull_from(url, tls, tmp_path / "ds", **span)["written"] == 4
        saved = json.loads((tmp_path / "ds" / STATE).read_text())[url]["started_at"]
        assert dt.datetime.fromisoformat(saved.replace("Z", "+00:00")) <= dt.datetime.now(dt.timezone.utc)
        app.items.append(call(10, now - dt.timedelta(minutes=1)))  # a call that ended after the first pull
        app.asked.clear()
        again = pull_from(url, tls, tmp_path / "ds", **{**span, "since": None})
        resumed = dt.datetime.fromisoformat(app.asked[0]["startTime"].replace(" ", "+"))
    assert resumed <= dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=6)
    assert again["written"] == 1 and stored(tmp_path / "ds") == [0, 1, 2, 9, 10]


def test_a_ucm_state_saved_without_the_newest_start_resumes_from_its_month(tls, tmp_path):
    # A state from before the newest start was kept: {"month", "offset"}.
    # Its offset may skip calls inserted before it, so its whole month is
    # read again, from 6 h before it (the dataset skips what it has).
    app = FakeUcm(records(120))
    with hostile(tls, app) as url:
        pull_from(url, tls, tmp_path / "ds")
        (tmp_path / "ds" / STATE).write_text(json.dumps({url: {"month": "2024-01", "offset": 120}}))
        app.items += [call(500, dt.datetime(2024, 1, 5, 11, 0, 30)), call(501, dt.datetime(2024, 1, 20))]
        app.asked.clear()
        again = pull_from(url, tls, tmp_path / "ds", since=None)
    assert app.asked[0]["startTime"] == "2023-12-31T18:00:00+00:00"
    assert again["written"] == 2 and stored(tmp_path / "ds") == [*range(120), 500, 501]
    state = json.loads((tmp_path / "ds" / STATE).read_text())[url]
    assert state == {"month": "2024-01", "offset": 122, "started_at": "2024-01-20T00:00:00Z"}


DAMAGED_NEWEST_STARTS = {
    "null": b'{"https://127.0.0.1:9": {"month": "2024-01", "offset": 0, "started_at": null}}',
    "no time": b'{"https://127.0.0.1:9": {"month": "2024-01", "offset": 0, "started_at": "yesterday"}}',
    "before time began": b'{"https://127.0.0.1:9": {"month": "2024-01", "offset": 0, "started_at": "0001-01-01"}}',
}


@pytest.mark.parametrize("damaged", DAMAGED_NEWEST_STARTS.values(), ids=DAMAGED_NEWEST_STARTS.keys())
def test_a_damaged_newest_start_is_one_error_naming_the_state_file(tmp_path, damaged):
    test_a_damaged_state_file_is_one_error_naming_it(tmp_path, damaged)
