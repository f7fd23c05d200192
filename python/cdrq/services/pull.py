"""`cdrq pull`: every CDR (and recording) off a UCM, incrementally, into a
dataset of :func:`cdrq.convert`.

The PBX answers at most 1000 records a page and splits by month, so the
pull walks month by month (UTC months, bounds sent with their offset) and
page by page with ``offset``, stopping at a short page, and stopping too if
a page repeats the one before (a PBX that ignores ``offset`` would
otherwise loop forever). Records land through the dataset's writer, which
skips what is already there (same ``session``, ``AcctId``, ``cdr_kind``,
``leg``), and the position (month, offset) is written atomically to
``DATASET/_cdrq_pull_state.json`` after every page: an interrupted pull
resumes there with neither gap nor duplicate.

PortSIP (``api="portsip"``): ``POST /api/login`` for a bearer token
(renewed before it expires), ``GET /api/cdrs`` with ``filter``,
``orderby``, ``top`` and ``skip`` by ``started_at`` from the last record
pulled, and recordings from ``/api/recordings`` + ``/api/blobs/{digest}``.

Both UCM APIs: the legacy ``/cdrapi`` with Digest authentication, and the
UCM63xx JSON API (``challenge`` → ``login`` → cookie; a ``-6`` answer
logs in again). TLS is verified unless ``insecure=True``; ``ca`` names a
private CA's certificate. ``429``/``503`` answers are retried after
``Retry-After`` (or a growing pause).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import pathlib
import ssl
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import polars as pl

from cdrq._core import CdrqError
from cdrq.convert import MonthWriter, atomic_write, next_run
from cdrq.dataset import MANIFEST
from cdrq.read import read

STATE = "_cdrq_pull_state.json"
RECORDINGS = "_recordings"


class PullError(CdrqError):
    """The PBX could not be pulled from (refused, unreachable, nonsense)."""


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


class LegacyClient:
    """``GET /cdrapi`` and ``/recapi`` with Digest authentication."""

    def __init__(self, http: httpx.Client, base: str, user: str, password: str) -> None:
        self.http, self.base, self.auth = http, base, httpx.DigestAuth(user, password)

    def cdrapi(self, params: dict[str, Any]) -> bytes:
        return send(lambda: self.http.get(f"{self.base}/cdrapi", params=params, auth=self.auth)).content

    def recapi(self, params: dict[str, Any]) -> httpx.Response:
        return send(lambda: self.http.get(f"{self.base}/recapi", params=params, auth=self.auth), allow=(404,))


class NewApiClient:
    """The UCM63xx JSON API: a cookie from challenge/login, renewed on -6."""

    def __init__(self, http: httpx.Client, base: str, user: str, password: str) -> None:
        self.http, self.base, self.user, self.password = http, base, user, password
        self.cookie: str | None = None

    def login(self) -> None:
        challenge = self.post({"action": "challenge", "user": self.user, "version": "1.0"}).json()
        if challenge.get("status") != 0:
            raise PullError(f"{self.base}: challenge refused (status {challenge.get('status')})")
        token = hashlib.md5((challenge["response"]["challenge"] + self.password).encode()).hexdigest()
        answer = self.post({"action": "login", "user": self.user, "token": token}).json()
        if answer.get("status") != 0:
            raise PullError(f"{self.base}: login refused (status {answer.get('status')})")
        self.cookie = answer["response"]["cookie"]

    def post(self, request: dict[str, Any]) -> httpx.Response:
        return send(lambda: self.http.post(f"{self.base}/api", json={"request": request}))

    def call(self, action: str, params: dict[str, Any]) -> httpx.Response:
        for _ in range(2):
            if self.cookie is None:
                self.login()
            response = self.post({"action": action, "cookie": self.cookie, **params})
            status = status_of(response)
            if status == -6:  # cookie expired: log in again once
                self.cookie = None
                continue
            return response
        raise PullError(f"{self.base}: the PBX keeps refusing a fresh cookie")

    def cdrapi(self, params: dict[str, Any]) -> bytes:
        response = self.call("cdrapi", params)
        if (status := status_of(response)) not in (None, 0):
            raise PullError(f"{self.base}: cdrapi answered status {status}")
        return response.content

    def recapi(self, params: dict[str, Any]) -> httpx.Response:
        return self.call("recapi", params)


def status_of(response: httpx.Response) -> int | None:
    """The new API's ``status`` if the response is a status object."""
    if not response.headers.get("content-type", "").startswith("application/json"):
        return None
    try:
        body = response.json()
    except ValueError:
        return None
    return body.get("status") if isinstance(body, dict) and "cdr_root" not in body else None


def send(request, allow: tuple[int, ...] = (), attempts: int = 6) -> httpx.Response:
    """Sends, backing off on 429/503 (``Retry-After`` or 1, 2, 4… s)."""
    for attempt in range(attempts):
        try:
            response = request()
        except httpx.HTTPError as e:
            raise PullError(network_error(e)) from e
        if response.status_code in (429, 503) and attempt + 1 < attempts:
            retry = response.headers.get("retry-after", "")
            time.sleep(float(retry) if retry.replace(".", "", 1).isdigit() else 2**attempt)
            continue
        if response.status_code != 200 and response.status_code not in allow:
            raise PullError(f"{response.request.url}: HTTP {response.status_code}")
        return response
    raise PullError("rate limited: gave up")


def network_error(e: httpx.HTTPError) -> str:
    """The error with the host and port it concerns (httpx's text names neither)."""
    try:
        url = e.request.url
    except RuntimeError:  # no request attached
        return str(e) or type(e).__name__
    port = url.port or {"https": 443, "http": 80}.get(url.scheme, "")
    return f"{url.host}:{port}: {str(e) or type(e).__name__}"


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
    report: Callable[[str], None] | None = None,
) -> dict[str, int]:
    """Pulls the PBX at ``url`` (``https://host:8443`` for the legacy API,
    ``https://host:8089`` for the new one; ``api`` ``"legacy"``, ``"new"``
    or ``"auto"``; ``"portsip"`` for a PortSIP PBX's REST API) into the
    dataset ``to``. ``since`` defaults to where
    the last pull stopped, else three months back (the UCM keeps three);
    ``max_pages`` stops early (what was written stays, and the next pull
    goes on from there). ``report`` is told, a line each, where the pull
    starts and which window it fetches. Returns counts: ``pages``,
    ``records``, ``written``, ``recordings``."""
    root = pathlib.Path(to)
    root.mkdir(parents=True, exist_ok=True)
    state_path = root / STATE
    states = json.loads(state_path.read_text()) if state_path.exists() else {}
    state = states.get(url, {})
    today = until or dt.datetime.now(dt.timezone.utc).date()
    say = report or (lambda line: None)
    if since is None and ("month" in state or "started_at" in state):
        since = dt.date.fromisoformat(state["month"] + "-01") if "month" in state else today - dt.timedelta(days=90)
        say(f"resuming where the last pull of {url} stopped")
    elif since is None:
        since = today - dt.timedelta(days=90)
        say(f"no --since and no earlier pull of {url}: starting three months back, at {since}")
    elif isinstance(since, str):
        since = dt.date.fromisoformat(since)
    verify: Any = False if insecure else ssl.create_default_context(cafile=ca) if ca else True
    run = next_run(root)
    target = Target(root, url, states, MonthWriter(root, run, tz), tz, page_size, max_pages, recordings, say)
    with httpx.Client(verify=verify, timeout=60) as http:
        if api == "portsip":
            pull_portsip(PortsipClient(http, url.rstrip("/"), user, password), target, state, since)
        else:
            pull_ucm(connect(http, url.rstrip("/"), user, password, api), target, state, since, today)
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
    report: Callable[[str], None] = lambda line: None
    counts: dict[str, int] = field(default_factory=lambda: {"pages": 0, "records": 0, "written": 0, "recordings": 0})

    def more_pages(self) -> bool:
        return self.max_pages is None or self.counts["pages"] < self.max_pages

    def write(self, frame: pl.DataFrame) -> None:
        self.counts["pages"] += 1
        self.counts["records"] += frame.height
        self.counts["written"] += self.writer.write(frame)

    def save_state(self, state: dict[str, Any]) -> None:
        """This PBX's position, written atomically after every page."""
        self.states[self.url] = state
        atomic_write(self.root / STATE, json.dumps(self.states).encode())


def pull_ucm(client: LegacyClient | NewApiClient, t: Target, state: dict[str, Any], since: dt.date, today: dt.date):
    """Month by month, page by page with ``offset``, from the saved position."""
    for month, first, last in months(since, today):
        offset = state.get("offset", 0) if state.get("month") == month else 0
        t.report(f"fetching {first[:10]} … {last[:10]} (UTC)" + (f" from record {offset}" if offset else ""))
        previous = None
        while t.more_pages():
            params = {
                "format": "json",
                "startTime": first,
                "endTime": last,
                "numRecords": t.page_size,
                "offset": offset,
            }
            page = client.cdrapi(params)
            digest = hashlib.sha256(page).hexdigest()
            if digest == previous and offset:
                break  # the PBX ignored offset: the same page again
            previous = digest
            frame = read(page, format="ucm-json", tz=t.tz)
            legs = frame.filter(frame["cdr_kind"] != "main").height
            t.write(frame)
            if t.recordings:
                t.counts["recordings"] += fetch_recordings(client, frame, t.root / RECORDINGS)
            offset += legs
            t.save_state({"month": month, "offset": offset})
            if legs < t.page_size:
                break
        if not t.more_pages():
            return


class PortsipClient:
    """PortSIP's REST API: a bearer token from ``POST /api/login``, renewed
    a minute before it expires (or on a 401)."""

    def __init__(self, http: httpx.Client, base: str, user: str, password: str) -> None:
        self.http, self.base, self.user, self.password = http, base, user, password
        self.token: str | None = None
        self.expires = 0.0

    def login(self) -> None:
        body = {"name": self.user, "password": self.password}
        answer = send(lambda: self.http.post(f"{self.base}/api/login", json=body), allow=(401, 403))
        if answer.status_code != 200:
            raise PullError(f"{self.base}: login refused (HTTP {answer.status_code})")
        data = answer.json()
        self.token = data["access_token"]
        self.expires = time.monotonic() + float(data.get("expires_in", 3600))

    def get(self, path: str, params: dict[str, Any] | None = None) -> httpx.Response:
        for _ in range(2):
            if self.token is None or time.monotonic() > self.expires - 60:
                self.login()
            response = send(
                lambda token=self.token: self.http.get(
                    f"{self.base}{path}", params=params, headers={"authorization": f"Bearer {token}"}
                ),
                allow=(401,),
            )
            if response.status_code == 401:
                self.token = None
                continue
            return response
        raise PullError(f"{self.base}: the PBX keeps refusing a fresh token")


def pull_portsip(client: PortsipClient, t: Target, state: dict[str, Any], since: dt.date) -> None:
    """CDRs by ``started_at`` from the last one pulled (inclusive: the
    dataset skips what it has), ``top``/``skip`` pages; then recordings."""
    start = state.get("started_at") or f"{since.isoformat()}T00:00:00Z"
    skip, newest = 0, start
    t.report(f"fetching calls started at or after {start}")
    while t.more_pages():
        params = {"filter": f"started_at ge '{start}'", "orderby": "started_at asc", "top": t.page_size, "skip": skip}
        page = client.get("/api/cdrs", params).content
        items = json.loads(page).get("items") or []
        if items:
            t.write(read(page, format="portsip-json", tz=t.tz))
            newest = max([newest, *(i.get("started_at") or newest for i in items)])
        else:
            t.counts["pages"] += 1
        skip += len(items)
        t.save_state({"started_at": newest})
        if len(items) < t.page_size:
            break
    if t.recordings:
        t.counts["recordings"] = fetch_portsip_recordings(client, t.root / RECORDINGS, t.page_size)


def fetch_portsip_recordings(client: PortsipClient, directory: pathlib.Path, page_size: int) -> int:
    fetched, skip = 0, 0
    while True:
        items = client.get("/api/recordings", {"top": page_size, "skip": skip}).json().get("items") or []
        for item in items:
            digest = str(item.get("digest", ""))
            name = str(item.get("file_name") or digest).rsplit("/", 1)[-1]
            if not digest or not name or name.startswith(".") or (directory / name).exists():
                continue
            blob = client.get(f"/api/blobs/{digest}")
            if blob.status_code == 200:
                directory.mkdir(parents=True, exist_ok=True)
                atomic_write(directory / name, blob.content)
                fetched += 1
        skip += len(items)
        if len(items) < page_size:
            return fetched


def connect(http: httpx.Client, base: str, user: str, password: str, api: str) -> LegacyClient | NewApiClient:
    if api == "auto":
        try:
            probe = http.post(f"{base}/api", json={"request": {"action": "challenge", "user": user}})
            api = "new" if status_of(probe) is not None else "legacy"
        except httpx.HTTPError as e:
            raise PullError(network_error(e)) from e
    if api == "new":
        return NewApiClient(http, base, user, password)
    if api == "legacy":
        return LegacyClient(http, base, user, password)
    raise PullError(f"api must be 'auto', 'legacy' or 'new', not {api!r}")


def fetch_recordings(client: LegacyClient | NewApiClient, frame, directory: pathlib.Path) -> int:
    """Downloads the recordings the records name, once each."""
    fetched = 0
    for files in frame["recordfiles"].drop_nulls().unique(maintain_order=True):
        for name in (n for n in files.split("@") if n):
            base = name.rsplit("/", 1)[-1]
            target = directory / base
            if target.exists():
                continue
            response = client.recapi({"filedir": "monitor", "filename": base})
            if response.status_code != 200 or status_of(response) is not None:
                continue
            directory.mkdir(parents=True, exist_ok=True)
            atomic_write(target, response.content)
            fetched += 1
    return fetched
