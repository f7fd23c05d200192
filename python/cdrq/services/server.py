"""`cdrq serve`: the UCM's CDR API over an archive, on HTTPS.

Two ASGI applications on one archive:

- :class:`LegacyApi` — ``GET /cdrapi?…`` and ``GET /recapi?…`` behind HTTP
  Digest authentication (MD5, ``qop=auth``; nonces expire and each ``nc``
  is accepted once), as the UCM's port 8443 serves them;
- :class:`NewApi` — the UCM63xx ``POST /api`` JSON API (port 8089):
  ``challenge`` → ``login`` with ``token = MD5(challenge + password)`` → a
  cookie carried in the request body → ``cdrapi``/``recapi`` → ``logout``,
  with the vendor's negative ``status`` codes.

Both refuse any address outside the permitted networks with 403 (no
network given: everyone is let in, as on the UCM), make failed logins cost a
growing delay and lock the peer out after several (:class:`Guard`), keep
their nonce, challenge and session stores bounded (:class:`Expiring`), and
run queries on worker threads over a cache of each query's matching rows
(:class:`Matches`), so walking ``offset`` does not filter the archive again,
and of rendered pages (:class:`Once`), so a page asked again is not rendered
again (and is answered on the event loop, :meth:`Archive.serve_page`); a
time window or an exact ``caller=``/``callee=`` list is looked up in indexes
by start and by ``src``/``dst`` (:class:`Chunk`) before the filter runs.
A dataset is served by month (:class:`Months`): months read on first use
and kept in a bounded LRU, a time window reading only the months it meets.
:func:`serve` runs them with uvicorn over TLS, proxy headers ignored unless
``trust_proxy`` names whose to believe, with a header timeout, a
whole-request timeout, a keep-alive timeout and a connection cap
(:func:`config`, :mod:`cdrq.services.http`).
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import json
import logging
import os
import re
import secrets
import tarfile
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import polars as pl

from cdrq import _core, _expr, dataset
from cdrq.query import compile_query
from cdrq.read import read
from cdrq.render import BASE, columns_of, lookup, newer_values, render_bytes, requested_format, values_of
from cdrq.services.http import Limits, protocol
from cdrq.services.recordings import NotFound, Recordings, TooLarge
from cdrq.zones import DEFAULT_TZ

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

CONTENT_TYPES = {"csv": "text/csv", "json": "application/json", "xml": "text/xml"}
# The new API's status codes.
OK, INVALID_PARAMETER, BAD_COOKIE, AUTH_FAILED, NO_FILE = 0, -1, -6, -11, -25
#: The plan's fields that choose rows (not paging, not format).
FILTER_FIELDS = tuple(
    name
    for name in dir(_core.QueryPlan)
    if not name.startswith("_") and name not in ("format", "library", "mask", "now_us", "num_records", "offset", "text")
)
access_log = logging.getLogger("cdrq.access")


def md5(text: str) -> str:
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


class Once:
    """An LRU computing each key's value once: concurrent askers of a key
    being computed wait for it. At most ``entries`` values and ``size``
    in all (``size_of`` each), the least recent dropped first (the newest
    is always kept)."""

    def __init__(self, entries: int, size: int, size_of: Callable[[Any], int] = len) -> None:
        self.entries, self.size, self.size_of = entries, size, size_of
        self.cache: OrderedDict[Any, Any] = OrderedDict()
        self.total = 0
        self.pending: dict[Any, threading.Event] = {}
        self.lock = threading.Lock()
        self.computed = 0  # values computed (for tests)

    def held(self, key: Any, recent: bool = False) -> Any:
        """``key``'s value if it is held (None if not), left where it is in
        the order unless ``recent`` (then it is the most recent)."""
        with self.lock:
            value = self.cache.get(key)
            if recent and value is not None:
                self.cache.move_to_end(key)
            return value

    def get(self, key: Any, compute: Callable[[], Any]) -> Any:
        while True:
            with self.lock:
                if key in self.cache:
                    self.cache.move_to_end(key)
                    return self.cache[key]
                event = self.pending.get(key)
                if event is None:
                    event = self.pending[key] = threading.Event()
                    break
            event.wait()
        try:
            value = compute()
            with self.lock:
                self.computed += 1
                self.cache[key] = value
                self.total += self.size_of(value)
                while len(self.cache) > 1 and (len(self.cache) > self.entries or self.total > self.size):
                    self.total -= self.size_of(self.cache.popitem(last=False)[1])
            return value
        finally:
            with self.lock:
                self.pending.pop(key, None)
            event.set()


def filter_key(plan: Any, fields: tuple[str, ...] = FILTER_FIELDS) -> tuple:
    """What chooses a plan's rows (not its paging or format)."""
    return tuple(repr(getattr(plan, name)) for name in fields)


#: What chooses a plan's rows, whatever their order.
ROW_FIELDS = tuple(name for name in FILTER_FIELDS if name != "descending")


#: The plan's number lists and the column each tests (as `_expr.filters` does).
NUMBER_LISTS = (("caller", "src"), ("callee", "dst"), ("caller_number", "src"), ("callee_number", "dst"))


class Chunk:
    """A piece of the archive (all of it, or one month of a dataset) and
    indexes of its rows, each built at first use: by start, so a query with
    ``startTime``/``endTime`` filters only the rows inside its window, found
    by binary search; by ``src`` and by ``dst``, so a query with an exact
    ``caller=``/``callee=`` list (numbers, no patterns) filters only the
    rows holding one of those numbers."""

    def __init__(self, frame: pl.DataFrame) -> None:
        self.frame = frame
        self.index_lock = threading.Lock()
        self.index: tuple[pl.Series, pl.Series, bool] | None = None
        #: column → its values' hashes, sorted, and their rows (None: not a text column).
        self.by_value: dict[str, tuple[pl.Series, pl.Series] | None] = {}

    def rows(self, plan: Any) -> pl.Series:
        """The numbers of the rows the plan matches, ascending."""
        condition = _expr.filters(plan, self.frame.schema)
        window = self.window(plan)
        numbers = self.numbered(plan)
        if numbers is not None and (window is None or len(numbers) < len(window)):
            window = numbers  # the full condition is still applied to these rows
        if window is None:
            return self.frame.select(pl.int_range(pl.len(), dtype=pl.UInt32).filter(condition)).to_series()
        if isinstance(window, range):  # the archive is in start order: a slice, no copy
            first = window.start
            part = self.frame.slice(first, len(window))
            return part.select(pl.int_range(first, first + pl.len(), dtype=pl.UInt32).filter(condition)).to_series()
        # Only the columns the filter reads are gathered.
        needed = self.frame.select(list(dict.fromkeys(condition.meta.root_names())) or [pl.first()])
        return window.filter(needed[window].select(condition).to_series())

    def window(self, plan: Any) -> range | pl.Series | None:
        """The rows whose start may lie in the plan's time window (a range
        when the archive is in start order, else the row numbers, ascending);
        None when it has no window, or one that holds most rows (a full
        filter is then as cheap)."""
        if (plan.start_time is None and plan.end_time is None) or not self.by_start():
            return None
        assert self.index is not None
        times, order, in_order = self.index
        lo = 0 if plan.start_time is None else times.search_sorted(plan.start_time, "left")
        hi = len(times) if plan.end_time is None else times.search_sorted(plan.end_time, "right")
        if hi - lo > self.frame.height // 2:
            return None
        if hi <= lo:
            return range(0)
        if in_order:
            return range(order[lo], order[hi - 1] + 1)
        return order.slice(lo, hi - lo).sort()

    def by_start(self) -> bool:
        """Builds the index once: the rows with a start, as UTC microseconds
        (what the plan's bounds are) in order, their row numbers, and whether
        those are ascending (the archive in start order)."""
        with self.index_lock:
            if self.index is None:
                if not isinstance(self.frame.schema.get("start"), pl.Datetime):
                    return False
                rows = (
                    self.frame.select(
                        pl.col("start").dt.epoch("us").alias("time"),
                        pl.int_range(pl.len(), dtype=pl.UInt32).alias("row"),
                    )
                    .drop_nulls("time")
                    .sort("time", "row")
                )
                self.index = rows["time"], rows["row"], rows["row"].is_sorted()
        return True

    def numbered(self, plan: Any) -> pl.Series | None:
        """The rows (ascending) whose ``src``/``dst`` may be one of the
        numbers of the plan's exact lists (the fewest if it has several),
        for the filter to check; None when it has none, or one that holds
        most rows. A list with a pattern (``5@``, a range, a wildcard) is
        left to the filter."""
        best: pl.Series | None = None
        for key, column in NUMBER_LISTS:
            items = getattr(plan, key)
            if not items or any(kind != "exact" for kind, _ in items):
                continue
            index = self.values(column)
            if index is None:
                continue
            hashes, rows = index
            wanted = pl.Series([value for _, value in items], dtype=pl.String).hash().unique().sort()
            starts = hashes.search_sorted(wanted, "left").to_list()
            ends = hashes.search_sorted(wanted, "right").to_list()
            pieces = [rows.slice(lo, hi - lo) for lo, hi in zip(starts, ends, strict=True) if hi > lo]
            found = pl.concat(pieces).sort() if pieces else rows.clear()
            if best is None or len(found) < len(best):
                best = found
        return None if best is None or len(best) > self.frame.height // 2 else best

    def values(self, column: str) -> tuple[pl.Series, pl.Series] | None:
        """Builds a text column's index once: the hashes of its values
        (nulls left out: they match no number), sorted, and their rows; None
        if the column is absent or not text. Hashes sort several times
        faster than text; rows of a colliding value are candidates the
        filter then drops."""
        with self.index_lock:
            if column not in self.by_value:
                index = None
                if self.frame.schema.get(column) == pl.String:
                    rows = (
                        self.frame.select(
                            pl.col(column).hash().alias("hash"),
                            pl.int_range(pl.len(), dtype=pl.UInt32).alias("row"),
                            pl.col(column).is_not_null().alias("valued"),
                        )
                        .filter("valued")
                        .sort("hash", maintain_order=True)
                    )
                    index = rows["hash"], rows["row"]
                self.by_value[column] = index
            return self.by_value[column]

    def size(self) -> int:
        """Bytes held: the frame and (once built) its indexes."""
        text = sum(self.frame[c].estimated_size() for c in ("src", "dst") if c in self.frame.columns)
        return self.frame.estimated_size() + 20 * self.frame.height + text


def main_rows(frame: pl.DataFrame | pl.LazyFrame, schema: pl.Schema) -> pl.DataFrame | pl.LazyFrame:
    """The stored main records (none where the archive has no ``cdr_kind``)."""
    return frame.filter(pl.col("cdr_kind") == "main") if "cdr_kind" in schema else frame.clear()


class Whole:
    """An archive held whole in memory: one chunk."""

    def __init__(self, frame: pl.DataFrame) -> None:
        self.whole = Chunk(frame)
        self.keys: list[Any] = [None]
        self.empty = frame.clear()
        self.height = frame.height
        newer = values_of(newer_values(frame, frame.schema))
        self.lookup = lookup(main_rows(frame, frame.schema), newer, columns_of(frame) == BASE)

    def meets(self, key: Any, plan: Any) -> bool:
        return True

    def rows(self, key: Any, plan: Any) -> pl.Series:
        return self.whole.rows(plan)

    def chunk(self, key: Any) -> Chunk:
        return self.whole


#: Months of a dataset held in memory at most, and their size (MiB), by default.
CACHE_MONTHS, CACHE_MIB = 12, 512


class Months:
    """A dataset served by month: a month's frame is read from its parts on
    first use and kept in an LRU of at most ``months`` months and ``size``
    bytes (the month in use is kept even past them). What every query needs
    is read once, when it opens: the span of each month's starts, the main
    rows of all months (a call's legs may start in a later month than its
    main row), the columns. The parts are those there at opening: records
    added to the dataset later are served after a restart."""

    def __init__(
        self,
        directory: str | os.PathLike[str],
        tz: str | None = DEFAULT_TZ,
        months: int = CACHE_MONTHS,
        size: int = CACHE_MIB << 20,
    ) -> None:
        files = dataset.part_files(directory)
        self.zone = dataset.zone_for(directory, tz)
        self.union = dataset.union_of(pl.read_parquet_schema(f) for f in files)
        self.files = dict(dataset.by_month(files))
        self.keys = list(self.files)
        schema = dataset.scan_parts(files[:1], self.zone, self.union).collect_schema()
        self.empty = pl.DataFrame(schema=schema)
        self.timed = isinstance(schema.get("start"), pl.Datetime)
        #: Each month's first and last start (UTC µs); None: none has one.
        self.spans: dict[str, tuple[int, int] | None] = {}
        mains, newer, self.height = [], {}, 0
        for key in self.keys:
            month = self.scan(key)
            start = pl.col("start").dt.epoch("us") if self.timed else pl.lit(None, pl.Int64)
            span, values, main = pl.collect_all(
                [
                    month.select(pl.len(), start.min().alias("first"), start.max().alias("last")),
                    newer_values(month, schema),
                    main_rows(month, schema),
                ]
            )
            rows, first, last = span.row(0)
            self.height += rows
            self.spans[key] = None if first is None else (first, last)
            newer = values_of(values) | newer
            mains.append(main)
        self.lookup = lookup(pl.concat(mains), newer, bool(newer))
        self.loaded = Once(months, size, size_of=Chunk.size)
        self.reading = threading.Lock()  # one month read at a time: at most one more in memory

    @property
    def loads(self) -> int:
        """Months read from their parts so far."""
        return self.loaded.computed

    def scan(self, key: str) -> pl.LazyFrame:
        return dataset.scan_parts(self.files[key], self.zone, self.union)

    def meets(self, key: str, plan: Any) -> bool:
        """Whether the month may hold rows in the plan's time window (a row
        without a start is in none)."""
        if (plan.start_time is None and plan.end_time is None) or not self.timed:
            return True
        span = self.spans[key]
        if span is None:
            return False
        first, last = span
        ends_after = plan.start_time is None or plan.start_time <= last
        return ends_after and (plan.end_time is None or first <= plan.end_time)

    def rows(self, key: str, plan: Any) -> pl.Series:
        """The numbers of the month's rows the plan matches, ascending: from
        the month held, or read for a time window (whose pages will need
        it), else from only the columns the filter reads (nothing kept)."""
        windowed = plan.start_time is not None or plan.end_time is not None
        held = self.loaded.held(key)
        if held is not None or windowed:
            return (held or self.chunk(key)).rows(plan)
        condition = _expr.filters(plan, self.empty.schema)
        with self.reading:
            return (
                self.scan(key).select(pl.int_range(pl.len(), dtype=pl.UInt32).filter(condition)).collect().to_series()
            )

    def chunk(self, key: str) -> Chunk:
        def read() -> Chunk:
            with self.reading:
                return Chunk(self.scan(key).collect())

        return self.loaded.get(key, read)


#: A query's matches: each chunk's key and its rows matched (ascending), in
#: archive order; chunks with none are left out.
Found = list[tuple[Any, pl.Series]]


class Matches:
    """An LRU of each query's matching row numbers, keyed by the query
    without its paging or order: walking ``offset`` slices them. Concurrent
    askers of the same query wait for one filter, which reads only the
    chunks (months) its time window meets, one at a time."""

    def __init__(self, source: pl.DataFrame | Whole | Months, entries: int = 64, rows: int = 50_000_000) -> None:
        self.store = Whole(source) if isinstance(source, pl.DataFrame) else source
        self.once = Once(entries, rows, size_of=lambda found: sum(len(numbers) for _, numbers in found))

    @property
    def computed(self) -> int:
        return self.once.computed

    @staticmethod
    def key(plan: Any) -> tuple:
        """What a plan's matches are kept by."""
        return filter_key(plan, ROW_FIELDS)

    def of(self, plan: Any) -> Found:
        return self.once.get(self.key(plan), lambda: self.filter(plan))

    def filter(self, plan: Any) -> Found:
        found = []
        for key in self.store.keys:
            if self.store.meets(key, plan):
                numbers = self.store.rows(key, plan)
                if len(numbers):
                    found.append((key, numbers))
        return found

    def gather(self, found: Found, lo: int, hi: int) -> pl.DataFrame:
        """The matches ``lo`` to ``hi`` (ascending), read from their chunks."""
        pieces, seen = [], 0
        for key, numbers in found:
            if seen >= hi:
                break
            if seen + len(numbers) > lo:
                first = max(lo - seen, 0)
                wanted = numbers.slice(first, min(hi - seen, len(numbers)) - first)
                pieces.append(self.store.chunk(key).frame.select(pl.all().gather(wanted)))
            seen += len(numbers)
        return pl.concat(pieces) if pieces else self.store.empty


#: Worker threads filtering and rendering pages (and reading months), by
#: default: as many as asyncio's default executor, which served them before.
#: Askers of work under way wait on the event loop, not in a thread, so
#: every thread works (a render holds the GIL about half its time: more
#: threads would only contend for it).
WORKERS = min(32, (os.cpu_count() or 1) + 4)


@dataclass
class Archive:
    """What both APIs answer from: the records, the recordings, the users."""

    #: The records, held whole (None: a dataset served by ``months``).
    frame: pl.DataFrame | None
    recordings: Recordings | None
    user: str
    password: str
    #: Networks let in; empty: everyone (as on the UCM with no list).
    permit: list[Network]
    now: Callable[[], Any] = field(default=lambda: None)
    #: Answer in this firmware's layout (``cdrq.render``), else the spec's.
    firmware: str | None = None
    matches: Matches | None = None
    #: Rendered pages (UTF-8) by query, paging and format: the same page
    #: asked again is sent, not rendered again (bytes in all, at most).
    page_bytes: int = 64 << 20
    pages: Once | None = None
    #: A dataset served by month instead of ``frame``.
    months: Months | None = None
    #: Threads that filter and render pages (:meth:`serve_page`).
    workers: int = WORKERS
    executor: ThreadPoolExecutor | None = field(default=None, repr=False, compare=False)
    #: Work under way, by event loop and key (:meth:`flight`).
    flying: dict[Any, asyncio.Future[Any]] = field(default_factory=dict, repr=False, compare=False)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.matches is None:
            source = self.months if self.months is not None else self.frame
            assert source is not None, "an archive needs a frame or months"
            self.matches = Matches(source)
        if self.pages is None:
            self.pages = Once(4096, self.page_bytes)

    @property
    def records(self) -> int:
        assert self.matches is not None
        return self.matches.store.height

    def permitted(self, scope: Scope) -> bool:
        if not self.permit:
            return True
        client = scope.get("client")
        if not client:
            return False
        try:
            address = ipaddress.ip_address(client[0])
        except ValueError:
            return False
        return any(address in network for network in self.permit)

    def answer(self, qs: str) -> tuple[str, str]:
        """The ``/cdrapi`` response text — ``cdrq.cdrapi(frame, qs)`` — and
        the format it is written in (a rejected query: the requested
        format's empty container; a rejected ``format``: CSV's)."""
        body, fmt = self.page(qs)
        return body.decode(), fmt

    def page(self, qs: str) -> tuple[bytes, str]:
        """:meth:`answer` as UTF-8, from the cache of rendered pages."""
        assert self.pages is not None
        key, fmt, make, _ = self.job(qs)
        return (make() if key is None else self.pages.get(key, make)), fmt

    def job(self, qs: str) -> tuple[Any, str, Callable[[], bytes], Any]:
        """What answering ``qs`` takes: the page's key in the cache of pages
        (None: a refused query, whose empty page is not kept), its format,
        its render, and its plan (None: refused)."""
        assert self.matches is not None
        store = self.matches.store
        try:
            plan = compile_query(qs, self.now(), library=False)
        except _core.QueryError as e:
            fmt = "csv" if e.param.lower() == "format" else requested_format(qs)
            return (
                None,
                fmt,
                lambda: render_bytes(store.empty, fmt, legs_of=store.lookup, firmware=self.firmware),
                None,
            )
        count = 1000 if plan.num_records is None else min(plan.num_records, 1000)
        offset = plan.offset or 0
        fmt = (plan.format or "csv").lower()
        return (filter_key(plan), offset, count, fmt), fmt, lambda: self.render(plan, offset, count, fmt), plan

    async def serve_page(self, qs: str) -> tuple[bytes, str]:
        """:meth:`page` for the event loop: a page held is answered at once,
        without a trip to a thread; a page not held is rendered on a worker
        thread (:attr:`workers` of them), after its query's matches, each
        computed once for all who ask meanwhile: those wait on the event
        loop, not each holding a thread, so the threads only filter and
        render, and a cached page is never queued behind them."""
        assert self.matches is not None and self.pages is not None
        key, fmt, make, plan = self.job(qs)  # the query compiled here: ≈ 10 µs
        if key is None:
            return await self.flight(None, make), fmt
        held = self.pages.held(key, recent=True)
        if held is not None:
            return held, fmt
        matches = self.matches.key(plan)
        if self.matches.once.held(matches) is None:
            await self.flight(("matches", matches), lambda: self.matches.of(plan))  # type: ignore[union-attr]
        return await self.flight(("page", key), lambda: self.pages.get(key, make)), fmt  # type: ignore[union-attr]

    async def flight(self, key: Any, compute: Callable[[], Any]) -> Any:
        """``compute()`` on a worker thread, once for all concurrent askers
        of ``key`` on this event loop (None: not shared)."""
        loop = asyncio.get_running_loop()
        if self.executor is None:
            with self.lock:
                if self.executor is None:
                    self.executor = ThreadPoolExecutor(self.workers, thread_name_prefix="cdrq-page")
        if key is None:
            return await loop.run_in_executor(self.executor, compute)
        slot = (loop, key)
        future = self.flying.get(slot)
        if future is None:
            future = self.flying[slot] = loop.run_in_executor(self.executor, compute)

            def landed(done: asyncio.Future[Any]) -> None:
                self.flying.pop(slot, None)
                if not done.cancelled():
                    done.exception()  # retrieved: every asker may have gone

            future.add_done_callback(landed)
        return await asyncio.shield(future)

    def render(self, plan: Any, offset: int, count: int, fmt: str) -> bytes:
        assert self.matches is not None
        found = self.matches.of(plan)
        total = sum(len(numbers) for _, numbers in found)
        start = min(offset, total)  # an offset past the end (even ≥ 2⁶³): an empty page
        stop = min(start + count, total)
        # A descending answer is the ascending one reversed: its page is the
        # mirror slice, reversed.
        lo, hi = (total - stop, total - start) if plan.descending else (start, stop)
        page = self.matches.gather(found, lo, hi)
        if plan.descending:
            page = page.reverse()
        return render_bytes(page, fmt, legs_of=self.matches.store.lookup, firmware=self.firmware)


class Expiring:
    """Keys issued in time order, each valid ``ttl`` seconds, at most
    ``size`` of them (the oldest dropped first): O(1) per operation."""

    def __init__(self, ttl: float, size: int) -> None:
        self.ttl, self.size = ttl, size
        self.items: OrderedDict[str, list[Any]] = OrderedDict()  # key → [issued, value]

    def add(self, key: str, value: Any = None) -> None:
        self.expire()
        self.items[key] = [time.monotonic(), value]
        while len(self.items) > self.size:
            self.items.popitem(last=False)

    def get(self, key: str) -> list[Any] | None:
        """``[issued, value]`` of a live key (``value`` may be updated)."""
        item = self.items.get(key)
        if item is not None and time.monotonic() - item[0] >= self.ttl:
            del self.items[key]
            return None
        return item

    def touch(self, key: str) -> None:
        """Restarts ``key``'s time (a session used)."""
        self.items[key][0] = time.monotonic()
        self.items.move_to_end(key)

    def pop(self, key: str) -> list[Any] | None:
        return self.items.pop(key, None)

    def expire(self) -> None:
        now = time.monotonic()
        while self.items:
            first = next(iter(self.items.values()))
            if now - first[0] < self.ttl:
                return
            self.items.popitem(last=False)

    def __len__(self) -> int:
        return len(self.items)


class Guard:
    """Failed authentications per peer: each costs a growing delay
    (``delay`` doubling up to ``max_delay`` seconds), and ``failures``
    within ``window`` seconds lock the peer out for ``lockout`` seconds —
    like the UCM, which bans an address after repeated failures. At most
    ``size`` peers are remembered (the least recent forgotten first)."""

    def __init__(
        self,
        failures: int = 5,
        window: float = 600.0,
        lockout: float = 300.0,
        delay: float = 0.5,
        max_delay: float = 4.0,
        size: int = 10_000,
    ) -> None:
        self.failures, self.window, self.lockout = failures, window, lockout
        self.delay, self.max_delay, self.size = delay, max_delay, size
        self.peers: OrderedDict[str, list[float]] = OrderedDict()  # peer → [count, first failure, locked until]
        self.lock = threading.Lock()

    def locked(self, peer: str) -> float:
        """Seconds left of ``peer``'s lockout (0: not locked out)."""
        with self.lock:
            item = self.peers.get(peer)
            return max(0.0, item[2] - time.monotonic()) if item else 0.0

    async def failed(self, peer: str) -> None:
        now = time.monotonic()
        with self.lock:
            item = self.peers.get(peer)
            if item is None or (now - item[1] >= self.window and item[2] <= now):
                item = self.peers[peer] = [0, now, 0.0]
            self.peers.move_to_end(peer)
            item[0] += 1
            if item[0] >= self.failures:
                item[2] = now + self.lockout
            while len(self.peers) > self.size:
                self.peers.popitem(last=False)
            count = int(item[0])
        await asyncio.sleep(min(self.max_delay, self.delay * 2 ** min(count - 1, 30)))

    def succeeded(self, peer: str) -> None:
        with self.lock:
            self.peers.pop(peer, None)


def peer_of(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else ""


PIECE = 1 << 16  # bytes of a response body sent at a time


async def respond(send: Send, status: int, body: bytes | str, content_type: str = "text/plain", headers=()) -> None:
    body = body.encode() if isinstance(body, str) else body
    head = [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode())]
    head.extend((k.encode(), v.encode()) for k, v in headers)
    await send({"type": "http.response.start", "status": status, "headers": head})
    # In pieces: each is encrypted as the socket drains, so a slow reader
    # holds one piece of ciphertext, not a whole page's.
    last = max(0, (len(body) - 1) // PIECE * PIECE)
    for start in range(0, last, PIECE):
        await send({"type": "http.response.body", "body": body[start : start + PIECE], "more_body": True})
    await send({"type": "http.response.body", "body": body[last:]})


async def respond_file(send: Send, name: str, content: Path | list[Path]) -> None:
    """Streams a file, or a tar of several built as it is sent, in 64 KiB
    pieces; the length is known before the first byte."""
    paths = content if isinstance(content, list) else [content]
    if len(paths) == 1 and not isinstance(content, list):
        pieces: list[tuple[bytes, Path | None, int]] = [(b"", paths[0], paths[0].stat().st_size)]
        content_type = "audio/x-wav"
    else:
        pieces = []
        for path in paths:
            info = tarfile.TarInfo(path.name)
            st = path.stat()
            info.size, info.mtime, info.mode = st.st_size, int(st.st_mtime), 0o644
            pieces.append((info.tobuf(format=tarfile.PAX_FORMAT), path, st.st_size))
            pieces.append((b"\0" * (-st.st_size % 512), None, 0))
        pieces.append((b"\0" * 1024, None, 0))
        content_type = "application/x-tar"
    size = sum(len(head) + n for head, _, n in pieces)
    headers = [
        (b"content-type", content_type.encode()),
        (b"content-length", str(size).encode()),
        (b"content-disposition", f'attachment; filename="{name}"'.encode()),
    ]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    for head, path, n in pieces:
        if head:
            await send({"type": "http.response.body", "body": head, "more_body": True})
        if path is None:
            continue
        with path.open("rb") as handle:
            while n > 0:
                piece = (await asyncio.to_thread(handle.read, min(n, 1 << 16))) or b"\0" * min(n, 1 << 16)
                n -= len(piece)  # a file that shrank meanwhile is padded: the length was promised
                await send({"type": "http.response.body", "body": piece, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


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
    """("listing", text) or ("file", (name, path or paths)); raises
    NotFound, or TooLarge for a tar past the caps."""
    if recordings is None:
        raise NotFound("no recordings root")
    unknown = set(params) - {"filedir", "filename"}
    if unknown:
        raise NotFound(", ".join(unknown))
    try:
        if not params:
            return "listing", recordings.directories()
        filedir = params.get("filedir", "monitor")
        if "filename" not in params:
            return "listing", recordings.files(filedir.split("@"))
        return "file", recordings.fetch(filedir, params["filename"].split("@"))
    except (OSError, RuntimeError) as e:  # a name too long, a symlink loop: nothing to serve
        raise NotFound(str(e)) from None


class DigestAuth:
    """RFC 7616 Digest (MD5, qop=auth) with expiring nonces and per-nonce
    counters, so a captured request cannot be replayed. At most ``size``
    live nonces (the oldest forgotten first)."""

    def __init__(self, user: str, password: str, realm: str = "UCM", ttl: float = 300.0, size: int = 10_000) -> None:
        self.user, self.realm = user, realm
        self.ha1 = md5(f"{user}:{realm}:{password}")
        self.nonces = Expiring(ttl, size)  # nonce → [issued, last nc]
        self.lock = threading.Lock()

    def challenge(self, stale: bool = False) -> str:
        nonce = secrets.token_hex(16)
        with self.lock:
            self.nonces.add(nonce, 0)
        stale_part = ", stale=true" if stale else ""
        return f'Digest realm="{self.realm}", qop="auth", algorithm=MD5, nonce="{nonce}"{stale_part}'

    def check(self, header: str | None, method: str, target: str) -> tuple[bool, bool]:
        """(accepted, stale): ``stale`` when only the nonce was too old."""
        if not header or not header.lower().startswith("digest "):
            return False, False
        fields = parse_digest(header[7:])
        if fields is None:
            return False, False
        try:
            user, nonce, uri, response = fields["username"], fields["nonce"], fields["uri"], fields["response"]
            qop, nc_text, cnonce = fields["qop"], fields["nc"], fields["cnonce"]
        except KeyError:
            return False, False
        if not NC.fullmatch(nc_text) or fields.get("algorithm", "MD5").upper() != "MD5":
            return False, False
        if user != self.user or qop != "auth" or uri != target or fields.get("realm", self.realm) != self.realm:
            return False, False
        expected = md5(f"{self.ha1}:{nonce}:{nc_text}:{cnonce}:{qop}:{md5(f'{method}:{uri}')}")
        if not secrets.compare_digest(expected.encode(), response.encode("utf-8", "replace")):
            return False, False
        nc = int(nc_text, 16)
        with self.lock:
            issued = self.nonces.get(nonce)
            if issued is None:
                return False, True
            if nc <= issued[1]:
                return False, False  # a replayed request
            issued[1] = nc
        return True, False


NC = re.compile(r"[0-9a-fA-F]{8}")
ESCAPED = re.compile(r"\\(.)")
DIGEST_FIELD = re.compile(r'\s*([A-Za-z][A-Za-z0-9_-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,"]*))\s*(?:,|$)')


def parse_digest(text: str) -> dict[str, str] | None:
    """The fields of a Digest ``Authorization`` header (after ``Digest ``),
    or ``None`` if it is malformed or names a field twice."""
    fields: dict[str, str] = {}
    position, text = 0, text.strip()
    while position < len(text):
        match = DIGEST_FIELD.match(text, position)
        if match is None or match.end() == position:
            return None
        key = match[1].lower()
        if key in fields:
            return None
        value = match[2] if match[2] is not None else match[3]
        fields[key] = ESCAPED.sub(r"\1", value) if "\\" in value else value
        position = match.end()
    return fields


def logged(app: Callable[[Scope, Receive, Send], Awaitable[None]]):
    """``app`` writing each request to the ``cdrq.access`` logger in the
    Common Log Format (``host - user [time] "request" status bytes``)."""

    async def call(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await app(scope, receive, send)
        status, sent = [0], [0]

        async def counting(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            elif message["type"] == "http.response.body":
                sent[0] += len(message.get("body", b""))
            await send(message)

        try:
            await app(scope, receive, counting)
        finally:
            if access_log.isEnabledFor(logging.INFO):
                query = scope.get("query_string", b"").decode("latin-1")
                target = quote(scope.get("path", ""), safe="/") + (f"?{query}" if query else "")
                stamp = time.strftime("%d/%b/%Y:%H:%M:%S %z")
                request = f"{scope.get('method', '-')} {target} HTTP/{scope.get('http_version', '1.1')}"
                access_log.info(
                    '%s - - [%s] "%s" %d %s', peer_of(scope) or "-", stamp, request, status[0], sent[0] or "-"
                )

    return call


class App:
    """An ASGI app of the server: lifespan answered, requests to ``handle``
    through the access log."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            return await lifespan(receive, send)
        await logged(self.handle)(scope, receive, send)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        raise NotImplementedError


class LegacyApi(App):
    """``/cdrapi`` and ``/recapi`` behind Digest authentication."""

    def __init__(self, archive: Archive, nonce_ttl: float = 300.0, guard: Guard | None = None) -> None:
        self.archive = archive
        self.auth = DigestAuth(archive.user, archive.password, ttl=nonce_ttl)
        self.guard = guard or Guard()

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self.archive.permitted(scope):
            return await respond(send, 403, "403 Forbidden: this address is not permitted\n")
        path, query = scope["path"], scope.get("query_string", b"").decode("latin-1")
        if scope["method"] != "GET" or path not in ("/cdrapi", "/recapi"):
            return await respond(send, 404, "404 Not Found\n")
        peer = peer_of(scope)
        if wait := self.guard.locked(peer):
            return await respond(send, 429, "429 Too Many Requests\n", headers=[("retry-after", str(int(wait) + 1))])
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        target = path + (f"?{query}" if query else "")
        given = headers.get("authorization")
        ok, stale = self.auth.check(given, "GET", target)
        if not ok:
            if given and not stale:
                await self.guard.failed(peer)
            challenge = self.auth.challenge(stale)
            return await respond(send, 401, "401 Unauthorized\n", headers=[("www-authenticate", challenge)])
        self.guard.succeeded(peer)
        if path == "/cdrapi":
            body, fmt = await self.archive.serve_page(query)
            return await respond(send, 200, body, CONTENT_TYPES[fmt])
        params = single_params(query)
        try:
            if params is None:
                raise NotFound(query)
            kind, result = await asyncio.to_thread(recapi, self.archive.recordings, params)
        except NotFound:
            return await respond(send, 404, "404 Not Found\n")
        except TooLarge as e:
            return await respond(send, 413, f"413 Content Too Large: {e}\n")
        if kind == "listing":
            return await respond(send, 200, result, "text/csv")
        return await respond_file(send, *result)


class NewApi(App):
    """The UCM63xx ``POST /api`` JSON API."""

    def __init__(
        self,
        archive: Archive,
        session_ttl: float = 600.0,
        challenge_ttl: float = 60.0,
        guard: Guard | None = None,
        size: int = 10_000,
    ) -> None:
        self.archive = archive
        self.challenges = Expiring(challenge_ttl, size)
        self.sessions = Expiring(session_ttl, size)  # cookie → when last used
        self.guard = guard or Guard()
        self.lock = threading.Lock()

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self.archive.permitted(scope):
            return await respond(send, 403, "403 Forbidden: this address is not permitted\n")
        if scope["method"] != "POST" or scope["path"] != "/api":
            return await respond(send, 404, "404 Not Found\n")
        try:
            request = json.loads(await read_body(receive))["request"]
            action = request["action"]
        except (ValueError, KeyError, TypeError, RecursionError):
            return await self.status(send, INVALID_PARAMETER)
        if not isinstance(request, dict) or not isinstance(action, str):
            return await self.status(send, INVALID_PARAMETER)
        peer = peer_of(scope)
        if action in ("challenge", "login"):
            if self.guard.locked(peer):
                return await self.status(send, AUTH_FAILED)
            return await (self.challenge if action == "challenge" else self.login)(send, request, peer)
        if action == "logout":
            return await self.logout(send, request)
        if action not in ("cdrapi", "recapi"):
            return await self.status(send, INVALID_PARAMETER)
        if not self.valid_cookie(request.get("cookie")):
            return await self.status(send, BAD_COOKIE)
        if any(isinstance(v, (dict, list)) for v in request.values()):
            return await self.status(send, INVALID_PARAMETER)
        params = {str(k): str(v) for k, v in request.items() if k not in ("action", "cookie")}
        if action == "cdrapi":
            qs = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in params.items())
            body, fmt = await self.archive.serve_page(qs)
            return await respond(send, 200, body, CONTENT_TYPES[fmt])
        try:
            kind, result = await asyncio.to_thread(
                recapi, self.archive.recordings, {k.lower(): v for k, v in params.items()}
            )
        except NotFound:
            return await self.status(send, NO_FILE)
        except TooLarge as e:
            return await respond(send, 413, f"413 Content Too Large: {e}\n")
        if kind == "listing":
            return await respond(send, 200, result, "text/csv")
        return await respond_file(send, *result)

    async def status(self, send: Send, status: int, response: dict[str, Any] | None = None) -> None:
        body = {"response": response or {}, "status": status}
        await respond(send, 200, json.dumps(body), "application/json")

    async def challenge(self, send: Send, request: dict[str, Any], peer: str) -> None:
        if request.get("user") != self.archive.user:
            await self.guard.failed(peer)
            return await self.status(send, AUTH_FAILED)
        challenge = secrets.token_hex(16)
        with self.lock:
            self.challenges.add(challenge)
        await self.status(send, OK, {"challenge": challenge})

    async def login(self, send: Send, request: dict[str, Any], peer: str) -> None:
        token, user = request.get("token"), request.get("user")
        with self.lock:
            # A login names no challenge: any live one it answers (each once).
            # Bounded by the store's size, and failures are delayed and capped.
            self.challenges.expire()
            match = None
            if isinstance(token, str) and user == self.archive.user:
                given = token.encode("utf-8", "replace")
                password = self.archive.password
                match = next(
                    (c for c in self.challenges.items if secrets.compare_digest(md5(c + password).encode(), given)),
                    None,
                )
            if match is not None:
                self.challenges.pop(match)
                cookie = secrets.token_hex(16)
                self.sessions.add(cookie)
        if match is None:
            await self.guard.failed(peer)
            return await self.status(send, AUTH_FAILED)
        self.guard.succeeded(peer)
        await self.status(send, OK, {"cookie": cookie})

    async def logout(self, send: Send, request: dict[str, Any]) -> None:
        with self.lock:
            gone = self.sessions.pop(str(request.get("cookie")))
        await self.status(send, OK if gone else BAD_COOKIE)

    def valid_cookie(self, cookie: Any) -> bool:
        with self.lock:
            if self.sessions.get(str(cookie)) is None:
                return False
            self.sessions.touch(str(cookie))
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
    cache_months: int = CACHE_MONTHS,
    cache_bytes: int = CACHE_MIB << 20,
    by_month: bool = True,
) -> Archive:
    """An archive (anything :func:`cdrq.read` takes, or a dataset) ready to
    serve; ``permit`` lists the networks allowed in (``"127.0.0.1/32"``;
    none: everyone). A dataset is served by month (:class:`Months`), at
    most ``cache_months`` months and ``cache_bytes`` of them in memory,
    unless ``by_month`` is false (then whole, like any other archive)."""
    networks = [ipaddress.ip_network(p, strict=False) for p in permit]
    by_month = by_month and dataset.is_dataset(source)
    return Archive(
        frame=None if by_month else read(source, tz=tz),
        months=Months(source, tz, cache_months, cache_bytes) if by_month else None,
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


def config(
    app: Any,
    *,
    cert: str,
    key: str,
    host: str,
    port: int,
    trust_proxy: Iterable[Network | str] = (),
    limits: Limits | None = None,
) -> Any:
    """A uvicorn configuration for one app: TLS; ``X-Forwarded-For`` /
    ``X-Forwarded-Proto`` believed only from peers in ``trust_proxy``
    (none: never); the ``limits``; uvicorn's own access log off (the apps
    write theirs to ``cdrq.access``)."""
    import uvicorn

    limits = limits or Limits()
    trusted = [str(network) for network in trust_proxy]
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        ssl_certfile=cert,
        ssl_keyfile=key,
        log_level="warning",
        lifespan="auto",
        access_log=False,
        proxy_headers=bool(trusted),
        forwarded_allow_ips=trusted or None,
        http=protocol(limits),
        timeout_keep_alive=limits.keep_alive,
        h11_max_incomplete_event_size=limits.head_bytes,
    )


#: Bytes each TLS connection reads at a time (a TLS record is at most 16 KiB).
TLS_READ_BUFFER = 32 * 1024


def tls_read_buffer(size: int) -> None:
    """Caps asyncio's per-connection TLS read buffer (256 KiB, allocated
    when a connection opens: 250 MB for 1000 clients whose requests are a
    few hundred bytes) at ``size``, for this process's event loops."""
    import asyncio.sslproto

    tls = getattr(asyncio.sslproto, "SSLProtocol", None)
    if isinstance(getattr(tls, "max_size", None), int):
        tls.max_size = min(tls.max_size, size)  # type: ignore[union-attr]


def servers(
    archive: Archive,
    *,
    cert: str,
    key: str,
    host: str,
    port: int,
    api_port: int | None,
    trust_proxy: Iterable[Network | str] = (),
    limits: Limits | None = None,
    guard: Guard | None = None,
) -> list[Any]:
    """uvicorn servers (TLS only) for the legacy API and, if asked, the new
    one; both share one ``guard`` of failed logins."""
    import uvicorn

    tls_read_buffer(TLS_READ_BUFFER)
    guard = guard or Guard()
    apps: list[tuple[Any, int]] = [(LegacyApi(archive, guard=guard), port)]
    if api_port:
        apps.append((NewApi(archive, guard=guard), api_port))
    return [
        uvicorn.Server(config(app, cert=cert, key=key, host=host, port=p, trust_proxy=trust_proxy, limits=limits))
        for app, p in apps
    ]


async def serve_forever(servers_: list[Any]) -> None:
    await asyncio.gather(*(s.serve() for s in servers_))
