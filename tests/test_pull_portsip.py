"""`cdrq pull --api portsip` against a fake PortSIP server over TLS: same
routes, paging by started_at with filter/orderby/top/skip, short-lived
bearer tokens; every CDR and recording arrives once."""

from __future__ import annotations

import datetime as dt
import json
import re
import secrets
import time
from urllib.parse import parse_qs

import pytest
from test_serve import Running

import cdrq
from cdrq.services.pull import PullError, pull

# The hostile PBXs here are hung up on mid-answer by design; what their
# server side leaves behind (an SSL transport closed under a pending write)
# is theirs, not the client's under test.
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


def item(i: int) -> dict:
    start = dt.datetime(2024, 8, 1, tzinfo=dt.timezone.utc) + dt.timedelta(minutes=17 * i)
    iso = lambda t: t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")  # noqa: E731
    return {
        "id": str(878156644691742720 + i),
        "caller": f"1{i % 50:02}",
        "callee": "103",
        "caller_display_name": None if i % 4 else "Kelly",
        "started_at": iso(start),
        "answered_at": iso(start + dt.timedelta(seconds=3)),
        "ended_at": iso(start + dt.timedelta(seconds=30 + i % 40)),
        "call_id": f"call-{i}",
        "direction": "EXTENSION_CALL",
        "end_reason": "CALLER_DISCONNECT",
        "status_code": 0,
    }


class FakePortsip:
    """The routes cdrq uses, with tokens that live ``ttl`` seconds."""

    def __init__(self, n: int, ttl: float = 1.0) -> None:
        self.items = [item(i) for i in range(n)]
        self.recordings = {f"{i:040x}": (f"rec-{i}.wav", secrets.token_bytes(300 + i)) for i in range(7)}
        self.tokens: dict[str, float] = {}
        self.ttl, self.logins = ttl, 0

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return
        path, query = scope["path"], parse_qs(scope["query_string"].decode())
        headers = dict(scope["headers"])
        if path == "/api/login" and scope["method"] == "POST":
            body = json.loads((await receive())["body"])
            if body != {"name": "admin", "password": "pw"}:
                return await self.reply(send, 401, {"error": "bad credentials"})
            self.logins += 1
            token = secrets.token_hex(8)
            self.tokens[token] = time.monotonic() + self.ttl
            return await self.reply(send, 200, {"access_token": token, "expires_in": self.ttl})
        token = headers.get(b"authorization", b"").decode().removeprefix("Bearer ")
        if self.tokens.get(token, 0) < time.monotonic():
            return await self.reply(send, 401, {"error": "token expired"})
        top, skip = int(query.get("top", ["100"])[0]), int(query.get("skip", ["0"])[0])
        if path == "/api/cdrs":
            since = dt.datetime.fromisoformat(re.fullmatch(r"started_at ge '(.+)'", query["filter"][0]).group(1))
            assert query["orderby"] == ["started_at asc"]
            at = lambda i: dt.datetime.fromisoformat(i["started_at"])  # noqa: E731
            chosen = sorted((i for i in self.items if at(i) >= since), key=at)
            return await self.reply(send, 200, {"count": len(chosen), "items": chosen[skip : skip + top]})
        if path == "/api/recordings":
            listed = [
                {"id": str(k), "file_name": name, "digest": d}
                for k, (d, (name, _)) in enumerate(self.recordings.items())
            ]
            return await self.reply(send, 200, {"count": len(listed), "items": listed[skip : skip + top]})
        if path.startswith("/api/blobs/") and path[11:] in self.recordings:
            body = self.recordings[path[11:]][1]
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"audio/wav")]})
            return await send({"type": "http.response.body", "body": body})
        return await self.reply(send, 404, {"error": "not found"})

    @staticmethod
    async def reply_raw(send, data):
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": data})

    @staticmethod
    async def reply(send, status, body):
        data = json.dumps(body).encode()
        await send(
            {"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json")]}
        )
        await send({"type": "http.response.body", "body": data})


@pytest.fixture
def fake(tls):
    app = FakePortsip(230)
    run = Running([app], tls)
    run.app = app
    yield run
    run.stop()


def test_every_cdr_and_recording_once(fake, tls, tmp_path):
    common = {"user": "admin", "password": "pw", "api": "portsip", "ca": str(tls / "ca.pem"), "since": "2024-08-01"}
    counts = pull(fake.urls[0], tmp_path / "ds", page_size=50, recordings=True, **common)
    assert (counts["records"], counts["written"], counts["recordings"]) == (230, 230, 7)
    back = cdrq.read(tmp_path / "ds")
    assert sorted(back["AcctId"].to_list()) == [878156644691742720 + i for i in range(230)]
    assert back.filter(back["session"] == "call-3")["dst"].to_list() == ["103"]
    for name, data in fake.app.recordings.values():
        assert (tmp_path / "ds" / "_recordings" / name).read_bytes() == data
    # Tokens live a second: the client renewed them before they ran out.
    assert fake.app.logins > 1
    fake.app.items.append(item(230))
    again = pull(fake.urls[0], tmp_path / "ds", page_size=50, recordings=True, **{**common, "since": None})
    assert (again["written"], again["recordings"]) == (1, 0)
    assert cdrq.read(tmp_path / "ds").height == 231


def test_bad_credentials(fake, tls, tmp_path):
    with pytest.raises(PullError, match="login refused"):
        pull(fake.urls[0], tmp_path / "ds", user="admin", password="nope", api="portsip", ca=str(tls / "ca.pem"))


PORTSIP_NONSENSE = {
    "login not JSON": {"/api/login": b"<html>"},
    "login a list": {"/api/login": b"[]"},
    "login without token": {"/api/login": b'{"expires_in": 60}'},
    "cdrs not JSON": {"/api/cdrs": b"\xff garbage"},
    "items not a list": {"/api/cdrs": b'{"items": {"a": 1}}'},
    "items not CDRs": {"/api/cdrs": b'{"items": [1, 2]}'},
    "recordings not JSON": {"/api/recordings": b"nope"},
}


@pytest.mark.parametrize("answers", PORTSIP_NONSENSE.values(), ids=PORTSIP_NONSENSE.keys())
def test_nonsense_from_portsip_is_one_error_naming_the_host(tls, tmp_path, answers):
    app = FakePortsip(3)

    async def nonsense(scope, receive, send):
        if scope["type"] == "http" and scope["path"] in answers:
            await receive()
            return await app.reply_raw(send, answers[scope["path"]])
        return await app(scope, receive, send)

    run = Running([nonsense], tls)
    try:
        with pytest.raises(PullError, match=r"127\.0\.0\.1:\d+"):
            pull(run.urls[0], tmp_path / "ds", user="admin", password="pw", api="portsip", ca=str(tls / "ca.pem"),
                 since="2024-08-01", recordings=True)  # fmt: skip
    finally:
        run.stop()


def test_portsip_records_out_of_window_endless_or_repeated_pages(tls, tmp_path):
    app = FakePortsip(60)
    app.items += [{**item(900 + i), "started_at": "2023-01-01T00:00:00Z"} for i in range(3)]
    app.items += [{**item(950), "started_at": "2999-01-01T00:00:00Z"}]
    run = Running([app], tls)
    common = {"user": "admin", "password": "pw", "api": "portsip", "ca": str(tls / "ca.pem"), "page_size": 20}
    try:
        counts = pull(run.urls[0], tmp_path / "ds", since="2024-08-01", until=dt.date(2024, 12, 31), **common)
        # The fake filters by started_at: the 2023 calls never come; the one from 2999 is a reject.
        assert (counts["written"], counts["rejects"]) == (60, 1)
        state = json.loads((tmp_path / "ds" / "_cdrq_pull_state.json").read_text())[run.urls[0]]
        assert state["started_at"].startswith("2024-08")  # not 2999: the next pull misses nothing
        # Whole history: no --since, no state.
        counts = pull(run.urls[0], tmp_path / "all", until=dt.date(2024, 12, 31), **common)
        assert (counts["written"], counts["rejects"]) == (63, 1)
        # A PBX that ignores skip: the same page again ends the pull.
        app.items = [item(i) for i in range(20)]
        real = app.__call__

        async def ignore_skip(scope, receive, send):
            if scope["type"] == "http":
                scope = {**scope, "query_string": re.sub(rb"skip=\d+", b"skip=0", scope["query_string"])}
            return await real(scope, receive, send)

        app.__class__ = type("Ignoring", (FakePortsip,), {"__call__": lambda self, *a: ignore_skip(*a)})
        counts = pull(run.urls[0], tmp_path / "same", since="2024-08-01", until=dt.date(2024, 12, 31), **common)
        assert (counts["pages"], counts["written"]) == (1, 20)
    finally:
        run.stop()
