"""`cdrq pull`: every CDR (and recording) off a UCM, incrementally, into a
dataset of :func:`cdrq.convert`.

The PBX answers at most 1000 records a page and splits by month, so the
pull walks month by month (UTC months, bounds sent with their offset) and
page by page with ``offset``, stopping at a short page. Records land
through the dataset's writer, which skips what is already there (same
``session``, ``AcctId``, ``cdr_kind``, ``leg``), and the position (month,
offset, and the newest start pulled, ``started_at``) is written atomically
to ``DATASET/_cdrq_pull_state.json`` after every page. A UCM writes a call
when it ends but lists it by its start, so a call that ends late lands
before the offset, or in a month already walked: a pull resumes from
:data:`LONGEST_CALL` before the newest start (never a start later than the
pull's own clock), its first window from that instant (offsets from 0),
then month by month; what it reads again is skipped. A state saved without
``started_at`` (an older cdrq) resumes from that long before its month.
Without ``since`` and without a saved position the pull takes the PBX's
whole history: it looks for the month of its first record (since 2000) by
halving, a record a question.

PortSIP (``api="portsip"``): ``POST /api/login`` for a bearer token
(renewed before it expires), ``GET /api/cdrs`` with ``filter``,
``orderby``, ``top`` and ``skip`` by ``started_at`` from
:data:`LONGEST_CALL` before the last record pulled (never later than the
pull's own time), and recordings from ``/api/recordings`` +
``/api/blobs/{digest}``.

Both UCM APIs: the legacy ``/cdrapi`` with Digest authentication, and the
UCM63xx JSON API (``challenge`` → ``login`` → cookie; a ``-6`` answer
logs in again). TLS is verified unless ``insecure=True``; ``ca`` names a
private CA's certificate. ``429``/``503`` answers are retried after
``Retry-After`` (or a growing pause), never longer than
``max_retry_after``.

The PBX is not trusted: a page is read up to ``max_page_bytes`` and no
further, every request (connecting, TLS, headers, body) ends by
``timeout`` seconds and the whole pull by ``deadline``; a page that brings
no record not seen already in its window (the same page again, however
formatted) ends the window, and a window has at most ``max_window_pages``
pages; records outside the window asked for, and records that cannot be
read, are rejects (``DATASET/_rejects/run-N.parquet``), never data; any
answer that makes no sense (an empty body too) is a :class:`PullError`
naming the PBX. Compressed answers are inflated here, a step at a time,
and only ``gzip``/``deflate``; a damaged state file is an error naming it.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import hashlib
import json
import math
import os
import pathlib
import re
import ssl
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpcore
import httpx
import polars as pl

from cdrq._core import CdrqError
from cdrq.convert import MonthWriter, atomic_parquet, atomic_write, next_run
from cdrq.dataset import MANIFEST
from cdrq.read import REJECT_SCHEMA, read

STATE = "_cdrq_pull_state.json"
RECORDINGS = "_recordings"
#: The earliest month a whole-history pull looks at.
HISTORY_FROM = dt.date(2000, 1, 1)
#: How far a naive (``tz=None``) UCM time may be from the UTC window asked for.
NAIVE_MARGIN = dt.timedelta(hours=14)
#: The longest call expected. A UCM and PortSIP list a call once it has
#: ended, by its start: a pull goes back this far before the newest start it
#: has, for the calls that began before it and ended after the last pull.
LONGEST_CALL = dt.timedelta(hours=6)
#: The most one step of inflating a compressed answer yields.
INFLATE_STEP = 1 << 20


class PullError(CdrqError):
    """The PBX could not be pulled from (refused, unreachable, nonsense)."""


@dataclass(frozen=True)
class Limits:
    """What a pull lets the PBX do: the size of a page (bytes, decoded) and
    of a recording, the seconds one request and the whole pull may take
    (``deadline`` ``None``: no end), the longest ``Retry-After`` waited,
    the pages of one window. ``sleep`` waits (tests replace it)."""

    max_page_bytes: int = 64 << 20
    max_recording_bytes: int = 1 << 30
    timeout: float = 300.0
    deadline: float | None = 6 * 3600.0
    max_retry_after: float = 300.0
    max_window_pages: int = 5000
    sleep: Callable[[float], None] = time.sleep


def months(since: dt.date, until: dt.date) -> Iterator[tuple[str, str, str]]:
    """(``YYYY-MM``, first instant, last instant) of each month, UTC."""
    year, month = since.year, since.month
    while (year, month) <= (until.year, until.month):
        nxt = (year + month // 12, month % 12 + 1)
        last = dt.datetime(*nxt, 1) - dt.timedelta(seconds=1)
        yield (
            f"{year:04}-{month:02}",
            f"{year:04}-{month:02}-01T00:00:00+00:00",
            last.strftime("%Y-%m-%dT%H:%M:%S+00:00"),
        )
        year, month = nxt


class Deadline:
    """The instant (``time.monotonic``) the request under way must be over by."""

    def __init__(self) -> None:
        self.at = math.inf

    def cap(self, timeout: float | None) -> float:
        left = self.at - time.monotonic()
        if left <= 0:
            raise httpcore.ReadTimeout("the request's time is up")
        return left if timeout is None else min(timeout, left)


class DeadlineStream(httpcore.NetworkStream):
    """A connection whose every read, write and handshake ends by the deadline,
    so a peer that drips a byte at a time cannot stretch a request."""

    def __init__(self, stream: httpcore.NetworkStream, deadline: Deadline) -> None:
        self.stream, self.deadline = stream, deadline

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self.stream.read(max_bytes, self.deadline.cap(timeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self.stream.write(buffer, self.deadline.cap(timeout))

    def close(self) -> None:
        self.stream.close()

    def start_tls(self, ssl_context, server_hostname=None, timeout=None) -> httpcore.NetworkStream:
        return DeadlineStream(
            self.stream.start_tls(ssl_context, server_hostname, self.deadline.cap(timeout)), self.deadline
        )

    def get_extra_info(self, info: str) -> Any:
        return self.stream.get_extra_info(info)


class DeadlineBackend(httpcore.NetworkBackend):
    def __init__(self, deadline: Deadline) -> None:
        self.backend, self.deadline = httpcore.SyncBackend(), deadline

    def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        stream = self.backend.connect_tcp(host, port, self.deadline.cap(timeout), local_address, socket_options)
        return DeadlineStream(stream, self.deadline)

    def connect_unix_socket(self, path, timeout=None, socket_options=None):  # pragma: no cover
        return DeadlineStream(self.backend.connect_unix_socket(path, self.deadline.cap(timeout)), self.deadline)


@dataclass
class Reply:
    """An answer read whole (or, for a recording, saved to a file)."""

    status_code: int
    headers: httpx.Headers
    content: bytes
    url: str
    saved: bool = False


class Http:
    """httpx with the limits of :class:`Limits`: bodies read up to a size,
    requests and the whole pull bounded in time, ``429``/``503`` retried."""

    def __init__(self, base: str, verify: Any, limits: Limits) -> None:
        url = httpx.URL(base)
        port = url.port or {"https": 443, "http": 80}.get(url.scheme, "")
        self.base, self.host, self.limits = base, f"{url.host}:{port}", limits
        self.deadline = Deadline()
        self.ends = math.inf if limits.deadline is None else time.monotonic() + limits.deadline
        transport = httpx.HTTPTransport(verify=verify)
        # httpx takes no network backend: the pool is made again with ours.
        transport._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(verify=verify), network_backend=DeadlineBackend(self.deadline)
        )
        timeout = httpx.Timeout(limits.timeout)
        # Only what `inflated` can bound: br or zstd would be inflated by httpx, unbounded.
        headers = {"accept-encoding": "gzip, deflate"}
        self.client = httpx.Client(transport=transport, timeout=timeout, headers=headers)

    def __enter__(self) -> Http:
        return self

    def __exit__(self, *_: object) -> None:
        self.client.close()

    def check_time(self) -> None:
        if time.monotonic() >= self.ends:
            raise PullError(
                f"{self.host}: the pull passed its deadline of {self.limits.deadline:g} s; "
                "what came is kept and the next pull goes on from there"
            )

    def request(
        self,
        method: str,
        url: str,
        *,
        allow: tuple[int, ...] = (),
        attempts: int = 6,
        sink: pathlib.Path | None = None,
        **kw: Any,
    ) -> Reply:
        """Sends, backing off on 429/503 (``Retry-After``, at most
        ``max_retry_after``, or 1, 2, 4… s). ``sink``: a 200 answer that is
        not JSON is written there instead of kept in memory."""
        for attempt in range(attempts):
            self.check_time()
            reply = self.once(method, url, sink, **kw)
            if reply.status_code in (429, 503):
                if attempt + 1 == attempts:
                    break
                self.wait(retry_after(reply.headers.get("retry-after", ""), attempt))
                continue
            if reply.status_code != 200 and reply.status_code not in allow:
                raise PullError(f"{reply.url}: HTTP {reply.status_code}")
            return reply
        raise PullError(f"{self.host}: still rate limited (HTTP 429/503) after {attempts} tries: gave up")

    def wait(self, asked: float) -> None:
        pause = min(asked, self.limits.max_retry_after)
        if time.monotonic() + pause >= self.ends:
            raise PullError(
                f"{self.host}: asked to wait {asked:g} s (Retry-After), past the pull's deadline of "
                f"{self.limits.deadline:g} s; what came is kept and the next pull goes on from there"
            )
        self.limits.sleep(pause)

    def once(self, method: str, url: str, sink: pathlib.Path | None, **kw: Any) -> Reply:
        auth = kw.pop("auth", httpx.USE_CLIENT_DEFAULT)
        self.deadline.at = min(time.monotonic() + self.limits.timeout, self.ends)
        try:
            request = self.client.build_request(method, url, **kw)
            response = self.client.send(request, auth=auth, stream=True)
            try:
                saving = (
                    sink is not None
                    and response.status_code == 200
                    and not response.headers.get("content-type", "").startswith("application/json")
                )
                limit = self.limits.max_recording_bytes if saving else self.limits.max_page_bytes
                declared = response.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > limit:
                    raise self.too_big(request.url, limit, f"it says {int(declared)}")
                if saving:
                    assert sink is not None
                    self.save(response, sink, limit, self.host)
                    return Reply(200, response.headers, b"", str(request.url), saved=True)
                body = bytearray()
                for chunk in inflated(response, self.host):
                    body += chunk
                    if len(body) > limit:
                        raise self.too_big(request.url, limit, "more came")
                return Reply(response.status_code, response.headers, bytes(body), str(request.url))
            finally:
                response.close()
        except httpx.HTTPError as e:
            if time.monotonic() >= self.deadline.at:
                if self.deadline.at >= self.ends:
                    self.check_time()
                raise PullError(
                    f"{self.host}: no whole answer to {method} {httpx.URL(url).path} within "
                    f"{self.limits.timeout:g} s (the limit of one request)"
                ) from e
            raise PullError(network_error(e)) from e
        finally:
            self.deadline.at = math.inf

    def too_big(self, url: httpx.URL, limit: int, said: str) -> PullError:
        return PullError(f"{self.host}: the answer to {url.path} is over {limit} bytes ({said}): refused")

    @staticmethod
    def save(response: httpx.Response, path: pathlib.Path, limit: int, host: str) -> None:
        tmp = path.with_name(f".{path.name}.tmp")
        size = 0
        try:
            with open(tmp, "wb") as f:
                for chunk in inflated(response, host):
                    size += len(chunk)
                    if size > limit:
                        raise PullError(
                            f"{response.request.url.host}: the recording {path.name} is over {limit} bytes: refused"
                        )
                    f.write(chunk)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)

    def json(self, reply: Reply, what: str) -> Any:
        """The reply's JSON, or a :class:`PullError` saying it is none."""
        try:
            return json.loads(reply.content)
        except ValueError:
            raise PullError(f"{self.host}: {what} is not JSON: {preview(reply.content)}") from None

    def object(self, reply: Reply, what: str) -> dict[str, Any]:
        body = self.json(reply, what)
        if not isinstance(body, dict):
            raise PullError(f"{self.host}: {what} is not a JSON object: {preview(reply.content)}")
        return body


def inflated(response: httpx.Response, host: str) -> Iterator[bytes]:
    """The body as it comes, inflated here :data:`INFLATE_STEP` bytes at a
    time: httpx inflates each chunk whole (with ``gzip, gzip``, a chunk's
    inflation whole), so a kilobyte could fill memory before any size limit
    saw it."""
    encoding = response.headers.get("content-encoding", "").strip().lower()
    if encoding in ("", "identity"):
        yield from response.iter_raw()
        return
    path = response.request.url.path
    if encoding not in ("gzip", "x-gzip", "deflate"):
        raise PullError(f"{host}: the answer to {path} is encoded {encoding!r}, which was not asked for: refused")
    inflater = zlib.decompressobj(zlib.MAX_WBITS | 32)  # gzip or zlib, by its header
    try:
        for raw in response.iter_raw():
            data = inflater.decompress(raw, INFLATE_STEP)
            while data:
                yield data
                data = inflater.decompress(inflater.unconsumed_tail, INFLATE_STEP)
    except zlib.error as e:
        raise PullError(f"{host}: the answer to {path} is no valid {encoding}: {e}") from None
    if not inflater.eof:  # framed whole by HTTP, cut short inside: a page or recording missing its end
        raise PullError(f"{host}: the answer to {path} ends inside its {encoding} stream")


def preview(content: bytes) -> str:
    text = content[:80].decode("utf-8", "replace")
    return repr(text) + ("…" if len(content) > 80 else "")


def retry_after(value: str, attempt: int) -> float:
    """Seconds a ``Retry-After`` asks for (a number or an HTTP date), else
    ``2**attempt``."""
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return float(2**attempt)
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return max(0.0, (when - dt.datetime.now(dt.timezone.utc)).total_seconds())


def network_error(e: httpx.HTTPError) -> str:
    """The error with the host and port it concerns (httpx's text names neither)."""
    try:
        url = e.request.url
    except RuntimeError:  # no request attached
        return str(e) or type(e).__name__
    port = url.port or {"https": 443, "http": 80}.get(url.scheme, "")
    return f"{url.host}:{port}: {str(e) or type(e).__name__}"


class Digest(httpx.DigestAuth):
    """httpx's Digest, a challenge it cannot answer (``qop="auth-int"``
    alone, an algorithm it does not know) a :class:`PullError` naming the
    PBX instead of httpx's ``NotImplementedError`` or ``KeyError``."""

    def __init__(self, user: str, password: str, host: str) -> None:
        super().__init__(user, password)
        self.host = host

    def auth_flow(self, request: httpx.Request) -> Any:
        try:
            yield from super().auth_flow(request)
        except NotImplementedError as e:
            raise PullError(f"{self.host}: cannot answer its Digest challenge: {e}") from None
        except KeyError as e:
            raise PullError(f"{self.host}: its Digest challenge asks for algorithm {e.args[0]}, unknown here") from None


class LegacyClient:
    """``GET /cdrapi`` and ``/recapi`` with Digest authentication."""

    def __init__(self, http: Http, user: str, password: str) -> None:
        self.http, self.base, self.auth = http, http.base, Digest(user, password, http.host)

    def cdrapi(self, params: dict[str, Any]) -> bytes:
        return self.http.request("GET", f"{self.base}/cdrapi", params=params, auth=self.auth).content

    def recapi(self, params: dict[str, Any], sink: pathlib.Path) -> Reply:
        return self.http.request("GET", f"{self.base}/recapi", params=params, auth=self.auth, allow=(404,), sink=sink)


class NewApiClient:
    """The UCM63xx JSON API: a cookie from challenge/login, renewed on -6."""

    def __init__(self, http: Http, user: str, password: str) -> None:
        self.http, self.base, self.user, self.password = http, http.base, user, password
        self.cookie: str | None = None

    def login(self) -> None:
        challenge = self.http.object(
            self.post({"action": "challenge", "user": self.user, "version": "1.0"}), "challenge"
        )
        if challenge.get("status") != 0:
            raise PullError(f"{self.base}: challenge refused (status {challenge.get('status')!r})")
        text = dig(challenge, "response", "challenge")
        if not isinstance(text, str):
            raise PullError(
                f"{self.base}: the challenge answer holds no challenge: {preview(json.dumps(challenge).encode())}"
            )
        token = hashlib.md5((text + self.password).encode()).hexdigest()
        answer = self.http.object(self.post({"action": "login", "user": self.user, "token": token}), "login")
        if answer.get("status") != 0:
            raise PullError(f"{self.base}: login refused (status {answer.get('status')!r})")
        cookie = dig(answer, "response", "cookie")
        if not isinstance(cookie, str) or not cookie:
            raise PullError(f"{self.base}: the login answer holds no cookie: {preview(json.dumps(answer).encode())}")
        self.cookie = cookie

    def post(self, request: dict[str, Any], sink: pathlib.Path | None = None) -> Reply:
        return self.http.request("POST", f"{self.base}/api", json={"request": request}, sink=sink)

    def call(self, action: str, params: dict[str, Any], sink: pathlib.Path | None = None) -> Reply:
        for _ in range(2):
            if self.cookie is None:
                self.login()
            response = self.post({"action": action, "cookie": self.cookie, **params}, sink)
            if status_of(response) == -6:  # cookie expired: log in again once
                self.cookie = None
                continue
            return response
        raise PullError(f"{self.base}: the PBX keeps refusing a fresh cookie")

    def cdrapi(self, params: dict[str, Any]) -> bytes:
        response = self.call("cdrapi", params)
        if (status := status_of(response)) not in (None, 0):
            raise PullError(f"{self.base}: cdrapi answered status {status!r}")
        return response.content

    def recapi(self, params: dict[str, Any], sink: pathlib.Path) -> Reply:
        return self.call("recapi", params, sink)


def dig(value: Any, *keys: str) -> Any:
    for key in keys:
        value = value.get(key) if isinstance(value, dict) else None
    return value


def status_of(response: Reply) -> int | None:
    """The new API's ``status`` if the response is a status object."""
    if response.saved or not response.headers.get("content-type", "").startswith("application/json"):
        return None
    try:
        body = json.loads(response.content)
    except ValueError:
        return None
    return body.get("status") if isinstance(body, dict) and "cdr_root" not in body else None


def pull(
    url: str,
    to: str | os.PathLike[str],
    *,
    user: str,
    password: str,
    since: dt.date | str | None = None,
    until: dt.date | None = None,
    recordings: bool = False,
    api: str = "auto",
    ca: str | None = None,
    insecure: bool = False,
    tz: str | None = "UTC",
    page_size: int = 1000,
    max_pages: int | None = None,
    limits: Limits | None = None,
    report: Callable[[str], None] | None = None,
) -> dict[str, int]:
    """Pulls the PBX at ``url`` (``https://host:8443`` for the legacy API,
    ``https://host:8089`` for the new one; ``api`` ``"legacy"``, ``"new"``
    or ``"auto"``; ``"portsip"`` for a PortSIP PBX's REST API) into the
    dataset ``to``. ``since`` defaults to where the last pull stopped,
    else the PBX's whole history (from the month of its first record);
    ``max_pages`` stops early (what was written stays, and the next pull
    goes on from there). ``limits`` bounds what the PBX may do
    (:class:`Limits`). ``report`` is told, a line each, where the pull
    starts and which window it fetches. Returns counts: ``pages``,
    ``records``, ``written``, ``recordings``, ``rejects``."""
    root = pathlib.Path(to)
    root.mkdir(parents=True, exist_ok=True)
    state_path = root / STATE
    states = load_states(state_path)
    state = states.get(url, {})
    today = until or dt.datetime.now(dt.timezone.utc).date()
    say = report or (lambda line: None)
    history, resuming = False, False
    if since is None and ("month" in state or "started_at" in state):
        since = dt.date.fromisoformat(state["month"] + "-01") if "month" in state else HISTORY_FROM
        resuming = True
        say(f"resuming where the last pull of {url} stopped")
    elif since is None:
        since, history = HISTORY_FROM, True
        say(f"no --since and no earlier pull of {url}: pulling its whole history")
    elif isinstance(since, str):
        since = dt.date.fromisoformat(since)
    verify: Any = False if insecure else ssl.create_default_context(cafile=ca) if ca else True
    run = next_run(root)
    limits = limits or Limits()
    target = Target(root, url, states, MonthWriter(root, run, tz), tz, page_size, max_pages, recordings, limits, say)
    try:
        with Http(url.rstrip("/"), verify, limits) as http:
            if api == "portsip":
                pull_portsip(PortsipClient(http, user, password), target, state if resuming else {}, since, today)
            else:
                client = connect(http, user, password, api)
                if history:
                    first = first_month(client, target, today)
                    if first is None:
                        say(f"{url} holds no record")
                        return target.counts
                    say(f"its first record is from {first:%Y-%m}")
                    since = first
                pull_ucm(client, target, state if resuming else {}, since, today)
    finally:
        target.close(run)
    counts = target.counts
    line = {
        "run": run,
        "source": url,
        "kind": "pull",
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **counts,
    }
    with (root / MANIFEST).open("a") as f:
        f.write(json.dumps(line) + "\n")
    return counts


def load_states(path: pathlib.Path) -> dict[str, Any]:
    """The saved positions, by PBX. A damaged file (truncated, edited) is an
    error naming it, not a guess: a wrong position would skip records."""
    if not path.exists():
        return {}
    try:
        states = json.loads(path.read_bytes())
    except ValueError:
        states = None
    if not isinstance(states, dict) or not all(map(valid_position, states.values())):
        raise PullError(
            f"{path}: damaged, not the positions of earlier pulls; remove it to pull from --since or the whole "
            "history again (records already in the dataset are skipped)"
        )
    return states


def valid_position(state: Any) -> bool:
    """A UCM's ``{"month": "YYYY-MM", "offset": N, "started_at": ISO}`` (``started_at`` absent from a
    state saved by an older cdrq) or PortSIP's ``{"started_at": ISO}``."""
    if not isinstance(state, dict):
        return False
    month, offset = state.get("month", "2000-01"), state.get("offset", 0)
    try:
        if "started_at" in state:  # the newest start pulled: from it a pull resumes, LONGEST_CALL before
            started = state["started_at"]
            if not isinstance(started, str):
                return False
            parse_instant(started).astimezone(dt.timezone.utc) - LONGEST_CALL
        if not isinstance(month, str) or not re.fullmatch(r"\d{4}-\d{2}", month):
            return False
        dt.datetime.fromisoformat(f"{month}-01T00:00:00+00:00") - LONGEST_CALL
    except (TypeError, ValueError, AttributeError, OverflowError):
        return False
    return isinstance(offset, int) and not isinstance(offset, bool) and offset >= 0


@dataclass
class Target:
    """Where a pull writes, and what it has done so far."""

    root: pathlib.Path
    url: str
    states: dict[str, Any]
    writer: MonthWriter
    tz: str | None
    page_size: int
    max_pages: int | None
    recordings: bool
    limits: Limits = field(default_factory=Limits)
    report: Callable[[str], None] = lambda line: None
    counts: dict[str, int] = field(
        default_factory=lambda: {"pages": 0, "records": 0, "written": 0, "recordings": 0, "rejects": 0}
    )
    rejects: list[tuple] = field(default_factory=list)

    def more_pages(self) -> bool:
        return self.max_pages is None or self.counts["pages"] < self.max_pages

    def parse(self, page: bytes, format: str, host: str, label: str) -> tuple[pl.DataFrame, list[tuple]]:
        """The page's records and its unreadable ones (as reject rows)."""
        try:
            frame, bad = read(page, format=format, tz=self.tz, on_error="collect")
        except CdrqError as e:
            raise PullError(f"{host}: {label}: the answer is no {format} page: {e}") from None
        return frame, [(label, *row[1:]) for row in bad.iter_rows()]

    def write(self, frame: pl.DataFrame, window: tuple[dt.datetime, dt.datetime], label: str, naive_utc: bool) -> None:
        """Writes the records inside ``window``; the others, and ``bad``, are rejects."""
        inside = in_window(frame, window, naive_utc)
        kept, outside = frame.filter(inside), frame.filter(~inside)
        self.counts["pages"] += 1
        self.counts["records"] += kept.height
        self.counts["written"] += self.writer.write(kept)
        lo, hi = (w.strftime("%Y-%m-%dT%H:%M:%S%z") for w in window)
        for row in outside.iter_rows(named=True):
            raw = json.dumps({k: v for k, v in row.items() if v is not None}, default=str)
            self.reject((label, None, None, f"start {row['start']} is outside the window asked for ({lo} … {hi})", raw))

    def reject(self, row: tuple) -> None:
        self.rejects.append(row)
        self.counts["rejects"] += 1

    def save_state(self, state: dict[str, Any]) -> None:
        """This PBX's position, written atomically after every page."""
        self.states[self.url] = state
        atomic_write(self.root / STATE, json.dumps(self.states).encode())

    def close(self, run: int) -> None:
        """Keeps the rejects, whatever ended the pull."""
        if self.rejects:
            (self.root / "_rejects").mkdir(exist_ok=True)
            frame = pl.DataFrame(self.rejects, schema=REJECT_SCHEMA, orient="row")
            atomic_parquet(frame, self.root / "_rejects" / f"run-{run:06d}.parquet")


def in_window(frame: pl.DataFrame, window: tuple[dt.datetime, dt.datetime], naive_utc: bool) -> pl.Expr:
    """Records whose ``start`` lies in ``window`` (UTC instants), or is null.
    Naive UCM times are wall-clock in an unknown zone: they get 14 hours
    either side."""
    start = pl.col("start")
    lo, hi = window
    if frame.schema["start"].time_zone is not None:  # type: ignore[attr-defined]
        start = start.dt.convert_time_zone("UTC")
    else:
        margin = dt.timedelta(0) if naive_utc else NAIVE_MARGIN
        lo, hi = (lo - margin).replace(tzinfo=None), (hi + margin).replace(tzinfo=None)
    return start.is_null() | start.is_between(lo, hi)


def row_hashes(frame: pl.DataFrame, bad: list[tuple]) -> set[int]:
    """What a page holds, whatever its formatting: its parsed records and
    the raw text of its unreadable ones."""
    hashes = set(frame.hash_rows(seed=0).to_list()) if frame.height else set()
    return hashes | {hash(row[4]) for row in bad}


def window_of(first: str, last: str) -> tuple[dt.datetime, dt.datetime]:
    return dt.datetime.fromisoformat(first), dt.datetime.fromisoformat(last) + dt.timedelta(seconds=1) - dt.timedelta(
        microseconds=1
    )


def ucm_page(client: LegacyClient | NewApiClient, t: Target, first: str, last: str, size: int, offset: int) -> bytes:
    params = {"format": "json", "startTime": first, "endTime": last, "numRecords": size, "offset": offset}
    page = client.cdrapi(params)
    if not page.strip():
        # No records is the empty container; taking an empty body for it
        # would move the saved position past the month for good.
        raise PullError(
            f"{client.http.host}: /cdrapi {first[:10]} … {last[:10]} offset {offset}: an empty answer "
            '(no records would be {"cdr_root": []})'
        )
    return page


def first_month(client: LegacyClient | NewApiClient, t: Target, today: dt.date) -> dt.date | None:
    """The month of the PBX's first record (since :data:`HISTORY_FROM`),
    halving the months in between: one record asked for each time."""
    spans = list(months(HISTORY_FROM, today))

    def any_record(upto: int) -> bool:
        first, last = spans[0][1], spans[upto][2]
        page = ucm_page(client, t, first, last, 1, 0)
        frame, _ = t.parse(page, "ucm-json", client.http.host, f"{client.base}/cdrapi {first[:10]} … {last[:10]}")
        if not frame.height:
            return False
        return bool(
            frame.select(in_window(frame, window_of(first, last), False) & pl.col("start").is_not_null())
            .to_series()
            .any()
        )

    if not any_record(len(spans) - 1):
        return None
    lo, hi = 0, len(spans) - 1
    while lo < hi:
        mid = (lo + hi) // 2
        if any_record(mid):
            hi = mid
        else:
            lo = mid + 1
    return dt.date.fromisoformat(spans[lo][0] + "-01")


def pull_ucm(
    client: LegacyClient | NewApiClient, t: Target, state: dict[str, Any], since: dt.date, today: dt.date
) -> None:
    """Month by month, page by page with ``offset``. A pull that resumes
    (``state`` non-empty) starts :data:`LONGEST_CALL` before the newest
    start it has (an old state without one: before its month), its first
    window from that instant on; the others are whole months."""
    host = client.http.host
    # Never past the pull's own time: a PBX clock ahead would skip the calls in between.
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    if "started_at" in state:
        newest = min(parse_instant(state["started_at"]).astimezone(dt.timezone.utc), now)
        start = newest - LONGEST_CALL
    elif state:  # a state saved before the newest start was: its whole month again
        newest = dt.datetime.fromisoformat(f"{state['month']}-01T00:00:00+00:00")
        start = newest - LONGEST_CALL
    else:
        newest = start = dt.datetime(since.year, since.month, 1, tzinfo=dt.timezone.utc)
    for month, first, last in months(start.date(), today):
        if dt.datetime.fromisoformat(first) < start:
            first = start.strftime("%Y-%m-%dT%H:%M:%S+00:00")
        whole = first.endswith("-01T00:00:00+00:00")
        span = f"{first[:10]} … {last[:10]}" if whole else f"{first[:10]} {first[11:19]} … {last[:10]}"
        t.report(f"fetching {span} (UTC)")
        window = window_of(first, last)
        offset, seen, pages = 0, set[int](), 0
        while t.more_pages():
            if pages >= t.limits.max_window_pages:
                raise PullError(
                    f"{host}: more than {t.limits.max_window_pages} pages in {month}: a PBX that pages without end? "
                    "(what came is kept; the next pull goes on from there)"
                )
            label = f"{client.base}/cdrapi {month}{'' if whole else ' from ' + first[11:19]} offset {offset}"
            page = ucm_page(client, t, first, last, t.page_size, offset)
            frame, bad = t.parse(page, "ucm-json", host, label)
            held = row_hashes(frame, bad)
            if held and held <= seen:
                break  # the PBX ignored offset: a page seen already
            seen |= held
            pages += 1
            legs = frame.filter(frame["cdr_kind"] != "main").height + len(bad)
            t.write(frame, window, label, naive_utc=False)
            for row in bad:
                t.reject(row)
            if t.recordings:
                t.counts["recordings"] += fetch_recordings(client, frame, t.root / RECORDINGS)
            offset += legs
            if frame.height and (found := latest_start(frame, window, naive_utc=False)) is not None:
                newest = max(newest, min(found, now))
            t.save_state({"month": month, "offset": offset, "started_at": newest.strftime("%Y-%m-%dT%H:%M:%SZ")})
            if legs < t.page_size:
                break
        if not t.more_pages():
            return


class PortsipClient:
    """PortSIP's REST API: a bearer token from ``POST /api/login``, renewed
    a minute before it expires (or on a 401)."""

    def __init__(self, http: Http, user: str, password: str) -> None:
        self.http, self.base, self.user, self.password = http, http.base, user, password
        self.token: str | None = None
        self.expires = 0.0

    def login(self) -> None:
        body = {"name": self.user, "password": self.password}
        answer = self.http.request("POST", f"{self.base}/api/login", json=body, allow=(401, 403))
        if answer.status_code != 200:
            raise PullError(f"{self.base}: login refused (HTTP {answer.status_code})")
        data = self.http.object(answer, "the login answer")
        token = data.get("access_token")
        if not isinstance(token, str) or not token:
            raise PullError(f"{self.base}: the login answer holds no access_token: {preview(answer.content)}")
        life = data.get("expires_in", 3600)
        if isinstance(life, str):
            life = float(life) if re.fullmatch(r"\d+(\.\d+)?", life) else 3600
        if isinstance(life, bool) or not isinstance(life, (int, float)) or not math.isfinite(life):
            life = 3600
        self.token = token
        self.expires = time.monotonic() + min(max(float(life), 0.0), 86400.0)

    def get(self, path: str, params: dict[str, Any] | None = None, sink: pathlib.Path | None = None) -> Reply:
        for _ in range(2):
            if self.token is None or time.monotonic() > self.expires - 60:
                self.login()
            headers = {"authorization": f"Bearer {self.token}"}
            response = self.http.request(
                "GET", f"{self.base}{path}", params=params, headers=headers, allow=(401,), sink=sink
            )
            if response.status_code == 401:
                self.token = None
                continue
            return response
        raise PullError(f"{self.base}: the PBX keeps refusing a fresh token")

    def listing(self, path: str, params: dict[str, Any], what: str) -> tuple[bytes, list[Any], int | None]:
        """A page of ``{"items": [...], "count": N}``: its bytes, items and count."""
        reply = self.get(path, params)
        body = self.http.object(reply, what)
        items = body.get("items")
        if items is None:
            items = []
        if not isinstance(items, list):
            raise PullError(f'{self.http.host}: {what}: "items" is no list: {preview(reply.content)}')
        count = body.get("count")
        return reply.content, items, count if isinstance(count, int) and not isinstance(count, bool) else None


def pull_portsip(client: PortsipClient, t: Target, state: dict[str, Any], since: dt.date, today: dt.date) -> None:
    """CDRs by ``started_at`` from :data:`LONGEST_CALL` before the last one
    pulled (the dataset skips what it has), ``top``/``skip`` pages; then
    recordings."""
    host = client.http.host
    # Never past the pull's own time: a PBX clock ahead would skip the calls in between.
    pulled_at = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    if resumed := state.get("started_at"):
        newest = min(resumed, pulled_at, key=parse_instant)
        start = (parse_instant(newest) - LONGEST_CALL).strftime("%Y-%m-%dT%H:%M:%SZ")
    else:
        newest = start = f"{since.isoformat()}T00:00:00Z"
    end = next(iter(months(today, today)))[2]
    window = (parse_instant(start), window_of(end, end)[1])
    skip, seen, pages = 0, set[int](), 0
    t.report(f"fetching calls started at or after {start}")
    while t.more_pages():
        if pages >= t.limits.max_window_pages:
            raise PullError(
                f"{host}: more than {t.limits.max_window_pages} pages of calls: a PBX that pages without end? "
                "(what came is kept; the next pull goes on from there)"
            )
        params = {"filter": f"started_at ge '{start}'", "orderby": "started_at asc", "top": t.page_size, "skip": skip}
        label = f"{client.base}/api/cdrs since {start} skip {skip}"
        page, items, count = client.listing("/api/cdrs", params, "the /api/cdrs answer")
        frame, bad = t.parse(page, "portsip-json", host, label) if items else (pl.DataFrame(), [])
        held = row_hashes(frame, bad)
        if held and held <= seen:
            break  # the same calls again: the PBX ignored skip
        seen |= held
        pages += 1
        if items:
            t.write(frame, window, label, naive_utc=True)
            for row in bad:
                t.reject(row)
            newest = max(newest, min(latest(frame, window) or newest, pulled_at, key=parse_instant), key=parse_instant)
        else:
            t.counts["pages"] += 1
        skip += len(items)
        t.save_state({"started_at": newest})
        if len(items) < t.page_size or (count is not None and skip >= count):
            break
    if t.recordings:
        t.counts["recordings"] = fetch_portsip_recordings(client, t.root / RECORDINGS, t)


def parse_instant(text: str) -> dt.datetime:
    when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)


def latest_start(frame: pl.DataFrame, window: tuple[dt.datetime, dt.datetime], naive_utc: bool) -> dt.datetime | None:
    """The latest start in the window, a UTC instant to the second. A naive
    one is UTC if ``naive_utc``, else wall-clock in an unknown zone: taken
    at its earliest, :data:`NAIVE_MARGIN` before."""
    start = pl.col("start")
    aware = frame.schema["start"].time_zone is not None  # type: ignore[attr-defined]
    if aware:
        start = start.dt.convert_time_zone("UTC")
    kept = frame.filter(in_window(frame, window, naive_utc)).select(start.max()).item()
    if kept is None:
        return None
    kept = kept.replace(tzinfo=dt.timezone.utc, microsecond=0)
    return kept if aware or naive_utc else kept - NAIVE_MARGIN


def latest(frame: pl.DataFrame, window: tuple[dt.datetime, dt.datetime]) -> str | None:
    """The latest start in the window, as PortSIP writes it (UTC, to the second)."""
    kept = latest_start(frame, window, naive_utc=True)
    return None if kept is None else kept.strftime("%Y-%m-%dT%H:%M:%SZ")


def safe_name(name: str) -> bool:
    """A file name to keep a recording under: no path, hidden or odd name."""
    return 0 < len(name) <= 255 and not name.startswith(".") and not re.search(r"[/\\\x00-\x1f]", name)


def fetch_portsip_recordings(client: PortsipClient, directory: pathlib.Path, t: Target) -> int:
    fetched, skip, seen, pages = 0, 0, set[str](), 0
    while pages < t.limits.max_window_pages:
        _, items, count = client.listing(
            "/api/recordings", {"top": t.page_size, "skip": skip}, "the /api/recordings answer"
        )
        pages += 1
        digests = {str(i.get("digest")) for i in items if isinstance(i, dict)}
        if items and digests <= seen:
            break  # the same recordings again
        seen |= digests
        for item in items:
            if not isinstance(item, dict):
                continue
            digest = str(item.get("digest") or "")
            name = str(item.get("file_name") or digest).rsplit("/", 1)[-1]
            if not re.fullmatch(r"[0-9A-Za-z]{1,128}", digest) or not safe_name(name) or (directory / name).exists():
                continue
            directory.mkdir(parents=True, exist_ok=True)
            blob = client.get(f"/api/blobs/{digest}", sink=directory / name)
            fetched += blob.saved
        skip += len(items)
        if len(items) < t.page_size or (count is not None and skip >= count):
            break
    return fetched


def connect(http: Http, user: str, password: str, api: str) -> LegacyClient | NewApiClient:
    if api == "auto":
        probe = http.request("POST", f"{http.base}/api", json={"request": {"action": "challenge", "user": user}},
                             allow=tuple(range(100, 600)))  # fmt: skip
        api = "new" if status_of(probe) is not None else "legacy"
    if api == "new":
        return NewApiClient(http, user, password)
    if api == "legacy":
        return LegacyClient(http, user, password)
    raise PullError(f"api must be 'auto', 'legacy' or 'new', not {api!r}")


def fetch_recordings(client: LegacyClient | NewApiClient, frame: pl.DataFrame, directory: pathlib.Path) -> int:
    """Downloads the recordings the records name, once each."""
    fetched = 0
    for files in frame["recordfiles"].drop_nulls().unique(maintain_order=True):
        for name in (n for n in files.split("@") if n):
            base = name.rsplit("/", 1)[-1]
            if not safe_name(base) or (directory / base).exists():
                continue
            directory.mkdir(parents=True, exist_ok=True)
            response = client.recapi({"filedir": "monitor", "filename": base}, directory / base)
            fetched += response.saved
    return fetched
