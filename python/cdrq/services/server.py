"""`cdrq serve`: the UCM's CDR API over an archive, on HTTPS.

Two ASGI applications on one archive:

- :class:`LegacyApi` — ``GET /cdrapi?…`` and ``GET /recapi?…`` behind HTTP
  Digest authentication (MD5, ``qop=auth``; nonces expire and each ``nc``
  is accepted once), as the UCM's port 8443 serves them;
- :class:`NewApi` — the UCM63xx ``POST /api`` JSON API (port 8089):
  ``challenge`` → ``login`` with ``token = MD5(challenge + password)`` → a
  cookie carried in the request body → ``cdrapi``/``recapi`` → ``logout``,
  with the vendor's negative ``status`` codes.

Both refuse any address outside the permitted networks (none permitted =
everyone refused, as the UCM does) with 403, and run queries on worker
threads, so many clients are served at once. :func:`serve` runs them with
uvicorn over TLS.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import json
import os
import secrets
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote, unquote

import polars as pl

from cdrq.read import read
from cdrq.render import cdrapi, requested_format
from cdrq.services.recordings import NotFound, Recordings

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

CONTENT_TYPES = {"csv": "text/csv", "json": "application/json", "xml": "text/xml"}
# The new API's status codes.
OK, INVALID_PARAMETER, BAD_COOKIE, AUTH_FAILED, NO_FILE = 0, -1, -6, -11, -25


def md5(text: str) -> str:
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


@dataclass
class Archive:
    """What both APIs answer from: the records, the recordings, the users."""

    frame: pl.DataFrame
    recordings: Recordings | None
    user: str
    password: str
    permit: list[ipaddress.IPv4Network | ipaddress.IPv6Network]
    now: Callable[[], Any] = field(default=lambda: None)
    mains: pl.DataFrame | None = None
    #: Answer in this firmware's layout (``cdrq.render``), else the spec's.
    firmware: str | None = None

    def __post_init__(self) -> None:
        # Every JSON/XML answer looks up its calls' stored main rows: once here.
        if self.mains is None and "cdr_kind" in self.frame.columns:
            self.mains = self.frame.filter(pl.col("cdr_kind") == "main")

    def permitted(self, scope: Scope) -> bool:
        client = scope.get("client")
        if not client:
            return False
        try:
            address = ipaddress.ip_address(client[0])
        except ValueError:
            return False
        return any(address in network for network in self.permit)

    def answer(self, qs: str) -> tuple[str, str]:
        """The ``/cdrapi`` response text and its format (the one asked for,
        or csv: also what a rejected ``format`` is answered in)."""
        return cdrapi(self.frame, qs, now=self.now(), mains=self.mains, firmware=self.firmware), requested_format(qs)


async def respond(send: Send, status: int, body: bytes | str, content_type: str = "text/plain", headers=()) -> None:
    body = body.encode() if isinstance(body, str) else body
    head = [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode())]
    head.extend((k.encode(), v.encode()) for k, v in headers)
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": body})


async def respond_file(send: Send, name: str, content: Path | IO[bytes]) -> None:
    """Streams a file (or a spooled tar) in 64 KiB pieces."""
    handle = content.open("rb") if isinstance(content, Path) else content
    try:
        handle.seek(0, os.SEEK_END)
        size = handle.tell()
        handle.seek(0)
        content_type = "application/x-tar" if name.endswith(".tar") else "audio/x-wav"
        headers = [
            (b"content-type", content_type.encode()),
            (b"content-length", str(size).encode()),
            (b"content-disposition", f'attachment; filename="{name}"'.encode()),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        while piece := await asyncio.to_thread(handle.read, 1 << 16):
            await send({"type": "http.response.body", "body": piece, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    finally:
        handle.close()


async def read_body(receive: Receive, limit: int = 1 << 20) -> bytes:
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if len(body) > limit:
            raise ValueError("request body too large")
        if not message.get("more_body"):
            return body


def single_params(query: str) -> dict[str, str] | None:
    """The query's parameters, or ``None`` if one is repeated or empty (the
    UCM answers those 404)."""
    pairs = [p.split("=", 1) for p in query.split("&") if p]
    params: dict[str, str] = {}
    for pair in pairs:
        if len(pair) != 2 or not pair[1]:
            return None
        key, value = unquote(pair[0]).lower(), unquote(pair[1])
        if key in params:
            return None
        params[key] = value
    return params


def recapi(recordings: Recordings | None, params: dict[str, str]) -> tuple[str, Any]:
    """("listing", text) or ("file", (name, content)); raises NotFound."""
    if recordings is None:
        raise NotFound("no recordings root")
    unknown = set(params) - {"filedir", "filename"}
    if unknown:
        raise NotFound(", ".join(unknown))
    if not params:
        return "listing", recordings.directories()
    filedir = params.get("filedir", "monitor")
    if "filename" not in params:
        return "listing", recordings.files(filedir.split("@"))
    return "file", recordings.fetch(filedir, params["filename"].split("@"))


class DigestAuth:
    """RFC 7616 Digest (MD5, qop=auth) with expiring nonces and per-nonce
    counters, so a captured request cannot be replayed."""

    def __init__(self, user: str, password: str, realm: str = "UCM", ttl: float = 300.0) -> None:
        self.user, self.realm, self.ttl = user, realm, ttl
        self.ha1 = md5(f"{user}:{realm}:{password}")
        self.nonces: dict[str, tuple[float, int]] = {}  # nonce → (issued, last nc)
        self.lock = threading.Lock()

    def challenge(self, stale: bool = False) -> str:
        nonce = secrets.token_hex(16)
        now = time.monotonic()
        with self.lock:
            self.nonces = {n: v for n, v in self.nonces.items() if now - v[0] < self.ttl}
            self.nonces[nonce] = (now, 0)
        stale_part = ", stale=true" if stale else ""
        return f'Digest realm="{self.realm}", qop="auth", algorithm=MD5, nonce="{nonce}"{stale_part}'

    def check(self, header: str | None, method: str, target: str) -> tuple[bool, bool]:
        """(accepted, stale): ``stale`` when only the nonce was too old."""
        if not header or not header.lower().startswith("digest "):
            return False, False
        fields = parse_digest(header[7:])
        try:
            user, nonce, uri, response = fields["username"], fields["nonce"], fields["uri"], fields["response"]
            qop, nc, cnonce = fields["qop"], int(fields["nc"], 16), fields["cnonce"]
        except (KeyError, ValueError):
            return False, False
        if user != self.user or qop != "auth" or uri != target or fields.get("realm", self.realm) != self.realm:
            return False, False
        expected = md5(f"{self.ha1}:{nonce}:{fields['nc']}:{cnonce}:{qop}:{md5(f'{method}:{uri}')}")
        if not secrets.compare_digest(expected, response):
            return False, False
        with self.lock:
            issued = self.nonces.get(nonce)
            if issued is None or time.monotonic() - issued[0] >= self.ttl:
                self.nonces.pop(nonce, None)
                return False, True
            if nc <= issued[1]:
                return False, False  # a replayed request
            self.nonces[nonce] = (issued[0], nc)
        return True, False


def parse_digest(text: str) -> dict[str, str]:
    fields, rest = {}, text.strip()
    while rest:
        key, _, rest = rest.partition("=")
        rest = rest.lstrip()
        if rest.startswith('"'):
            end = rest.find('"', 1)
            value, rest = rest[1:end], rest[end + 1 :]
        else:
            value, _, rest = rest.partition(",")
            rest = "," + rest
        fields[key.strip().lower()] = value.strip()
        rest = rest.lstrip().removeprefix(",").lstrip()
    return fields


class LegacyApi:
    """``/cdrapi`` and ``/recapi`` behind Digest authentication."""

    def __init__(self, archive: Archive, nonce_ttl: float = 300.0) -> None:
        self.archive = archive
        self.auth = DigestAuth(archive.user, archive.password, ttl=nonce_ttl)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            return await lifespan(receive, send)
        if not self.archive.permitted(scope):
            return await respond(send, 403, "403 Forbidden: this address is not permitted\n")
        path, query = scope["path"], scope.get("query_string", b"").decode("latin-1")
        if scope["method"] != "GET" or path not in ("/cdrapi", "/recapi"):
            return await respond(send, 404, "404 Not Found\n")
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        target = path + (f"?{query}" if query else "")
        ok, stale = self.auth.check(headers.get("authorization"), "GET", target)
        if not ok:
            challenge = self.auth.challenge(stale)
            return await respond(send, 401, "401 Unauthorized\n", headers=[("www-authenticate", challenge)])
        if path == "/cdrapi":
            text, fmt = await asyncio.to_thread(self.archive.answer, query)
            return await respond(send, 200, text, CONTENT_TYPES[fmt])
        params = single_params(query)
        try:
            if params is None:
                raise NotFound(query)
            kind, result = await asyncio.to_thread(recapi, self.archive.recordings, params)
        except NotFound:
            return await respond(send, 404, "404 Not Found\n")
        if kind == "listing":
            return await respond(send, 200, result, "text/csv")
        return await respond_file(send, *result)


class NewApi:
    """The UCM63xx ``POST /api`` JSON API."""

    def __init__(self, archive: Archive, session_ttl: float = 600.0, challenge_ttl: float = 60.0) -> None:
        self.archive, self.session_ttl, self.challenge_ttl = archive, session_ttl, challenge_ttl
        self.challenges: dict[str, float] = {}
        self.sessions: dict[str, float] = {}  # cookie → when last used
        self.lock = threading.Lock()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            return await lifespan(receive, send)
        if not self.archive.permitted(scope):
            return await respond(send, 403, "403 Forbidden: this address is not permitted\n")
        if scope["method"] != "POST" or scope["path"] != "/api":
            return await respond(send, 404, "404 Not Found\n")
        try:
            request = json.loads(await read_body(receive))["request"]
            action = request["action"]
        except (ValueError, KeyError, TypeError):
            return await self.status(send, INVALID_PARAMETER)
        handler = {"challenge": self.challenge, "login": self.login, "logout": self.logout}.get(action)
        if handler is not None:
            return await handler(send, request)
        if action not in ("cdrapi", "recapi"):
            return await self.status(send, INVALID_PARAMETER)
        if not self.valid_cookie(request.get("cookie")):
            return await self.status(send, BAD_COOKIE)
        params = {k: str(v) for k, v in request.items() if k not in ("action", "cookie")}
        if action == "cdrapi":
            qs = "&".join(f"{k}={quote(v, safe='')}" for k, v in params.items())
            text, fmt = await asyncio.to_thread(self.archive.answer, qs)
            return await respond(send, 200, text, CONTENT_TYPES[fmt])
        try:
            kind, result = await asyncio.to_thread(
                recapi, self.archive.recordings, {k.lower(): v for k, v in params.items()}
            )
        except NotFound:
            return await self.status(send, NO_FILE)
        if kind == "listing":
            return await respond(send, 200, result, "text/csv")
        return await respond_file(send, *result)

    async def status(self, send: Send, status: int, response: dict[str, Any] | None = None) -> None:
        body = {"response": response or {}, "status": status}
        await respond(send, 200, json.dumps(body), "application/json")

    async def challenge(self, send: Send, request: dict[str, Any]) -> None:
        if request.get("user") != self.archive.user:
            return await self.status(send, AUTH_FAILED)
        challenge = secrets.token_hex(16)
        with self.lock:
            now = time.monotonic()
            self.challenges = {c: t for c, t in self.challenges.items() if now - t < self.challenge_ttl}
            self.challenges[challenge] = now
        await self.status(send, OK, {"challenge": challenge})

    async def login(self, send: Send, request: dict[str, Any]) -> None:
        token, user = str(request.get("token", "")), request.get("user")
        with self.lock:
            # A challenge answers one login only.
            fresh = [c for c, t in self.challenges.items() if time.monotonic() - t < self.challenge_ttl]
            match = next((c for c in fresh if secrets.compare_digest(md5(c + self.archive.password), token)), None)
            if user != self.archive.user or match is None:
                return await self.status(send, AUTH_FAILED)
            del self.challenges[match]
            cookie = secrets.token_hex(16)
            self.sessions[cookie] = time.monotonic()
        await self.status(send, OK, {"cookie": cookie})

    async def logout(self, send: Send, request: dict[str, Any]) -> None:
        with self.lock:
            gone = self.sessions.pop(str(request.get("cookie")), None)
        await self.status(send, OK if gone else BAD_COOKIE)

    def valid_cookie(self, cookie: Any) -> bool:
        with self.lock:
            last_used = self.sessions.get(str(cookie))
            now = time.monotonic()
            if last_used is None or now - last_used >= self.session_ttl:
                self.sessions.pop(str(cookie), None)
                return False
            self.sessions[str(cookie)] = now
            return True


async def lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def open_archive(
    source: Any,
    *,
    user: str,
    password: str,
    permit: Iterable[str],
    recordings: str | os.PathLike[str] | None = None,
    tz: str | None = "UTC",
    now: Callable[[], Any] | None = None,
    firmware: str | None = None,
) -> Archive:
    """An archive (anything :func:`cdrq.read` takes, or a dataset) ready to
    serve; ``permit`` lists the networks allowed in (``"127.0.0.1/32"``)."""
    networks = [ipaddress.ip_network(p, strict=False) for p in permit]
    return Archive(
        frame=read(source, tz=tz),
        recordings=Recordings(recordings) if recordings is not None else None,
        user=user,
        password=password,
        permit=networks,
        now=now or (lambda: None),
        firmware=firmware,
    )


def self_signed(directory: Path, host: str = "localhost") -> tuple[Path, Path]:
    """A throw-away certificate and key for ``--self-signed``."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = dt.datetime.now(dt.timezone.utc)
    sans = [x509.DNSName(host), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cdrq-self-signed.pem", directory / "cdrq-self-signed.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


def servers(archive: Archive, *, cert: str, key: str, host: str, port: int, api_port: int | None) -> list[Any]:
    """uvicorn servers (TLS only) for the legacy API and, if asked, the new one."""
    import uvicorn

    apps: list[tuple[Any, int]] = [(LegacyApi(archive), port)]
    if api_port:
        apps.append((NewApi(archive), api_port))
    return [
        uvicorn.Server(
            uvicorn.Config(
                app, host=host, port=p, ssl_certfile=cert, ssl_keyfile=key, log_level="warning", lifespan="on"
            )
        )
        for app, p in apps
    ]


async def serve_forever(servers_: list[Any]) -> None:
    await asyncio.gather(*(s.serve() for s in servers_))
