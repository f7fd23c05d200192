"""`cdrq serve` over real loopback TLS (a test CA from trustme), with real
clients: Digest auth, the permit list, /recapi's path rules, and the new
JSON API's login flow and status codes."""

from __future__ import annotations

import hashlib
import io
import ipaddress
import os
import socket
import ssl
import tarfile
import threading
import time
from pathlib import Path

import httpx
import pytest
import uvicorn

import cdrq
from cdrq.services import server

USER, PASSWORD = "cdrapi", "s3cret pass"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Running:
    """ASGI apps served by uvicorn with TLS on loopback, in a thread."""

    def __init__(self, apps, cert_dir: Path) -> None:
        self.servers, self.urls = [], []
        for app in apps:
            port = free_port()
            config = uvicorn.Config(
                app,
                host="127.0.0.1",
                port=port,
                ssl_certfile=str(cert_dir / "cert.pem"),
                ssl_keyfile=str(cert_dir / "key.pem"),
                log_level="warning",
            )
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
    legacy, new = server.LegacyApi(archive), server.NewApi(archive)
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
        running.legacy.auth.ttl = 0.0
        try:
            stale = c.get(
                f"{running.urls[0]}/cdrapi?format=csv",
                headers={"authorization": digest_header(challenge, "/cdrapi?format=csv", nc=4)},
            )
        finally:
            running.legacy.auth.ttl = 300.0
        assert stale.status_code == 401 and "stale=true" in stale.headers["www-authenticate"]


def test_addresses_outside_the_permit_list_are_403(archive, tls):
    refused = server.Archive(archive.frame, None, USER, PASSWORD, permit=[])
    elsewhere = server.Archive(archive.frame, None, USER, PASSWORD, permit=[ipaddress.ip_network("10.0.0.0/8")])
    run = Running([server.LegacyApi(refused), server.LegacyApi(elsewhere), server.NewApi(refused)], tls)
    try:
        with client(tls, auth=httpx.DigestAuth(USER, PASSWORD)) as c:
            assert c.get(f"{run.urls[0]}/cdrapi").status_code == 403
            assert c.get(f"{run.urls[1]}/cdrapi").status_code == 403
            assert c.post(f"{run.urls[2]}/api", json={"request": {"action": "challenge"}}).status_code == 403
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
    running.new.session_ttl = 0.0
    try:
        assert api(running, tls, {"action": "cdrapi", "cookie": cookie}).json()["status"] == -6
    finally:
        running.new.session_ttl = 600.0


def test_self_signed_certificate_serves(tmp_path):
    cert, key = server.self_signed(tmp_path)
    assert cert.read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")
    assert os.path.getsize(key) > 0


def test_an_archive_served_in_a_firmware_layout(samples):
    path = samples / "ucm6xxx-fw1.0.11-cdrapi.csv"
    archive = server.open_archive(path, user=USER, password=PASSWORD, permit=[], firmware="1.0.11")
    assert archive.answer("format=CSV&caller=6039") == (path.read_text(), "csv")
