"""`cdrq serve` over real loopback TLS (a test CA from trustme), with real
clients: Digest auth, the permit list, /recapi's path rules, and the new
JSON API's login flow and status codes."""

from __future__ import annotations

import hashlib
import io
import ipaddress
import json
import os
import re
import socket
import ssl
import tarfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import polars as pl
import pytest
import uvicorn
from hypothesis import given, settings
from hypothesis import strategies as st

import cdrq
from cdrq import _expr
from cdrq.services import server

USER, PASSWORD = "cdrapi", "s3cret pass"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Running:
    """ASGI apps served by uvicorn with TLS on loopback, in a thread."""

    def __init__(self, apps, cert_dir: Path, **options) -> None:
        self.servers, self.urls = [], []
        for app in apps:
            port = free_port()
            cert, key = str(cert_dir / "cert.pem"), str(cert_dir / "key.pem")
            config = server.config(app, cert=cert, key=key, host="127.0.0.1", port=port, **options)
            self.servers.append(uvicorn.Server(config))
            self.urls.append(f"https://127.0.0.1:{port}")
        self.threads = [threading.Thread(target=s.run, daemon=True) for s in self.servers]
        for t in self.threads:
            t.start()
        deadline = time.monotonic() + 10
        while not all(s.started for s in self.servers):
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.02)

    def stop(self) -> None:
        for s in self.servers:
            s.should_exit = True
        for t in self.threads:
            t.join(5)


@pytest.fixture(scope="module")
def recordings(tmp_path_factory):
    root = tmp_path_factory.mktemp("rec") / "recordings"
    (root / "monitor" / "2024-05").mkdir(parents=True)
    (root / "meetme").mkdir()
    (root / "monitor" / "a.wav").write_bytes(b"RIFFa" * 1000)
    (root / "monitor" / "2024-05" / "b.wav").write_bytes(b"RIFFb" * 50_000)
    (root / "monitor" / "with space.wav").write_bytes(b"x")
    outside = root.parent / "secret.wav"
    outside.write_bytes(b"secret")
    (root / "monitor" / "link.wav").symlink_to(outside)
    (root / "escape").symlink_to(root.parent)
    return root


@pytest.fixture(scope="module")
def archive(samples, recordings):
    return server.open_archive(
        [samples / "ucm6xxx-fw1.0.11-cdrapi-transfer.json", samples / "ucm6510-fw1.0.2.5-cdrapi.csv"],
        user=USER,
        password=PASSWORD,
        permit=["127.0.0.0/8"],
        recordings=recordings,
    )


@pytest.fixture(scope="module")
def running(archive, tls):
    lenient = server.Guard(failures=10**9, delay=0.0)  # the lockout has its own test
    legacy, new = server.LegacyApi(archive, guard=lenient), server.NewApi(archive, guard=lenient)
    run = Running([legacy, new], tls)
    run.legacy, run.new = legacy, new
    yield run
    run.stop()


def client(tls, **kw) -> httpx.Client:
    return httpx.Client(verify=ssl.create_default_context(cafile=str(tls / "ca.pem")), **kw)


@pytest.mark.parametrize(
    "qs", ["format=json&caller=5300", "format=xml", "caller=6@&format=csv", "format=yaml", "caller=%"]
)
def test_cdrapi_answers_what_the_library_answers(running, archive, tls, qs):
    with client(tls, auth=httpx.DigestAuth(USER, PASSWORD)) as c:
        r = c.get(f"{running.urls[0]}/cdrapi?{qs}")
    assert r.status_code == 200
    assert r.text == cdrq.cdrapi(archive.frame, qs)
    fmt = "json" if "json" in qs else "xml" if "xml" in qs else "csv"
    assert r.headers["content-type"].startswith(server.CONTENT_TYPES[fmt])


def test_wrong_password_and_no_credentials_are_401(running, tls):
    with client(tls) as c:
        r = c.get(f"{running.urls[0]}/cdrapi?format=json")
        assert r.status_code == 401
        assert 'qop="auth"' in r.headers["www-authenticate"]
        assert c.get(f"{running.urls[0]}/cdrapi", auth=httpx.DigestAuth(USER, "wrong")).status_code == 401
        assert c.get(f"{running.urls[0]}/cdrapi", auth=httpx.DigestAuth("admin", PASSWORD)).status_code == 401


def digest_header(challenge: str, uri: str, nc: int = 1, password: str = PASSWORD) -> str:
    nonce = server.parse_digest(challenge[7:])["nonce"]
    ha1 = server.md5(f"{USER}:UCM:{password}")
    response = server.md5(f"{ha1}:{nonce}:{nc:08x}:abc:auth:{server.md5(f'GET:{uri}')}")
    return (
        f'Digest username="{USER}", realm="UCM", nonce="{nonce}", uri="{uri}", '
        f'response="{response}", qop=auth, nc={nc:08x}, cnonce="abc"'
    )


def test_a_replayed_or_stale_nonce_is_refused(running, tls):
    with client(tls) as c:
        challenge = c.get(f"{running.urls[0]}/cdrapi").headers["www-authenticate"]
        header = digest_header(challenge, "/cdrapi?format=csv")
        first = c.get(f"{running.urls[0]}/cdrapi?format=csv", headers={"authorization": header})
        assert first.status_code == 200
        replay = c.get(f"{running.urls[0]}/cdrapi?format=csv", headers={"authorization": header})
        assert replay.status_code == 401
        assert (
            c.get(
                f"{running.urls[0]}/cdrapi?format=csv",
                headers={"authorization": digest_header(challenge, "/cdrapi?format=csv", nc=2)},
            ).status_code
            == 200
        )
        # The signed URI must be the one requested.
        other = digest_header(challenge, "/cdrapi?format=csv", nc=3)
        assert c.get(f"{running.urls[0]}/cdrapi?format=json", headers={"authorization": other}).status_code == 401
        running.legacy.auth.nonces.ttl = 0.0
        try:
            stale = c.get(
                f"{running.urls[0]}/cdrapi?format=csv",
                headers={"authorization": digest_header(challenge, "/cdrapi?format=csv", nc=4)},
            )
        finally:
            running.legacy.auth.nonces.ttl = 300.0
        assert stale.status_code == 401 and "stale=true" in stale.headers["www-authenticate"]


def test_addresses_outside_the_permit_list_are_403_and_no_list_lets_everyone_in(archive, tls):
    everyone = server.Archive(archive.frame, None, USER, PASSWORD, permit=[])
    elsewhere = server.Archive(archive.frame, None, USER, PASSWORD, permit=[ipaddress.ip_network("10.0.0.0/8")])
    run = Running([server.LegacyApi(everyone), server.LegacyApi(elsewhere), server.NewApi(elsewhere)], tls)
    try:
        with client(tls, auth=httpx.DigestAuth(USER, PASSWORD)) as c:
            assert c.get(f"{run.urls[0]}/cdrapi").status_code == 200
            assert c.get(f"{run.urls[1]}/cdrapi").status_code == 403
            assert c.post(f"{run.urls[2]}/api", json={"request": {"action": "challenge"}}).status_code == 403
            # A forwarded-for header from the (loopback) peer is not believed…
            spoof = {"x-forwarded-for": "10.1.2.3", "forwarded": "for=10.1.2.3"}
            assert c.get(f"{run.urls[1]}/cdrapi", headers=spoof).status_code == 403
    finally:
        run.stop()
    # … unless --trust-proxy names the peer.
    run = Running([server.LegacyApi(elsewhere)], tls, trust_proxy=["127.0.0.1/32"])
    try:
        with client(tls, auth=httpx.DigestAuth(USER, PASSWORD)) as c:
            assert c.get(f"{run.urls[0]}/cdrapi", headers={"x-forwarded-for": "10.1.2.3"}).status_code == 200
            assert c.get(f"{run.urls[0]}/cdrapi").status_code == 403
    finally:
        run.stop()


def test_tls_only(running):
    plain = running.urls[0].replace("https://", "http://")
    with httpx.Client() as c, pytest.raises(httpx.HTTPError):
        c.get(f"{plain}/cdrapi")


def recapi(running, tls, query: str) -> httpx.Response:
    with client(tls, auth=httpx.DigestAuth(USER, PASSWORD)) as c:
        return c.get(f"{running.urls[0]}/recapi" + (f"?{query}" if query else ""))


def test_recapi_listings_files_and_tars(running, tls, recordings):
    assert recapi(running, tls, "").text == "meetme\nmonitor\n"
    listing = recapi(running, tls, "filedir=monitor@meetme").text.splitlines()
    assert listing == ["monitor,2024-05/b.wav", "monitor,a.wav"]
    one = recapi(running, tls, "filename=a.wav")
    assert one.status_code == 200 and one.content == (recordings / "monitor" / "a.wav").read_bytes()
    assert one.headers["content-type"] == "audio/x-wav"
    month = recapi(running, tls, "filedir=monitor&filename=b.wav")
    assert month.content == (recordings / "monitor" / "2024-05" / "b.wav").read_bytes()
    both = recapi(running, tls, "filename=a.wav@b.wav@with space.wav@missing.wav")
    name = both.headers["content-disposition"].split('filename="')[1].rstrip('"')
    assert name.endswith(".tar") and name[:-4].isdigit()
    assert both.headers["content-type"] == "application/x-tar"
    with tarfile.open(fileobj=io.BytesIO(both.content)) as tar:
        assert sorted(tar.getnames()) == ["a.wav", "b.wav"]
        assert tar.extractfile("b.wav").read() == (recordings / "monitor" / "2024-05" / "b.wav").read_bytes()


@pytest.mark.parametrize(
    "query",
    [
        "filename=missing.wav",
        "filename=../secret.wav",
        "filename=..%2Fsecret.wav",
        "filename=%2E%2E%2Fsecret.wav",
        "filename=/etc/passwd",
        "filename=a.wav%00.txt",
        "filename=link.wav",
        "filedir=escape&filename=secret.wav",
        "filedir=..&filename=secret.wav",
        "filedir=%2E%2E&filename=secret.wav",
        "filedir=/tmp",
        "filename=with space.wav",
        "filename=a.wav&filename=a.wav",
        "filename=",
        "filedir=",
        "other=1",
    ],
)
def test_recapi_never_leaves_the_root(running, tls, query):
    r = recapi(running, tls, query)
    assert r.status_code == 404
    assert b"secret" not in r.content


def api(running, tls, request: dict) -> httpx.Response:
    with client(tls) as c:
        return c.post(f"{running.urls[1]}/api", json={"request": request})


def login(running, tls) -> str:
    challenge = api(running, tls, {"action": "challenge", "user": USER, "version": "1.0"}).json()
    assert challenge["status"] == 0
    token = hashlib.md5((challenge["response"]["challenge"] + PASSWORD).encode()).hexdigest()
    answer = api(running, tls, {"action": "login", "user": USER, "token": token}).json()
    assert answer["status"] == 0
    return answer["response"]["cookie"]


def test_new_api_login_cdrapi_recapi_logout(running, archive, tls, recordings):
    cookie = login(running, tls)
    r = api(running, tls, {"action": "cdrapi", "cookie": cookie, "format": "json", "numRecords": 2, "caller": "5300"})
    assert r.text == cdrq.cdrapi(archive.frame, "format=json&numRecords=2&caller=5300")
    r = api(
        running, tls, {"action": "cdrapi", "cookie": cookie, "format": "csv", "startTime": "2015-01-01T00:00:00+00:00"}
    )
    assert r.text == cdrq.cdrapi(archive.frame, "format=csv&startTime=2015-01-01T00:00:00%2B00:00")
    wav = api(running, tls, {"action": "recapi", "cookie": cookie, "filedir": "monitor", "filename": "a.wav"})
    assert wav.content == (recordings / "monitor" / "a.wav").read_bytes()
    assert api(running, tls, {"action": "recapi", "cookie": cookie, "filename": "none.wav"}).json()["status"] == -25
    assert api(running, tls, {"action": "logout", "cookie": cookie}).json()["status"] == 0
    assert api(running, tls, {"action": "cdrapi", "cookie": cookie, "format": "json"}).json()["status"] == -6


def test_new_api_errors(running, tls):
    assert api(running, tls, {"action": "login", "user": USER, "token": "0" * 32}).json()["status"] == -11
    assert api(running, tls, {"action": "challenge", "user": "root"}).json()["status"] == -11
    assert api(running, tls, {"action": "cdrapi", "cookie": "forged"}).json()["status"] == -6
    assert api(running, tls, {"action": "reboot"}).json()["status"] == -1
    with client(tls) as c:
        assert c.post(f"{running.urls[1]}/api", content=b"{not json").json()["status"] == -1
    # A challenge answers one login only.
    challenge = api(running, tls, {"action": "challenge", "user": USER}).json()["response"]["challenge"]
    token = hashlib.md5((challenge + PASSWORD).encode()).hexdigest()
    assert api(running, tls, {"action": "login", "user": USER, "token": token}).json()["status"] == 0
    assert api(running, tls, {"action": "login", "user": USER, "token": token}).json()["status"] == -11


def test_idle_sessions_expire(running, tls):
    cookie = login(running, tls)
    running.new.sessions.ttl = 0.0
    try:
        assert api(running, tls, {"action": "cdrapi", "cookie": cookie}).json()["status"] == -6
    finally:
        running.new.sessions.ttl = 600.0


def test_self_signed_certificate_serves(tmp_path):
    cert, key = server.self_signed(tmp_path)
    assert cert.read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")
    assert os.path.getsize(key) > 0


def test_an_archive_served_in_a_firmware_layout(samples):
    path = samples / "ucm6xxx-fw1.0.11-cdrapi.csv"
    archive = server.open_archive(path, user=USER, password=PASSWORD, permit=[], firmware="1.0.11")
    assert archive.answer("format=CSV&caller=6039") == (path.read_text(), "csv")


# Issue 16: each attack, as its smallest request.


def get(url: str, tls, **kw) -> httpx.Response:
    with client(tls, auth=httpx.DigestAuth(USER, PASSWORD), timeout=20) as c:
        return c.get(url, **kw)


def test_no_500s_for_bad_requests(running, archive, tls, recordings):
    url = running.urls[0]
    huge = get(f"{url}/cdrapi?offset={2**63}&format=json", tls)
    assert huge.status_code == 200 and huge.text == cdrq.cdrapi(archive.frame, "offset=100000&format=json")
    assert get(f"{url}/cdrapi?offset={2**64 + 5}", tls).status_code == 200
    assert get(f"{url}/recapi?filename={'a' * 300}.wav", tls).status_code == 404
    assert get(f"{url}/recapi?filedir={'m' * 300}", tls).status_code == 404
    (recordings / "loop").symlink_to(recordings / "loop")
    try:
        assert get(f"{url}/recapi?filedir=loop", tls).status_code == 404
        assert get(f"{url}/recapi?filedir=loop&filename=a.wav", tls).status_code == 404
    finally:
        (recordings / "loop").unlink()
    with client(tls) as c:
        challenge = c.get(f"{url}/cdrapi").headers["www-authenticate"]
        header = digest_header(challenge, "/cdrapi").replace('response="', 'response="é')
        assert c.get(f"{url}/cdrapi", headers={"authorization": header.encode()}).status_code == 401
    assert api(running, tls, {"action": []}).json()["status"] == -1
    assert api(running, tls, {"action": {"a": 1}}).json()["status"] == -1
    with client(tls) as c:
        nested = b'{"request": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
        assert c.post(f"{running.urls[1]}/api", content=nested).json()["status"] == -1
        assert c.post(f"{running.urls[1]}/api", content=b'{"request": []}').json()["status"] == -1
    cookie = login(running, tls)
    r = api(running, tls, {"action": "cdrapi", "cookie": cookie, "caller": ["5300"]})
    assert r.status_code == 200 and r.json()["status"] == -1


@pytest.mark.parametrize("qs", ["format=json&format=xml", "format=xml&offset=x", "format=JSON", "format=yaml"])
def test_the_content_type_matches_the_body(running, archive, tls, qs):
    r = get(f"{running.urls[0]}/cdrapi?{qs}", tls)
    assert r.text == cdrq.cdrapi(archive.frame, qs)
    kind = "json" if r.text.startswith("{") else "xml" if r.text.startswith("<") else "csv"
    assert r.headers["content-type"].startswith(server.CONTENT_TYPES[kind])


@pytest.mark.parametrize(
    "change",
    [
        lambda h: h.replace("nc=00000001", "nc=0x000001"),
        lambda h: h.replace("nc=00000001", "nc=" + "0" * 4999 + "1"),
        lambda h: h.replace("nc=00000001", "nc=1"),
        lambda h: h + ", algorithm=SHA-256",
        lambda h: h + ", algorithm=MD5-sess",
        lambda h: h + ', qop="auth"',  # a field twice
        lambda h: h.replace('cnonce="abc"', 'cnonce="abc'),  # unterminated
    ],
)
def test_digest_fields_are_parsed_strictly(running, tls, change):
    with client(tls) as c:
        challenge = c.get(f"{running.urls[0]}/cdrapi").headers["www-authenticate"]
        header = digest_header(challenge, "/cdrapi")
        assert c.get(f"{running.urls[0]}/cdrapi", headers={"authorization": change(header)}).status_code == 401
        assert (
            c.get(f"{running.urls[0]}/cdrapi", headers={"authorization": header + ", algorithm=MD5"}).status_code == 200
        )


def test_failed_logins_are_delayed_then_locked_out(archive, tls):
    guard = server.Guard(failures=3, lockout=60, delay=0.2, max_delay=0.4)
    run = Running([server.LegacyApi(archive, guard=guard), server.NewApi(archive, guard=guard)], tls)
    try:
        with client(tls) as c:
            start = time.monotonic()
            for _ in range(2):
                assert c.get(f"{run.urls[0]}/cdrapi", auth=httpx.DigestAuth(USER, "wrong")).status_code == 401
            assert time.monotonic() - start >= 0.6  # 0.2 s, then 0.4 s
            assert c.get(f"{run.urls[0]}/cdrapi", auth=httpx.DigestAuth(USER, PASSWORD)).status_code == 200
            for _ in range(3):  # a success starts the count again
                assert c.get(f"{run.urls[0]}/cdrapi", auth=httpx.DigestAuth(USER, "wrong")).status_code == 401
            locked = c.get(f"{run.urls[0]}/cdrapi", auth=httpx.DigestAuth(USER, PASSWORD))
            assert locked.status_code == 429 and int(locked.headers["retry-after"]) > 0
            body = {"request": {"action": "challenge", "user": USER}}
            assert c.post(f"{run.urls[1]}/api", json=body).json()["status"] == -11
    finally:
        run.stop()
    guard = server.Guard(failures=2, lockout=60, delay=0.0)
    run = Running([server.NewApi(archive, guard=guard)], tls)
    try:
        with client(tls) as c:
            for _ in range(2):
                wrong = {"request": {"action": "login", "user": USER, "token": "0" * 32}}
                assert c.post(f"{run.urls[0]}/api", json=wrong).json()["status"] == -11
            body = {"request": {"action": "challenge", "user": USER}}
            assert c.post(f"{run.urls[0]}/api", json=body).json()["status"] == -11
    finally:
        run.stop()


def test_nonce_and_challenge_stores_are_bounded_and_constant_time():
    auth = server.DigestAuth(USER, PASSWORD, size=1000)
    for _ in range(5000):
        auth.challenge()
    assert len(auth.nonces) == 1000
    start = time.perf_counter()
    for _ in range(1000):
        auth.challenge()
    assert time.perf_counter() - start < 0.5  # 40 k nonces once cost 10 ms per 401
    store = server.Expiring(ttl=0.05, size=10)
    for k in range(100):
        store.add(str(k))
    assert len(store) == 10 and store.get("0") is None and store.get("99") is not None
    time.sleep(0.06)
    store.add("new")
    assert len(store) == 1


def tls_socket(url: str, tls) -> ssl.SSLSocket:
    ctx = ssl.create_default_context(cafile=str(tls / "ca.pem"))
    port = int(url.rsplit(":", 1)[1])
    sock = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=5), server_hostname="127.0.0.1")
    sock.settimeout(5)
    return sock


def closed(sock: ssl.SSLSocket) -> bool:
    try:
        return sock.recv(1024) == b""
    except (ConnectionError, ssl.SSLError):
        return True
    except TimeoutError:
        return False


def test_slow_headers_idle_connections_and_too_many_connections_are_closed(archive, tls):
    limits = server.Limits(header_timeout=0.5, keep_alive=1, connections=3)
    run = Running([server.LegacyApi(archive)], tls, limits=limits)
    try:
        start = time.monotonic()
        silent = tls_socket(run.urls[0], tls)
        slow = tls_socket(run.urls[0], tls)
        slow.sendall(b"GET /cdrapi HTTP/1.1\r\nHost: x\r\n")
        assert closed(silent) and closed(slow)
        assert time.monotonic() - start < 3
        kept = [tls_socket(run.urls[0], tls) for _ in range(3)]
        extra = tls_socket(run.urls[0], tls)
        assert closed(extra)
        for sock in [silent, slow, *kept, extra]:
            sock.close()
        with client(tls) as c:  # served again once they are gone
            assert c.get(f"{run.urls[0]}/cdrapi").status_code == 401
    finally:
        run.stop()


def test_a_request_body_dripped_or_cut_short_is_closed(archive, tls):
    # The new API reads its JSON body before any login: a body promised
    # longer than sent, or dripped, must not hold a connection for good.
    limits = server.Limits(header_timeout=0.5, request_timeout=1.5)
    run = Running([server.NewApi(archive)], tls, limits=limits)
    try:
        start = time.monotonic()
        short = tls_socket(run.urls[0], tls)
        short.sendall(b'POST /api HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"request"')
        drip = tls_socket(run.urls[0], tls)
        drip.sendall(b"POST /api HTTP/1.1\r\nHost: x\r\nContent-Length: 40\r\n\r\n")
        for byte in b'{"request": {"action"':  # a byte every 0.1 s: never its whole within 1.5 s
            try:
                drip.sendall(bytes([byte]))
            except (ConnectionError, ssl.SSLError):
                break  # closed under it
            time.sleep(0.1)
        assert closed(short) and closed(drip)
        assert 1.4 < time.monotonic() - start < 5
        for sock in (short, drip):
            sock.close()
        with client(tls) as c:  # a request sent at once is answered as before
            r = c.post(f"{run.urls[0]}/api", json={"request": {"action": "challenge", "user": USER}})
            assert r.status_code == 200 and r.json()["status"] == 0
    finally:
        run.stop()


def answer(sock: ssl.SSLSocket) -> bytes:
    """One HTTP response off ``sock``: its head and its body."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(
        next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
    )
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


def test_a_later_request_or_a_body_owed_after_the_answer_is_timed_too(archive, tls):
    # The deadline of a keep-alive connection's second request, and of a
    # body still owed after an early answer (a 401 before the body came).
    limits = server.Limits(header_timeout=0.5, request_timeout=1.5, keep_alive=30)
    run = Running([server.NewApi(archive), server.LegacyApi(archive)], tls, limits=limits)
    try:
        second = tls_socket(run.urls[0], tls)
        challenge = json.dumps({"request": {"action": "challenge", "user": USER}}).encode()
        second.sendall(b"POST /api HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(challenge), challenge))
        assert answer(second).startswith(b"HTTP/1.1 200")
        start = time.monotonic()
        second.sendall(b'POST /api HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"request"')
        early = tls_socket(run.urls[1], tls)
        early.sendall(b"GET /cdrapi HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nab")
        assert answer(early).startswith(b"HTTP/1.1 401")
        assert closed(second) and closed(early)
        assert time.monotonic() - start < 5
        for sock in (second, early):
            sock.close()
    finally:
        run.stop()


def test_recapi_names_are_deduplicated_and_tars_capped(archive, tls, recordings):
    small = server.Archive(
        archive.frame, server.Recordings(recordings, max_files=2, max_bytes=100_000), USER, PASSWORD, permit=[]
    )
    run = Running([server.LegacyApi(small)], tls)
    try:
        many = get(f"{run.urls[0]}/recapi?filename=" + "@".join(f"{k}.wav" for k in range(500)), tls)
        assert many.status_code == 413  # more names than a tar may hold
        one = get(f"{run.urls[0]}/recapi?filename=" + "@".join(["a.wav"] * 500), tls)
        assert one.status_code == 200 and one.headers["content-type"] == "audio/x-wav"
        assert one.content == (recordings / "monitor" / "a.wav").read_bytes()
        big = get(f"{run.urls[0]}/recapi?filename=a.wav@b.wav", tls)  # 255 kB > 100 kB
        assert big.status_code == 413
        assert get(f"{run.urls[0]}/recapi?filename=a.wav@b.wav@c.wav", tls).status_code == 413
    finally:
        run.stop()


def test_the_access_log_is_in_the_common_log_format(running, tls, caplog):
    with caplog.at_level("INFO", logger="cdrq.access"):
        get(f"{running.urls[0]}/cdrapi?format=csv&caller=6@", tls)
        deadline = time.monotonic() + 5
        while not any("caller=6@" in r.getMessage() and " 200 " in r.getMessage() for r in caplog.records):
            assert time.monotonic() < deadline
            time.sleep(0.02)
    line = next(r.getMessage() for r in caplog.records if " 200 " in r.getMessage() and "caller=6@" in r.getMessage())
    stamp = r"\[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\]"
    assert re.fullmatch(rf'127\.0\.0\.1 - - {stamp} "GET /cdrapi\?format=csv&caller=6@ HTTP/1\.1" 200 \d+', line)


def test_pages_are_sliced_from_one_filter_and_identical_to_cdrapi(archive):
    matches = server.Matches(archive.frame)
    served = server.Archive(archive.frame, None, USER, PASSWORD, permit=[], matches=matches)
    for fmt in ("csv", "json", "xml"):
        for offset in range(0, 14, 3):
            for extra in ("", "&caller=5@", "&callee=6@&minDur=1", "&startTime=2015-01-01T00:00:00"):
                qs = f"format={fmt}&numRecords=3&offset={offset}{extra}"
                assert served.answer(qs) == (cdrq.cdrapi(archive.frame, qs), fmt), qs
    assert matches.computed == 4  # one filter per query, whatever its format and page
    big = "numRecords=5000&offset=1"
    assert served.answer(big)[0] == cdrq.cdrapi(archive.frame, big)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.one_of(st.none(), st.integers(0, 48 * 3600)), min_size=0, max_size=40),
    st.one_of(st.none(), st.integers(-3600, 50 * 3600)),
    st.one_of(st.none(), st.integers(-3600, 50 * 3600)),
    st.sampled_from(["", "&caller=5@", "&minDur=10"]),
    st.sampled_from([None, "Europe/Berlin"]),
    st.booleans(),
)
def test_a_time_window_filters_through_the_start_index_as_cdrapi_does(starts, since, until, extra, zone, in_order):
    # Rows in or out of start order, null starts among them, a zone, bounds
    # outside the data: the window found by binary search (a slice of the
    # archive in start order, else gathered rows) keeps exactly cdrapi's rows.
    if in_order:
        ascending = iter(sorted(s for s in starts if s is not None))
        starts = [None if s is None else next(ascending) for s in starts]
    base = datetime(2024, 3, 30, tzinfo=timezone.utc)
    frame = pl.DataFrame(
        {
            "AcctId": list(range(len(starts))),
            "src": [f"5{i % 3}" for i in range(len(starts))],
            "start": [None if s is None else base + timedelta(seconds=s) for s in starts],
            "billsec": [i * 7 % 30 for i in range(len(starts))],
        },
        schema_overrides={"src": pl.String, "start": pl.Datetime("us", "UTC"), "billsec": pl.Int64},
    )
    if zone:
        frame = frame.with_columns(pl.col("start").dt.convert_time_zone(zone))
    qs = f"format=csv&numRecords=1000{extra}"
    for name, bound in (("startTime", since), ("endTime", until)):
        if bound is not None:
            qs += f"&{name}={(base + timedelta(seconds=bound)).strftime('%Y-%m-%dT%H:%M:%S')}Z"
    served = server.Archive(frame, None, USER, PASSWORD, permit=[])
    assert served.answer(qs) == (cdrq.cdrapi(frame, qs), "csv")


NUMBERS = ["5", "50", "500", "05", "5a", "*5", "6001", "6002", "", None]


@settings(max_examples=80, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from(NUMBERS), st.sampled_from(NUMBERS), st.booleans()), max_size=40),
    st.lists(st.sampled_from([n for n in NUMBERS if n]), min_size=1, max_size=3),
    st.sampled_from(["caller", "callee"]),
    st.sampled_from(["", "&minDur=10", "&callee=50", "&caller=5@", "&startTime=2024-03-30T00:10:00Z"]),
    st.booleans(),
)
def test_exact_numbers_filter_through_the_src_dst_index_as_cdrapi_does(rows, numbers, key, extra, pattern):
    # Numbers that are prefixes of each other, empty and null values, main
    # rows, a second list, a pattern in the list (the filter alone): the rows
    # found by binary search in the src/dst index keep exactly cdrapi's rows.
    base = datetime(2024, 3, 30, tzinfo=timezone.utc)
    frame = pl.DataFrame(
        {
            "AcctId": list(range(len(rows))),
            "src": [src for src, _, _ in rows],
            "dst": [dst for _, dst, _ in rows],
            "cdr_kind": ["main" if main else "leg" for _, _, main in rows],
            "session": [f"s{i // 2}" for i in range(len(rows))],
            "start": [base + timedelta(minutes=i) for i in range(len(rows))],
            "billsec": [i * 7 % 30 for i in range(len(rows))],
        },
        schema_overrides={"src": pl.String, "dst": pl.String, "start": pl.Datetime("us", "UTC"), "billsec": pl.Int64},
    )
    listed = ",".join(numbers + (["6@"] if pattern else []))
    qs = f"format=csv&numRecords=1000&{key}={listed}{extra}"
    served = server.Archive(frame, None, USER, PASSWORD, permit=[])
    assert served.answer(qs) == (cdrq.cdrapi(frame, qs), "csv")
    try:
        plan = cdrq.compile_query(qs, library=False)
    except cdrq.QueryError:
        return  # refused (a parameter given twice), as cdrapi refuses it: compared above
    chunk = served.matches.store.whole  # type: ignore[union-attr]
    candidates = chunk.numbered(plan)
    matched = frame.select(pl.int_range(pl.len()).filter(_expr.filters(plan, frame.schema))).to_series()
    if candidates is not None:  # every matching row is a candidate, in order
        assert set(matched.to_list()) <= set(candidates.to_list()) and candidates.is_sorted()
    for name, column in (("caller", "src"), ("callee", "dst")):
        items = getattr(plan, name)
        if candidates is None and items and all(kind == "exact" for kind, _ in items):
            # The index declines only lists that hold most rows.
            assert sum(value in {v for _, v in items} for value in frame[column]) > len(rows) // 2


def test_the_src_index_answers_an_exact_caller_list_without_a_full_filter(archive):
    served = server.Archive(archive.frame, None, USER, PASSWORD, permit=[])
    chunk = served.matches.store.whole  # type: ignore[union-attr]
    qs = "format=json&caller=5300,1000&numRecords=5"
    assert served.answer(qs) == (cdrq.cdrapi(archive.frame, qs), "json")
    assert set(chunk.by_value) == {"src"}
    assert cdrq.cdrapi(archive.frame, "format=csv&callee=6@,5@") == served.answer("format=csv&callee=6@,5@")[0]
    assert set(chunk.by_value) == {"src"}  # patterns: the filter, no dst index built


def test_a_page_asked_again_is_not_rendered_again(archive):
    served = server.Archive(archive.frame, None, USER, PASSWORD, permit=[], page_bytes=1 << 20)
    assert served.pages is not None
    qs = "format=json&caller=5@&numRecords=2&offset=1"
    first = served.page(qs)
    same = "offset=1&format=json&numRecords=2&caller=5@"  # another spelling of the same page
    assert served.page(same) is not None and served.page(qs)[0] is first[0]
    assert served.pages.computed == 1 and served.answer(same) == (cdrq.cdrapi(archive.frame, same), "json")
    with ThreadPoolExecutor(8) as pool:  # concurrent askers wait for one render
        pages = list(pool.map(served.page, [f"format=xml&numRecords=3&offset={k % 2}" for k in range(32)]))
    assert served.pages.computed == 3 and len({id(body) for body, _ in pages}) == 2
    served.pages.size = 0  # over its budget: only the newest page is kept
    served.page("format=csv&numRecords=1")
    assert list(served.pages.cache.values()) == [served.page("format=csv&numRecords=1")[0]]


def test_askers_of_a_page_being_rendered_wait_on_the_loop_and_held_pages_skip_the_workers(archive):
    # One worker, busy with a slow render: five more askers of that page wait
    # on the event loop (not in the worker's queue), a page already held is
    # answered at once, and the slow page is filtered and rendered once.
    import asyncio

    served = server.Archive(archive.frame, None, USER, PASSWORD, permit=[], workers=1)
    assert served.pages is not None and served.matches is not None
    held_qs, slow_qs = "format=csv&numRecords=2", "format=json&caller=5@&numRecords=3&offset=1"
    held = served.page(held_qs)
    release, rendering = threading.Event(), threading.Event()
    render = served.render

    def slow(*args):
        rendering.set()
        assert release.wait(10)
        return render(*args)

    served.render = slow  # type: ignore[method-assign]

    async def scenario():
        slow_pages = [asyncio.ensure_future(served.serve_page(slow_qs)) for _ in range(6)]
        await asyncio.to_thread(rendering.wait, 10)
        answered = await asyncio.wait_for(served.serve_page(held_qs), 2)
        release.set()
        return answered, await asyncio.gather(*slow_pages)

    answered, pages = asyncio.run(scenario())
    assert answered[0] is held[0] and answered[1] == "csv"
    assert len({id(body) for body, _ in pages}) == 1 and served.pages.computed == 2 and served.matches.computed == 2
    assert pages[0][0].decode() == cdrq.cdrapi(archive.frame, slow_qs) and not served.flying


def test_tls_connections_read_into_small_buffers(archive, tls):
    import asyncio.sslproto

    made = server.servers(
        archive, cert=str(tls / "cert.pem"), key=str(tls / "key.pem"), host="127.0.0.1", port=0, api_port=None
    )
    assert len(made) == 1 and asyncio.sslproto.SSLProtocol.max_size <= server.TLS_READ_BUFFER
