"""`cdrq pull` against `cdrq serve` over loopback TLS: the dataset equals
the archive, for both APIs; an interrupted pull resumes with no gap and no
duplicate; recordings arrive byte for byte."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import shutil
import socket
import threading
import time
from urllib.parse import parse_qs

import polars as pl
import pytest
from test_dataset import sorted_rows
from test_scan import csv_archive
from test_serve import PASSWORD, USER, Running

import cdrq
from cdrq.services import server
from cdrq.services.pull import Limits, PullError, months, pull

# The hostile PBXs here are hung up on mid-answer by design; what their
# server side leaves behind (an SSL transport closed under a pending write)
# is theirs, not the client's under test.
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

UNTIL = dt.date(2024, 3, 31)


@pytest.fixture(scope="module")
def served(tmp_path_factory, samples, tls):
    directory = tmp_path_factory.mktemp("archive")
    (directory / "a.csv").write_text(csv_archive(450))
    shutil.copy(samples / "ucm6xxx-fw1.0.11-cdrapi-transfer.json", directory / "b.json")
    root = directory / "recordings" / "monitor" / "2016-04"
    root.mkdir(parents=True)
    (root / "auto-1461920017-1000-1001.wav").write_bytes(b"RIFF" + bytes(range(256)) * 40)
    archive = server.open_archive(
        [directory / "a.csv", directory / "b.json"],
        user=USER,
        password=PASSWORD,
        permit=["127.0.0.1/32"],
        recordings=directory / "recordings",
    )
    run = Running([server.LegacyApi(archive), server.NewApi(archive)], tls)
    run.archive = archive
    yield run
    run.stop()


def pulled(served, tls, to, **kw):
    return pull(served.urls[kw.pop("which", 0)], to, user=USER, password=PASSWORD, since="2016-04-01", until=UNTIL,
                ca=str(tls / "ca.pem"), page_size=50, **kw)  # fmt: skip


@pytest.mark.parametrize("which", [0, 1], ids=["legacy", "new"])
def test_pull_gives_the_archive(served, tls, tmp_path, which):
    counts = pulled(served, tls, tmp_path / "ds", which=which, recordings=True)
    assert counts["written"] == served.archive.frame.height
    assert sorted_rows(cdrq.read(tmp_path / "ds")).equals(sorted_rows(served.archive.frame))
    wav = tmp_path / "ds" / "_recordings" / "auto-1461920017-1000-1001.wav"
    assert wav.read_bytes() == b"RIFF" + bytes(range(256)) * 40
    again = pulled(served, tls, tmp_path / "ds", which=which, recordings=True)
    assert (again["written"], again["recordings"]) == (0, 0)


def test_interrupted_pull_resumes_without_gap_or_duplicate(served, tls, tmp_path):
    common = {"user": USER, "password": PASSWORD, "until": UNTIL, "ca": str(tls / "ca.pem"), "page_size": 50}
    first = pull(served.urls[0], tmp_path / "ds", since="2024-01-01", max_pages=4, **common)
    assert first["pages"] == 4  # January's one page, then three of February
    state = json.loads((tmp_path / "ds" / "_cdrq_pull_state.json").read_text())[served.urls[0]]
    assert state == {"month": "2024-02", "offset": 150, "started_at": "2024-02-04T20:24:00Z"}
    rest = pull(served.urls[0], tmp_path / "ds", **common)
    # Resumed 6 h before Feb 4 20:24 (a call may end late): 267 records (10
    # of them again) in six pages, then March.
    assert rest["pages"] == 7
    expected = served.archive.frame.filter(cdrq.read(tmp_path / "ds")["start"].min() <= pl.col("start"))
    back = cdrq.read(tmp_path / "ds")
    assert back.height == expected.height == 450
    assert sorted_rows(back).equals(sorted_rows(expected))


def test_tls_is_verified_and_bad_passwords_fail(served, tmp_path):
    with pytest.raises(PullError):
        pull(served.urls[0], tmp_path / "a", user=USER, password=PASSWORD, since="2024-01-01", until=UNTIL)
    with pytest.raises(PullError, match="401"):
        pull(
            served.urls[0], tmp_path / "b", user=USER, password="wrong", since="2024-01-01", until=UNTIL, insecure=True
        )
    with pytest.raises(PullError, match="login refused"):
        pull(
            served.urls[1], tmp_path / "c", user=USER, password="wrong", since="2024-01-01", until=UNTIL, insecure=True
        )


def test_months_are_utc_calendar_months():
    got = list(months(dt.date(2023, 12, 5), dt.date(2024, 2, 1)))
    assert [m for m, _, _ in got] == ["2023-12", "2024-01", "2024-02"]
    assert got[1][1:] == ("2024-01-01T00:00:00+00:00", "2024-01-31T23:59:59+00:00")
    assert got[2][2] == "2024-02-29T23:59:59+00:00"


def test_rate_limits_are_waited_out_and_retry_after_is_capped(tls, tmp_path):
    waits, answers = [], iter([(429, "0"), (503, "999999999"), (429, "Wed, 21 Oct 2099 07:28:00 GMT")])

    async def limited(scope, receive, send):
        if scope["type"] != "http":
            return
        status, after = next(answers, (200, None))
        if after is None:
            return await reply(send, 200, page_of(records(3)))
        await send({"type": "http.response.start", "status": status, "headers": [(b"retry-after", after.encode())]})
        await send({"type": "http.response.body", "body": b""})

    with hostile(tls, limited) as url:
        counts = pull_from(url, tls, tmp_path / "ds", limits=Limits(sleep=waits.append))
    assert counts["written"] == 3 and waits == [0, 300, 300]  # years asked for, five minutes waited
    answers = iter([(429, "999999999")])
    with hostile(tls, limited) as url, pytest.raises(PullError, match=r"127\.0\.0\.1:\d+: asked to wait .*deadline"):
        pull_from(url, tls, tmp_path / "ds2", limits=Limits(sleep=waits.append, deadline=60))
    assert waits == [0, 300, 300]  # no waiting past the deadline
    answers = iter([(429, "1")] * 6)
    with hostile(tls, limited) as url, pytest.raises(PullError, match=r"127\.0\.0\.1:\d+: still rate limited"):
        pull_from(url, tls, tmp_path / "ds3", limits=Limits(sleep=waits.append))


def test_a_stale_cookie_logs_in_again(served, tls):
    import ssl

    from cdrq.services.pull import Http, NewApiClient

    with Http(served.urls[1], ssl.create_default_context(cafile=str(tls / "ca.pem")), Limits()) as http:
        client = NewApiClient(http, USER, PASSWORD)
        client.cookie = "expired-or-forged"
        page = client.cdrapi({"format": "json", "numRecords": 2})
    assert page.startswith(b'{"cdr_root"') and client.cookie != "expired-or-forged"


def test_a_pbx_that_ignores_offset_does_not_loop_forever(tls, tmp_path):
    page = cdrq.render(cdrq.read(csv_archive(50).encode()), "json").encode()
    calls = []

    async def same_page(scope, receive, send):
        if scope["type"] != "http":
            return
        calls.append(scope["query_string"])
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": page})

    run = Running([same_page], tls)
    try:
        counts = pull(run.urls[0], tmp_path / "ds", user=USER, password=PASSWORD, since="2024-01-01",
                      until=dt.date(2024, 1, 31), api="legacy", ca=str(tls / "ca.pem"), page_size=50)  # fmt: skip
    finally:
        run.stop()
    assert counts["pages"] == 1 and len(calls) == 2  # the second, identical page ends the month
    assert counts["written"] + counts["rejects"] == 50 and counts["rejects"] == 7  # 7 start on February 1


# A hostile PBX: each test below is an attack that hung, filled memory or
# crashed the pull before it was bounded; every one ends within seconds.


def records(n, first=0, at=dt.datetime(2024, 1, 5, 10, 0)):
    return [
        {"cdr": "", "main_cdr": {"AcctId": str(first + i), "src": "1", "dst": "2", "session": f"s{first + i}",
                                 "start": (at + dt.timedelta(minutes=first + i)).strftime("%Y-%m-%d %H:%M:%S"),
                                 "disposition": "ANSWERED"}}
        for i in range(n)
    ]  # fmt: skip


def page_of(items, **dumps):
    return json.dumps({"cdr_root": items}, **dumps).encode()


async def reply(send, status, body, content_type=b"application/json"):
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", content_type)]})
    await send({"type": "http.response.body", "body": body})


def query(scope):
    return {k: v[0] for k, v in parse_qs(scope["query_string"].decode()).items()}


@contextlib.contextmanager
def hostile(tls, app):
    run = Running([app], tls)
    try:
        yield run.urls[0]
    finally:
        run.stop()


def pull_from(url, tls, to, **kw):
    kw = {"since": "2024-01-01", "until": dt.date(2024, 1, 31), "api": "legacy", "page_size": 50, **kw}
    return pull(url, to, user=USER, password=PASSWORD, ca=str(tls / "ca.pem"), **kw)


def test_an_endless_body_stops_at_the_page_limit(tls, tmp_path):
    gone = threading.Event()

    async def endless(scope, receive, send):
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": b'{"cdr_root": [', "more_body": True})
        chunk = b" " * 65536
        while not gone.is_set():
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"]}"})

    with hostile(tls, endless) as url, pytest.raises(PullError, match=r"127\.0\.0\.1:\d+: the answer .* over 1048576"):
        try:
            pull_from(url, tls, tmp_path / "ds", limits=Limits(max_page_bytes=1 << 20))
        finally:
            gone.set()

    async def declared(scope, receive, send):
        if scope["type"] != "http":
            return
        headers = [(b"content-type", b"application/json"), (b"content-length", b"2147483648")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"{", "more_body": True})

    with hostile(tls, declared) as url, pytest.raises(PullError, match="it says 2147483648"):
        pull_from(url, tls, tmp_path / "ds")


def test_an_endless_recording_stops_at_its_limit(tls, tmp_path):
    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        if scope["path"] == "/recapi":
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"audio/wav")]})
            for _ in range(400):
                await send({"type": "http.response.body", "body": b"R" * 65536, "more_body": True})
            return await send({"type": "http.response.body", "body": b""})
        items = records(1)
        items[0]["main_cdr"]["recordfiles"] = "2024-01/rec.wav@"
        await reply(send, 200, page_of(items))

    with hostile(tls, app) as url, pytest.raises(PullError, match=r"recording rec\.wav is over 1048576"):
        pull_from(url, tls, tmp_path / "ds", recordings=True, limits=Limits(max_recording_bytes=1 << 20))
    assert not list((tmp_path / "ds").glob("_recordings/*")) and not list((tmp_path / "ds").glob("_recordings/.*"))


def test_a_dripping_body_meets_the_request_deadline(tls, tmp_path):
    gone = threading.Event()

    async def drip(scope, receive, send):
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        while not gone.is_set():  # a byte every 0.1 s: never idle long enough for a read timeout
            await send({"type": "http.response.body", "body": b" ", "more_body": True})
            await asyncio.sleep(0.1)
        await send({"type": "http.response.body", "body": b""})

    began = time.monotonic()
    with hostile(tls, drip) as url, pytest.raises(PullError, match=r"127\.0\.0\.1:\d+: no whole answer .* 1 s"):
        try:
            pull_from(url, tls, tmp_path / "ds", limits=Limits(timeout=1))
        finally:
            took = time.monotonic() - began
            gone.set()
    assert took < 3


def test_dripping_headers_meet_the_request_deadline(tmp_path):
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(5)
    stop = threading.Event()

    def serve():
        with contextlib.suppress(OSError):
            connection, _ = listener.accept()
            with connection:
                connection.sendall(b"HTTP/1.1 200 OK\r\n")
                while not stop.wait(0.1):
                    connection.sendall(b"X")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    began = time.monotonic()
    try:
        with pytest.raises(PullError, match="no whole answer"):
            pull(f"http://127.0.0.1:{listener.getsockname()[1]}", tmp_path / "ds", user=USER, password=PASSWORD,
                 since="2024-01-01", until=dt.date(2024, 1, 31), api="legacy", limits=Limits(timeout=1))  # fmt: skip
    finally:
        stop.set()
        thread.join(5)
        listener.close()
    assert time.monotonic() - began < 4


def test_the_whole_pull_has_a_deadline(tls, tmp_path):
    async def slow(scope, receive, send):  # each page fresh, full and slow
        if scope["type"] != "http":
            return
        await asyncio.sleep(0.3)
        await reply(send, 200, page_of(records(50, int(query(scope)["offset"]))))

    began = time.monotonic()
    with hostile(tls, slow) as url, pytest.raises(PullError, match="passed its deadline of 1 s"):
        pull_from(url, tls, tmp_path / "ds", limits=Limits(deadline=1))
    assert time.monotonic() - began < 4
    state = json.loads((tmp_path / "ds" / "_cdrq_pull_state.json").read_text())
    assert cdrq.read(tmp_path / "ds").height == next(iter(state.values()))["offset"] > 0  # what came is kept


def test_a_page_repeated_in_other_formatting_ends_the_month(tls, tmp_path):
    calls = []

    async def reformat(scope, receive, send):
        if scope["type"] != "http":
            return
        calls.append(query(scope))
        n = len(calls)
        items = records(50)[::-1] if n % 2 else records(50)  # other order, spacing, key order each time
        await reply(send, 200, page_of(items, indent=n % 3 or None, sort_keys=bool(n % 2)))

    with hostile(tls, reformat) as url:
        counts = pull_from(url, tls, tmp_path / "ds")
    assert (counts["pages"], counts["written"], len(calls)) == (1, 50, 2)

    async def cycle(scope, receive, send):  # A, B, A, B, … whatever the offset
        if scope["type"] != "http":
            return
        calls.append(query(scope))
        await reply(send, 200, page_of(records(50, 50 * (len(calls) % 2))))

    calls.clear()
    with hostile(tls, cycle) as url:
        counts = pull_from(url, tls, tmp_path / "ds2")
    assert (counts["pages"], counts["written"], len(calls)) == (2, 100, 3)


def test_endless_fresh_pages_stop_at_the_window_cap(tls, tmp_path):
    calls = []

    async def fresh(scope, receive, send):
        if scope["type"] != "http":
            return
        calls.append(1)
        await reply(send, 200, page_of(records(50, 50 * len(calls))))

    with hostile(tls, fresh) as url, pytest.raises(PullError, match=r"127\.0\.0\.1:\d+: more than 5 pages in 2024-01"):
        pull_from(url, tls, tmp_path / "ds", limits=Limits(max_window_pages=5))
    assert len(calls) == 5 and cdrq.read(tmp_path / "ds").height == 250


def test_records_outside_the_window_are_rejects(tls, tmp_path):
    async def stray(scope, receive, send):
        if scope["type"] != "http":
            return
        items = records(3) + records(2, 100, at=dt.datetime(2023, 6, 1)) + records(1, 200, at=dt.datetime(2031, 1, 1))
        items.append({"cdr": "", "main_cdr": {"AcctId": "300", "start": "not a time"}})
        await reply(send, 200, page_of(items))

    with hostile(tls, stray) as url:
        counts = pull_from(url, tls, tmp_path / "ds")
    assert (counts["written"], counts["rejects"]) == (3, 4)
    assert sorted(cdrq.read(tmp_path / "ds")["AcctId"].to_list()) == [0, 1, 2]
    rejects = pl.read_parquet(tmp_path / "ds" / "_rejects" / "run-000001.parquet")
    assert rejects.height == 4 and rejects["source"].str.contains("/cdrapi 2024-01 offset 0").all()
    assert rejects["reason"].str.contains("outside the window asked for").sum() == 3
    assert rejects.filter(pl.col("reason").str.contains("outside"))["raw"].str.contains('"AcctId": 100').any()


NEW_API_NONSENSE = {
    "challenge not JSON": [b"<html>oops</html>"],
    "challenge a list": [b"[1, 2]"],
    "challenge without challenge": [b'{"status": 0, "response": {}}'],
    "challenge of the wrong type": [b'{"status": 0, "response": {"challenge": 5}}'],
    "login without cookie": [b'{"status": 0, "response": {"challenge": "x"}}', b'{"status": 0, "response": null}'],
    "cdrapi garbage": [b'{"status": 0, "response": {"challenge": "x"}}',
                       b'{"status": 0, "response": {"cookie": "c"}}', b"\xff\xfe garbage"],
    "cdrapi no export": [b'{"status": 0, "response": {"challenge": "x"}}',
                         b'{"status": 0, "response": {"cookie": "c"}}', b'{"cdr_root": 5}'],
}  # fmt: skip


@pytest.mark.parametrize("answers", NEW_API_NONSENSE.values(), ids=NEW_API_NONSENSE.keys())
def test_nonsense_from_the_new_api_is_one_error_naming_the_host(tls, tmp_path, answers, capsys):
    from cdrq import cli

    async def nonsense(scope, receive, send):
        if scope["type"] != "http":
            return
        await receive()
        await reply(send, 200, answers[min(len(seen), len(answers) - 1)])
        seen.append(1)

    seen = []
    with hostile(tls, nonsense) as url:
        with pytest.raises(PullError, match=r"127\.0\.0\.1:\d+"):
            pull_from(url, tls, tmp_path / "ds", api="new")
        seen.clear()
        status = cli.main(["pull", url, "--api", "new", "--user", USER, "--password", PASSWORD, "--since", "2024-01-01",
                           "--ca", str(tls / "ca.pem"), "--to", str(tmp_path / "cli")])  # fmt: skip
    err = capsys.readouterr().err
    assert status == 1 and "Traceback" not in err
    assert err.splitlines()[-1].startswith("cdrq: ") and "127.0.0.1:" in err.splitlines()[-1]


def test_without_since_or_state_the_whole_history_is_pulled(served, tls, tmp_path):
    lines = []
    counts = pull(served.urls[0], tmp_path / "ds", user=USER, password=PASSWORD, until=UNTIL,
                  ca=str(tls / "ca.pem"), page_size=50, report=lines.append)  # fmt: skip
    assert "its first record is from 2016-04" in lines and counts["written"] == served.archive.frame.height
    assert sorted_rows(cdrq.read(tmp_path / "ds")).equals(sorted_rows(served.archive.frame))

    async def empty(scope, receive, send):
        if scope["type"] != "http":
            return
        calls.append(1)
        await reply(send, 200, page_of([]))

    calls = []
    with hostile(tls, empty) as url:
        counts = pull_from(url, tls, tmp_path / "empty", since=None)
    assert counts["pages"] == 0 and len(calls) == 1


def test_the_cli_takes_the_limits(tls, tmp_path, capsys):
    from cdrq import cli

    async def endless(scope, receive, send):
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        for _ in range(100):
            await send({"type": "http.response.body", "body": b" " * 65536, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    common = ["--user", USER, "--password", PASSWORD, "--since", "2024-01-01", "--api", "legacy", "--ca",
              str(tls / "ca.pem"), "--to", str(tmp_path / "ds")]  # fmt: skip
    with hostile(tls, endless) as url:
        assert cli.main(["pull", url, "--max-page-mib", "1", *common]) == 1
        assert "over 1048576 bytes" in capsys.readouterr().err
        assert cli.main(["pull", url, "--timeout", "0.001", *common]) == 1
        assert "within 0.001 s" in capsys.readouterr().err
        assert cli.main(["pull", url, "--deadline", "0", *common]) == 1
        assert "passed its deadline of 0 s" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["pull", "https://x", "--timeout", "-1", *common])
