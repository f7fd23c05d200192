"""`cdrq listen`: the UCM's CDR Real-time Output (and PortSIP's CDR webhook)
received into a dataset, durably, from senders that may be hostile.

The PBX connects to us — over TCP, sending records and expecting nothing
back, or with HTTP(S) POSTs — in JSON or XML, one record or many per
connection, split across reads wherever the network splits them (after an
outage it flushes up to 10 000 buffered records at once). The receiver:

1. cuts the byte stream into whole top-level units (a JSON value, or an XML
   element) with :class:`Splitter`: linear in the bytes, bounded in memory
   (:data:`MAX_RECORD`, :data:`MAX_DEPTH`), resynchronising after noise;
2. reads the units (:func:`judge`, a batch at a time, each unit alone only
   where the batch finds fault) and refuses those that hold no CDR;
3. appends each CDR unit to a journal (``DATASET/_incoming/journal``) and
   fsyncs (one fsync for all appends waiting) before anything else happens
   — from then on the record is acknowledged (HTTP: the 200 goes out after
   the fsync) and survives a ``kill -9``;
4. folds the journal into the month partitions every few seconds, at
   start-up (what a killed run left) and at shutdown; the dataset writer
   skips records already there, so a fold repeated after a crash, or a PBX
   (or PortSIP webhook, delivered at least once) sending a record twice,
   adds nothing. A fold that fails is retried; after :data:`FOLD_ATTEMPTS`
   tries (a crash during a fold counts) its batch is moved to
   ``DATASET/_incoming/failed/`` with the reason, and folding goes on.

Whatever is no record — noise, a unit that does not parse or holds no CDR,
one too large or too deep — is written, as it arrives, verbatim to
``DATASET/_incoming/unparsed/`` (one ``.bin`` per connection or request)
with a line per piece in ``unparsed/index.jsonl`` saying why; nothing of
it is acknowledged. ``unparsed/`` holds at most :data:`MAX_UNPARSED` bytes
(``--max-unparsed-mib``, its index included): past it a piece's bytes
are not kept, but its index line still is (``"kept": false``) while that
fits, and one warning says so — a peer sending noise cannot fill the disk.

One receiver per dataset (a lock in ``_incoming/``). A peer holds at most
:data:`MAX_PEER_CONNECTIONS` TCP connections, all peers
:data:`MAX_CONNECTIONS`; an HTTP request must bring its headers within
:data:`HEADERS_S` and its body within :data:`REQUEST_S`.
"""

from __future__ import annotations

import asyncio
import bisect
import hmac
import ipaddress
import json
import os
import pathlib
import re
import signal
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import polars as pl

from cdrq import _core, dataset
from cdrq._core import CdrqError
from cdrq.convert import MonthWriter, next_run
from cdrq.dataset import MANIFEST
from cdrq.services.http import Limits, protocol
from cdrq.zones import localise, wall_clock_gaps

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; one receiver per dataset is on the user
    fcntl = None  # type: ignore[assignment]

INCOMING = "_incoming"
#: Tries of one fold batch before it is set aside.
FOLD_ATTEMPTS = 3

# --- limits -----------------------------------------------------------------

#: The largest unit (one JSON value or XML element) accepted: a record is a
#: few hundred bytes to a few KiB; anything longer is set aside.
MAX_RECORD = 1 << 20
#: The deepest nesting of a unit (the UCM's JSON nests 4 deep).
MAX_DEPTH = 64
#: The longest XML tag.
MAX_TAG = 4096
#: Bytes one TCP connection may send that are no record before it is closed.
MAX_ASIDE = 1 << 20
#: The most bytes ``unparsed/`` keeps, all senders together (1 GiB).
MAX_UNPARSED = 1 << 30
#: TCP connections (HTTP: connections and requests) open at once, each a
#: descriptor and up to MAX_RECORD of buffer; past it new ones are closed.
MAX_CONNECTIONS = 256
#: TCP connections one address may hold open (a PBX uses one or a few), so
#: that one peer cannot take every connection; past it new ones are closed.
MAX_PEER_CONNECTIONS = 64
#: The same over HTTP, where a webhook may post many calls at once (and an
#: idle connection is closed within seconds anyway).
MAX_PEER_HTTP_CONNECTIONS = MAX_CONNECTIONS // 2
#: Seconds between two warnings of refused connections from one sender.
REFUSALS_S = 60.0
#: Seconds an HTTP request's headers may take (a PBX sends them in one packet).
HEADERS_S = 5.0
#: Seconds a whole HTTP request may take (a 32 MiB body at ~5 Mbit/s).
REQUEST_S = 60.0
#: The largest HTTP request body (a 10 000-record flush is about 6 MB).
MAX_BODY = 32 << 20
#: The most HTTP requests judged and fsynced as one batch.
MAX_BATCH = 1024
#: Seconds a unit may stay incomplete before its whole parts are salvaged.
STALL = 5.0
#: At shutdown, TCP senders are taken in until none has come for this long.
DRAIN_QUIET_S = 0.5

WS = b" \t\r\n"
#: The UTF-8 byte order mark some senders put before each document.
BOM = b"\xef\xbb\xbf"
#: One JSON token after optional whitespace: punctuation, a string, a number, a literal.
TOKEN = re.compile(
    rb'[ \t\r\n]*(?:([][{},:])|("[^"\\\x00-\x1f]*(?:\\[\s\S][^"\\\x00-\x1f]*)*")'
    rb"|(-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)|(true|false|null))"
)
STRING_REST = re.compile(rb'[^"\\\x00-\x1f]*(?:\\[\s\S][^"\\\x00-\x1f]*)*')
NUMBER_PREFIX = re.compile(rb"-?[0-9]*\.?[0-9]*(?:[eE][+-]?[0-9]*)?\Z")
START_TAG = re.compile(rb"""<([A-Za-z_:][-\w.:]*)(?:\s+[-\w.:]+\s*=\s*(?:"[^"<>]*"|'[^'<>]*'))*\s*(/?)>""")
END_TAG = re.compile(rb"</([A-Za-z_:][-\w.:]*)\s*>")
TAG_PREFIX = re.compile(
    rb"""<(?:/[A-Za-z_:][-\w.:]*\s*|[A-Za-z_:][-\w.:]*(?:\s+[-\w.:]+\s*=\s*(?:"[^"<>]*"|'[^'<>]*'))*"""
    rb"""(?:\s+(?:[-\w.:]+\s*(?:=\s*(?:"[^"<>]*|'[^'<>]*)?)?)?)?\s*/?|/)?\Z"""
)
NOISE_END = re.compile(rb"[{\[<]")

# JSON grammar states: what comes next.
VALUE, VALUE_OR_CLOSE, KEY_OR_CLOSE, KEY, COLON, COMMA_OR_CLOSE = range(6)


class Splitter:
    """Cuts a byte stream into whole JSON values and XML elements (units);
    feed it bytes as they come, take the units it completes.

    Linear in the bytes fed, whatever the read boundaries: a unit's scan
    resumes where the last read ended. It checks the grammar as it goes
    (JSON's; XML's tags, nesting and matching end tags), so noise that only
    looks like the start of a unit (a stray ``[``, ``{`` or ``<``) fails
    within a few bytes; a unit deeper than :data:`MAX_DEPTH`, longer than
    :data:`MAX_RECORD` or incomplete for :data:`STALL` seconds fails too.
    A failed unit is not lost: scanning resumes at its first nested
    object or element (so records inside a broken wrapper still come
    out), else at the byte that broke it. Everything that is no unit —
    noise, failed units — is handed out with a reason by :meth:`take_aside`
    as it arrives; whitespace, commas, UTF-8 byte order marks, XML
    declarations and comments between units are dropped. Memory: the unit
    being read, at most :data:`MAX_RECORD` plus one read."""

    def __init__(self, max_record: int = MAX_RECORD, max_depth: int = MAX_DEPTH, stall: float = STALL) -> None:
        self.max_record, self.max_depth, self.stall = max_record, max_depth, stall
        self.buffer = bytearray()
        self.aside: list[tuple[bytes, str]] = []
        self.pos = 0  # next byte to scan
        self.start: int | None = None  # the unit being read, if any
        self.since = 0.0

    # --- the stream ----------------------------------------------------------

    def feed(self, data: bytes) -> list[bytes]:
        self.buffer += data
        units = self.scan(final=False)
        return units + self.stalled()

    def stalled(self) -> list[bytes]:
        """Salvages a unit that has been incomplete too long (call when the
        connection is idle)."""
        if self.start is not None and self.stall and time.monotonic() - self.since > self.stall:
            self.salvage(self.pos, f"incomplete after {self.stall:g} s")
            return self.scan(final=False)
        return []

    def end(self) -> list[bytes]:
        """The stream ended: whole units left inside an incomplete one come
        out; the rest is set aside."""
        units = self.scan(final=True)
        while self.start is not None:
            self.salvage(len(self.buffer), "incomplete at the end of the stream")
            units += self.scan(final=True)
        if self.buffer[self.pos :].strip(WS):
            self.put_aside(bytes(self.buffer[self.pos :]), "noise")
        self.buffer.clear()
        self.pos = 0
        return units

    def take_aside(self) -> list[tuple[bytes, str]]:
        """What is no unit, with why, since the last call."""
        aside, self.aside = self.aside, []
        return aside

    def rest(self) -> bytes:
        """Everything set aside, the stream ended (for tests)."""
        units = self.end()
        assert not units, units
        return b"".join(data for data, _ in self.take_aside())

    def put_aside(self, data: bytes, why: str) -> None:
        if self.aside and self.aside[-1][1] == why:
            self.aside[-1] = (self.aside[-1][0] + data, why)
        else:
            self.aside.append((data, why))

    def scan(self, final: bool) -> list[bytes]:
        units: list[bytes] = []
        while True:
            if self.start is None:
                if not self.skip_noise(final):
                    break
                continue
            done = self.scan_json() if self.kind == "json" else self.scan_xml()
            if done is None:  # needs more bytes
                if len(self.buffer) - self.start > self.max_record:
                    self.salvage(self.pos, f"a unit over {self.max_record} bytes")
                    continue
                break
            if isinstance(done, tuple):  # broke the grammar at done[0]
                at, why = done
                self.salvage(at, why, child_ok=False)
                continue
            units.append(bytes(self.buffer[self.start : done]))
            self.start, self.pos = None, done
        self.compact()
        return units

    def compact(self) -> None:
        keep = self.pos if self.start is None else self.start
        if keep:
            del self.buffer[:keep]
            self.pos -= keep
            if self.start is not None:
                self.start -= keep
                self.child = None if self.child is None else self.child - keep
                self.wait = max(0, self.wait - keep)

    def salvage(self, at: int, why: str, child_ok: bool = True) -> None:
        """The unit at ``start`` failed at ``at``: set aside up to its first
        nested unit (scanned again as a unit of its own) where ``child_ok``
        (or that unit was whole), else up to ``at``."""
        assert self.start is not None
        child = self.child if self.child is not None and (child_ok or self.child_done) else None
        resume = child if child is not None else max(at, self.start + 1)
        self.put_aside(bytes(self.buffer[self.start : resume]), f"{self.kind}: {why}")
        self.start, self.pos = None, resume

    def skip_noise(self, final: bool) -> bool:
        """Moves past what lies between units; True when a unit starts at
        ``pos`` (now being read) or more noise was dropped."""
        buf, pos = self.buffer, self.pos
        while pos < len(buf) and buf[pos] in b" \t\r\n,":
            pos += 1
        self.pos = pos
        if pos == len(buf):
            return False
        c = buf[pos]
        if c == BOM[0]:  # a byte order mark is no noise
            if buf.startswith(BOM, pos):
                self.pos = pos + len(BOM)
                return True
            if BOM.startswith(buf[pos:]) and not final:
                return False  # the rest of it may come
        if c in b"{[":
            self.begin("json")
            return True
        if c == 0x3C:  # <
            if len(buf) - pos < 4 and not final:
                return False
            if buf.startswith(b"<?", pos) or buf.startswith(b"<!--", pos):
                close = b"?>" if buf[pos + 1] == 0x3F else b"-->"
                end, lt = buf.find(close, pos + 2), buf.find(b"<", pos + 1)
                if end >= 0 and (lt < 0 or lt > end):
                    self.pos = end + len(close)
                    return True
                if (lt < 0 or lt >= len(buf)) and end < 0 and len(buf) - pos <= MAX_TAG and not final:
                    return False  # wait for its end
                self.put_aside(bytes(buf[pos : pos + 1]), "noise")
                self.pos = pos + 1
                return True
            if pos + 1 < len(buf) and (buf[pos + 1 : pos + 2].isalpha() or buf[pos + 1] in b"_:"):
                self.begin("xml")
                return True
            if pos + 1 == len(buf) and not final:
                return False
            self.put_aside(bytes(buf[pos : pos + 1]), "noise")
            self.pos = pos + 1
            return True
        m = NOISE_END.search(buf, pos)
        end = m.start() if m else len(buf)
        self.put_aside(bytes(buf[pos:end]), "noise")
        self.pos = end
        return True

    def begin(self, kind: str) -> None:
        self.kind, self.start, self.child, self.wait = kind, self.pos, None, self.pos
        self.child_done = False
        self.stack: list[bytes] = []
        self.expect = VALUE
        self.in_string: int | None = None
        self.since = time.monotonic()

    # --- JSON ----------------------------------------------------------------

    def scan_json(self) -> int | tuple[int, str] | None:
        """The end of the unit, ``(position, why)`` where it breaks the
        grammar, or None for more bytes."""
        buf, n = self.buffer, len(self.buffer)
        if self.in_string is not None:  # resume inside a long string
            m = STRING_REST.match(buf, self.wait)
            if m.end() == n or (buf[m.end()] == 0x5C and m.end() == n - 1):
                self.wait = m.end()
                return None
            if buf[m.end()] != 0x22:
                return m.end(), "a control character inside a string"
            self.pos, self.in_string = m.end() + 1, None
            if self.expect in (KEY_OR_CLOSE, KEY):
                self.expect = COLON
            else:
                done = self.json_value_done(self.pos)
                if done is not None:
                    return done
        while True:
            pos = self.pos
            m = TOKEN.match(buf, pos)
            at = pos
            while at < n and buf[at] in WS:
                at += 1
            if m is None or (m.group(3) and m.end() == n):
                if at == n or m is not None:
                    return None
                c = buf[at]
                if c == 0x22:  # an unterminated string: resume inside it later
                    rest = STRING_REST.match(buf, at + 1)
                    if rest.end() < n and not (buf[rest.end()] == 0x5C and rest.end() == n - 1):
                        return rest.end(), "a control character inside a string"
                    if self.expect not in (VALUE, VALUE_OR_CLOSE, KEY_OR_CLOSE, KEY):
                        return at, "a string where none may be"
                    self.in_string, self.wait = at, rest.end()
                    self.pos = at
                    return None
                if NUMBER_PREFIX.match(buf, at):
                    return None
                if n - at < 5 and any(w.startswith(bytes(buf[at:n])) for w in (b"true", b"false", b"null")):
                    return None
                return at, "not JSON"
            token = m.group(1)
            self.pos = m.end()
            if token is None:  # a string, number or literal
                if self.expect in (KEY_OR_CLOSE, KEY):
                    if not m.group(2):
                        return at, "an object key that is no string"
                    self.expect = COLON
                    continue
                if self.expect not in (VALUE, VALUE_OR_CLOSE):
                    return at, "a value where none may be"
                done = self.json_value_done(m.end())
                if done is not None:
                    return done
                continue
            done = self.json_punctuation(token[0], at, m.end())
            if done is not None:
                return done

    def json_punctuation(self, c: int, at: int, end: int) -> int | tuple[int, str] | None:
        expect = self.expect
        if c in b"{[":
            if expect not in (VALUE, VALUE_OR_CLOSE):
                return at, f"{chr(c)} where no value may be"
            self.stack.append(c)
            if len(self.stack) > self.max_depth:
                return at, f"nested deeper than {self.max_depth}"
            if len(self.stack) == 2 and self.child is None:
                self.child = at
            self.expect = KEY_OR_CLOSE if c == 0x7B else VALUE_OR_CLOSE
            return None
        if c in b"}]":
            opener = 0x7B if c == 0x7D else 0x5B
            allowed = (
                expect == COMMA_OR_CLOSE
                or (expect == KEY_OR_CLOSE and c == 0x7D)
                or (expect == VALUE_OR_CLOSE and c == 0x5D)
            )
            if not allowed or not self.stack or self.stack[-1] != opener:
                return at, f"{chr(c)} out of place"
            self.stack.pop()
            return self.json_value_done(end)
        if c == 0x2C:  # ,
            if expect != COMMA_OR_CLOSE:
                return at, ", out of place"
            self.expect = KEY if self.stack[-1] == 0x7B else VALUE
            return None
        if expect != COLON:  # :
            return at, ": out of place"
        self.expect = VALUE
        return None

    def json_value_done(self, end: int) -> int | None:
        if not self.stack:
            return end
        if len(self.stack) == 1 and self.child is not None:
            self.child_done = True
        self.expect = COMMA_OR_CLOSE
        return None

    # --- XML -----------------------------------------------------------------

    def scan_xml(self) -> int | tuple[int, str] | None:
        buf, n = self.buffer, len(self.buffer)
        while True:
            lt = buf.find(b"<", self.pos)
            if lt < 0:
                self.pos = self.wait = n
                return None
            self.pos = lt
            for opener, close in ((b"<![CDATA[", b"]]>"), (b"<!--", b"-->"), (b"<?", b"?>")):
                if buf.startswith(opener, lt):
                    if opener == b"<![CDATA[" and not self.stack:
                        return lt, "CDATA outside an element"
                    end = buf.find(close, max(lt + len(opener), self.wait - len(close) + 1))
                    if end < 0:
                        self.wait = max(lt, n)
                        return None
                    self.pos = self.wait = end + len(close)
                    break
            else:
                if n - lt < 9 and (b"<![CDATA[".startswith(buf[lt:n]) or b"<!--".startswith(buf[lt:n])):
                    return None
                if buf.startswith(b"<!", lt):
                    return lt, "a DTD or declaration (not accepted)"
                gt = buf.find(b">", max(lt, self.wait))
                nxt = buf.find(b"<", lt + 1, gt if gt >= 0 else n)
                if gt < 0 or nxt >= 0:
                    if nxt >= 0 or not TAG_PREFIX.match(buf, lt):
                        return lt, "not an XML tag"
                    if n - lt > MAX_TAG:
                        return lt, f"a tag over {MAX_TAG} bytes"
                    self.wait = n
                    return None
                if buf[lt + 1] == 0x2F:  # </
                    m = END_TAG.match(buf, lt)
                    if m is None or m.end() != gt + 1:
                        return lt, "a malformed end tag"
                    if not self.stack or self.stack[-1] != m.group(1):
                        return lt, "an end tag that closes no open element"
                    self.stack.pop()
                    self.pos = self.wait = gt + 1
                    if not self.stack:
                        return gt + 1
                    if len(self.stack) == 1 and self.child is not None:
                        self.child_done = True
                    continue
                m = START_TAG.match(buf, lt)
                if m is None or m.end() != gt + 1:
                    return lt, "a malformed tag"
                self.pos = self.wait = gt + 1
                if m.group(2):  # <empty/>
                    if not self.stack:
                        return gt + 1
                    if len(self.stack) == 1 and self.child is None:
                        self.child, self.child_done = lt, True
                    continue
                self.stack.append(bytes(m.group(1)))
                if len(self.stack) > self.max_depth:
                    return lt, f"nested deeper than {self.max_depth}"
                if len(self.stack) == 2 and self.child is None:
                    self.child = lt


# --- which units are CDRs ----------------------------------------------------


class Judged:
    """What :func:`judge` found: the frames of the CDR units, the units
    refused (index → why) and the rejected parts of accepted units."""

    def __init__(self) -> None:
        self.frames: list[pl.DataFrame] = []
        #: The units of each frame, by index.
        self.owners: list[list[int]] = []
        self.refused: dict[int, str] = {}
        self.rejects: list[tuple[bytes, str]] = []

    @property
    def records(self) -> int:
        return sum(f.height for f in self.frames)


def judge(units: Sequence[bytes], tz: str | None = "UTC") -> Judged:
    """Reads ``units`` with the core's readers (collect mode): a unit is a
    CDR unit if it yields a record, else it is refused with the reader's
    reason. JSON records (bare, in a list, under ``cdr_root`` or ``cdr``)
    and ``<cdr>`` elements are read as one document per kind, a unit read
    alone only when that document finds fault with it; PortSIP events and
    other XML documents are read one by one."""
    judged = Judged()
    records: list[tuple[int, list[bytes]]] = []
    elements: list[tuple[int, list[bytes]]] = []
    for i, unit in enumerate(units):
        if unit[:1] == b"<":
            if unit[:4] == b"<cdr" and unit[4:5] in (b" ", b">", b"\t", b"\r", b"\n", b"/"):
                elements.append((i, [unit]))
            else:
                read_batch(judged, "ucm-xml", [(i, [unit])], b"", b"", b"", tz)
            continue
        try:
            value = json.loads(unit)
        except (ValueError, RecursionError) as e:
            judged.refused[i] = f"not JSON: {e}"
            continue
        if isinstance(value, dict) and ("event_type" in value or "items" in value):
            read_batch(judged, "portsip-json", [(i, [unit])], b"", b"", b"", tz)
            continue
        calls = json_calls(value)
        if not calls:
            judged.refused[i] = "JSON that holds no CDR record"
            continue
        records.append((i, [json.dumps(c).encode() for c in calls]))
    if records:
        read_batch(judged, "ucm-json", records, b'{"cdr_root":[\n', b",\n", b"\n]}", tz)
    if elements:
        read_batch(judged, "ucm-xml", elements, b"<cdr_root>\n", b"\n", b"\n</cdr_root>", tz)
    return judged


def json_calls(value: Any) -> list[dict] | None:
    """The call objects a JSON unit holds, or None if it is no CDR shape."""
    if isinstance(value, dict):
        for key in ("cdr_root", "cdr"):
            if isinstance(value.get(key), list):
                calls = value[key]
                break
        else:
            calls = [value["cdr"]] if isinstance(value.get("cdr"), dict) and "main_cdr" not in value else [value]
    elif isinstance(value, list):
        calls = value
    else:
        return None
    return calls if calls and all(isinstance(c, dict) and c for c in calls) else None


def read_batch(
    judged: Judged,
    fmt: str,
    items: list[tuple[int, list[bytes]]],
    head: bytes,
    sep: bytes,
    tail: bytes,
    tz: str | None,
) -> None:
    """Reads ``items`` (unit index, its pieces) as one document; a unit the
    reader finds fault with is read again alone (a batch that does not
    parse: halves), so one bad unit costs its batch one more read."""
    if not head and len(items) == 1:
        doc, starts = items[0][1][0], [1]
    else:
        pieces = [p for _, ps in items for p in ps]
        doc = head + sep.join(pieces) + tail
        starts, line = [], head.count(b"\n") + 1
        for p in pieces:
            starts.append(line)
            line += p.count(b"\n") + sep.count(b"\n")
    owners = [i for i, ps in items for _ in ps]
    try:
        frame, rejects = core_read(doc, fmt, tz)
    except CdrqError as e:
        if len(items) == 1:
            judged.refused[items[0][0]] = str(e)
            return
        half = len(items) // 2
        read_batch(judged, fmt, items[:half], head, sep, tail, tz)
        read_batch(judged, fmt, items[half:], head, sep, tail, tz)
        return
    if len(items) == 1:
        if frame.height:
            judged.frames.append(frame)
            judged.owners.append([items[0][0]])
            judged.rejects.extend((raw.encode(), reason) for _, _, _, reason, raw in rejects)
        else:
            reasons = "; ".join(sorted({r[3] for r in rejects})) or "no CDR record in it"
            judged.refused[items[0][0]] = reasons
        return
    faulty = {owners[max(0, bisect.bisect_right(starts, r[1]) - 1)] for r in rejects}
    if not faulty:
        judged.frames.append(frame)
        judged.owners.append([i for i, _ in items])
        return
    good = [item for item in items if item[0] not in faulty]
    if good:
        read_batch(judged, fmt, good, head, sep, tail, tz)
    for item in items:
        if item[0] in faulty:
            read_batch(judged, fmt, [item], head, sep, tail, tz)


def core_read(doc: bytes, fmt: str, tz: str | None) -> tuple[pl.DataFrame, list[tuple]]:
    """:func:`cdrq.read` of one document in collect mode, without its
    per-call thread pool (a unit is read in well under a millisecond)."""
    stream, rejects = _core.read(
        doc,
        name=None,
        format=fmt,
        threads=1 if len(doc) < (4 << 20) else None,
        on_error="collect",
        tz_label="UTC" if tz == "UTC" else None,
        encoding="utf8",
        gaps=wall_clock_gaps(tz),
        memory_map=False,
    )
    return localise(pl.DataFrame(stream), tz), rejects


# --- the journal ---------------------------------------------------------------


class Budget:
    """The bytes ``unparsed/`` may still take, its index included, shared
    by every connection (counted from what is there at start, so restarts
    do not reset it)."""

    def __init__(self, directory: pathlib.Path, limit: int) -> None:
        self.limit, self.lock, self.warned = limit, threading.Lock(), False
        self.used = sum(p.stat().st_size for p in directory.iterdir() if p.is_file()) if directory.is_dir() else 0

    def take(self, size: int) -> bool:
        with self.lock:
            if self.used + size > self.limit:
                if not self.warned:
                    self.warned = True
                    warn(f"unparsed/ holds its limit of {self.limit >> 20} MiB: later noise is indexed, not kept")
                return False
            self.used += size
            return True


class Aside:
    """Bytes that are no record, written verbatim to one file under
    ``unparsed/`` as they come, with a line per piece (offset, length, why,
    sender) in ``unparsed/index.jsonl``; past ``budget``, the line only,
    and once the lines do not fit either, nothing."""

    def __init__(self, directory: pathlib.Path, label: str, peer: str = "", budget: Budget | None = None) -> None:
        self.directory, self.label, self.peer = directory / "unparsed", label, peer
        self.budget = budget
        self.path: pathlib.Path | None = None
        self.size = 0  # bytes in the file
        self.offered = 0  # bytes of noise handed in, kept or not

    def write(self, pieces: list[tuple[bytes, str]]) -> None:
        pieces = [(data, why) for data, why in pieces if data.strip()]
        if not pieces:
            return
        if self.path is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            self.path = self.directory / f"{time.strftime('%Y%m%dT%H%M%S')}-{time.monotonic_ns()}-{self.label}.bin"
        lines = []
        with open(self.path, "ab") as f:
            for data, why in pieces:
                self.offered += len(data)
                line = {"file": self.path.name, "offset": self.size, "bytes": len(data), "why": why}
                if self.peer:
                    line["peer"] = self.peer
                # An index line costs ~100 bytes however small its piece:
                # it counts, or one-byte pieces would fill the disk.
                cost = len(json.dumps(line)) + 1
                if self.budget is None or self.budget.take(len(data) + cost):
                    f.write(data)
                    self.size += len(data)
                elif self.budget.take(cost + len(', "kept": false')):
                    line["kept"] = False
                else:
                    continue
                lines.append(line)
            f.flush()
            os.fsync(f.fileno())
        with open(self.directory / "index.jsonl", "a") as f:
            f.write("".join(json.dumps(line) + "\n" for line in lines))


class Journal:
    """Units appended and fsynced before they count; folded into the
    dataset later. Each entry is ``LENGTH\\n`` then the unit's bytes."""

    def __init__(self, root: pathlib.Path) -> None:
        self.root = root
        self.directory = root / INCOMING
        self.directory.mkdir(parents=True, exist_ok=True)
        self.path = self.directory / "journal"
        # One receiver per dataset: another's fold would rename the journal
        # this one appends to, and what it acknowledged after would be lost.
        self.owner = (self.directory / "lock").open("ab")
        if fcntl is not None:
            try:
                fcntl.flock(self.owner.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                self.owner.close()
                raise CdrqError(f"{os.fspath(root)!r}: another cdrq listen is receiving into it") from None
        self.lock = threading.Lock()
        self.sync_lock = threading.Lock()
        self.written = self.synced = 0  # appends written, appends fsynced
        self.repair()
        self.file = self.open_journal()
        self.fold_lock = threading.Lock()
        #: The dataset's columns, once a fold needs them (see `admit`).
        self.columns: set[str] | None = None

    def open_journal(self):
        """The journal, opened for appends, its directory entry durable
        (fsyncing the file alone would not keep a new file's name)."""
        file = self.path.open("ab")
        if os.name == "posix":  # elsewhere a directory cannot be opened to be fsynced
            directory = os.open(self.directory, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
        return file

    def repair(self) -> None:
        """Cuts a torn last entry (a kill mid-write, never acknowledged) off
        the journal, keeping its bytes aside, so that new entries follow
        whole ones."""
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        end = whole_length(data)
        if end < len(data):
            Aside(self.directory, "torn").write([(data[end:], "a torn journal entry (never acknowledged)")])
            with self.path.open("r+b") as f:
                f.truncate(end)
                os.fsync(f.fileno())

    def append(self, units: list[bytes]) -> None:
        """Returns once ``units`` are on disk; appends waiting at the same
        time share one fsync."""
        if not units:
            return
        data = b"".join(str(len(u)).encode() + b"\n" + u for u in units)
        with self.lock:
            self.file.write(data)
            self.file.flush()
            self.written += 1
            mine = self.written
        with self.sync_lock:
            if self.synced >= mine:
                return
            with self.lock:
                upto, fd = self.written, self.file.fileno()
            os.fsync(fd)
            self.synced = upto

    def fold(self, tz: str | None = "UTC") -> int:
        """Moves the journal's units into the dataset; returns records
        written. A fold a kill interrupted is finished first. Never raises:
        a failed fold is retried at the next call, and set aside after
        :data:`FOLD_ATTEMPTS` tries."""
        with self.fold_lock:
            folding = self.directory / "journal.folding"
            written = self.attempt(folding, tz) if folding.exists() else 0
            if folding.exists():
                return written  # still failing: new entries wait in the journal
            with self.sync_lock, self.lock:  # the order append takes them in
                if self.path.stat().st_size == 0:
                    return written
                self.file.close()
                os.replace(self.path, folding)
                self.file = self.open_journal()
                self.synced = self.written
            return written + self.attempt(folding, tz)

    def attempt(self, folding: pathlib.Path, tz: str | None) -> int:
        tries = self.directory / "journal.folding.tries"
        past = {"tries": 0, "errors": []}
        if tries.exists():
            try:
                past = json.loads(tries.read_text())
            except ValueError:  # torn by a crash while it was rewritten: that was a try
                past = {"tries": 1, "errors": ["the record of earlier tries was torn"]}
        if past["tries"] >= FOLD_ATTEMPTS:
            failed = self.directory / "failed"
            failed.mkdir(exist_ok=True)
            name = f"{time.strftime('%Y%m%dT%H%M%S')}-{time.monotonic_ns()}-journal"
            reason = {"tries": past["tries"], "errors": past["errors"]}
            (failed / f"{name}.reason.json").write_text(json.dumps(reason) + "\n")
            os.replace(folding, failed / name)
            tries.unlink()
            warn(f"a fold failed {past['tries']} times; its batch is set aside in {failed / name}")
            return 0
        past["tries"] += 1
        tries.write_text(json.dumps(past))  # a crash during the fold counts as a try
        try:
            written = self.fold_file(folding, tz)
        except Exception as e:  # any failure: retried, then set aside
            self.columns = None  # what was admitted may not be written
            past["errors"].append(f"{type(e).__name__}: {e}"[:2000])
            tries.write_text(json.dumps(past))
            warn(f"fold failed (try {past['tries']} of {FOLD_ATTEMPTS}): {type(e).__name__}: {e}")
            return 0
        tries.unlink(missing_ok=True)
        return written

    def fold_file(self, folding: pathlib.Path, tz: str | None) -> int:
        units = list(entries(folding.read_bytes()))
        judged = judge(units, tz)
        frames = self.admit(judged, units, tz)
        aside = Aside(self.directory, "fold")
        aside.write([(units[i], f"fold: {why}") for i, why in sorted(judged.refused.items())])
        aside.write([(raw, f"fold: a rejected record: {why}") for raw, why in judged.rejects])
        run = next_run(self.root)
        writer = MonthWriter(self.root, run, tz)
        written = sum(writer.write(frame) for frame in frames if frame.height)
        line = {"run": run, "source": "listen", "units": len(units), "written": written}
        with (self.root / MANIFEST).open("a") as f:
            f.write(json.dumps(line) + "\n")
        folding.unlink()
        return written

    def admit(self, judged: Judged, units: list[bytes], tz: str | None) -> list[pl.DataFrame]:
        """The frames the dataset can take. Each unit may name keys beyond
        the data model, each a column of the dataset for good: a frame that
        would take the dataset past ``MAX_COLUMNS`` is read again unit by
        unit, and a unit that alone would is refused (set aside), so that
        a sender naming new keys without end cannot make the dataset
        unreadable."""
        if self.columns is None:
            self.columns = set(dataset.union_of(pl.read_parquet_schema(f) for f in dataset.parts(self.root)))
        admitted = []
        for frame, owners in zip(judged.frames, judged.owners, strict=True):
            new = set(frame.columns) - self.columns
            if len(self.columns) + len(new) <= _core.MAX_COLUMNS:
                self.columns |= new
                admitted.append(frame)
            elif len(owners) == 1:
                judged.refused[owners[0]] = f"its columns would take the dataset past {_core.MAX_COLUMNS}"
            else:
                for i in owners:
                    alone = judge([units[i]], tz)
                    alone.owners = [[i] for _ in alone.frames]
                    admitted += self.admit(alone, units, tz)
                    for why in alone.refused.values():  # keyed 0: the unit alone
                        judged.refused[i] = why
        return admitted

    def close(self) -> None:
        with self.lock:
            self.file.close()
        self.owner.close()  # the lock goes with it


def warn(message: str) -> None:
    print(f"cdrq: listen: {message}", file=sys.stderr, flush=True)


def entries(data: bytes) -> Iterator[bytes]:
    """The whole entries of a journal; a torn last entry (the process was
    killed while writing it, before its fsync) was never acknowledged."""
    for start, end in spans(data):
        yield data[start:end]


def whole_length(data: bytes) -> int:
    """Bytes of ``data`` taken by whole entries."""
    return max((end for _, end in spans(data)), default=0)


def spans(data: bytes) -> Iterator[tuple[int, int]]:
    pos = 0
    while True:
        line_end = data.find(b"\n", pos, pos + 21)
        if line_end < 0 or not data[pos:line_end].isdigit():
            return
        start = line_end + 1
        end = start + int(data[pos:line_end])
        if end > len(data):
            return
        yield start, end
        pos = end


def splits_as_ascii(encoding: str) -> bool:
    """Whether :class:`Splitter` can cut units of ``encoding`` before they
    are decoded: UTF-8 (lossy too: its bytes past ASCII are never ASCII),
    or one byte a character, ASCII kept. A multi-byte encoding can hide a
    ``{``, ``[`` or ``\\`` in a character's second byte (Shift_JIS, GBK,
    Big5); UTF-16 writes no ASCII at all."""
    if encoding.lower() == "utf8-lossy" or _core.decode(b"\x80", encoding) == b"\x80":  # UTF-8 (left as it is)
        return True
    return all(_core.decode(bytes([b]), encoding) == bytes([b]) for b in range(128)) and all(
        "\ufffd" not in _core.decode(bytes([b]), encoding).decode() for b in range(128, 256)
    )


# --- the listener ---------------------------------------------------------------

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class Listener:
    """TCP (or HTTP POST) receiver writing into the dataset at ``to``.
    ``permit``: the networks senders may come from (None: any);
    ``token``: the bearer token HTTP senders must give (None: none);
    ``encoding``: what the PBX writes, as ``cdrq.read`` takes it (a unit
    is stored as UTF-8; with ``utf8``, one holding an invalid byte is
    refused and kept aside)."""

    def __init__(
        self,
        to: str | os.PathLike[str],
        tz: str | None = "UTC",
        fold_every: float = 5.0,
        *,
        permit: Sequence[str | Network] | None = None,
        token: str | None = None,
        max_unparsed: int = MAX_UNPARSED,
        encoding: str = "utf8",
    ) -> None:
        if not splits_as_ascii(encoding):  # an unknown one is a CdrqError too
            raise CdrqError(
                f"encoding {encoding!r}: cdrq listen takes UTF-8 or an encoding of one byte a character "
                "that keeps ASCII (latin-1, windows-1252, iso-8859-2, …): units are cut before they are decoded"
            )
        self.encoding = encoding
        self.root = pathlib.Path(to)
        self.root.mkdir(parents=True, exist_ok=True)
        self.journal = Journal(self.root)
        self.budget = Budget(self.journal.directory / "unparsed", max_unparsed)
        self.tz, self.fold_every = tz, fold_every
        self.permit = None if permit is None else [ipaddress.ip_network(p, strict=False) for p in permit]
        self.token = token
        self.connections: set[Any] = set()
        #: Open TCP connections by sender.
        self.peers: dict[str | None, int] = {}
        #: When a refusal of each sender was last said (:meth:`refuse`).
        self.refusals: dict[str | None, float] = {}
        #: When the last TCP sender was taken in (the event loop's clock).
        self.last_connection = 0.0
        self.batcher: asyncio.Task | None = None
        self.pending: list[tuple[list[bytes], Aside, list[tuple[bytes, str]], asyncio.Future]] = []
        self.wake = asyncio.Event()  # bound to a loop at its first wait
        self.journal.fold(tz)  # what a killed run left

    def refuse(self, host: str | None, why: str) -> None:
        """Says that a sender's connection was refused, at most once a
        minute per sender: a flood of connections must not flood stderr."""
        now = time.monotonic()
        if now - self.refusals.get(host, -REFUSALS_S) >= REFUSALS_S:
            if len(self.refusals) >= 1024:  # senders seen: bounded too
                self.refusals.clear()
            self.refusals[host] = now
            warn(f"refused a TCP connection from {host} ({why}; said at most once a minute per sender)")

    def permitted(self, host: str | None) -> bool:
        if self.permit is None:
            return True
        try:
            address = ipaddress.ip_address((host or "").split("%")[0])
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped
        return any(address in network for network in self.permit)

    def receive(self, units: list[bytes], aside: Aside, pieces: list[tuple[bytes, str]]) -> Judged:
        """Judges ``units``, journals the CDR units (returns once they are
        on disk) and writes the rest aside (a thread's work)."""
        return self.receive_many([(units, aside, pieces)])[0]

    def receive_many(self, batch: list[tuple[list[bytes], Aside, list[tuple[bytes, str]]]]) -> list[Judged]:
        """:meth:`receive` for the requests (or reads) of ``batch`` at once:
        their units judged together (one core read per kind, a unit read
        alone only where the read finds fault), one journal append and one
        fsync; each gets its own verdict (refused: indices into its units)."""
        units = [u for us, _, _ in batch for u in us]
        if self.encoding != "utf8":
            units = [_core.decode(u, self.encoding) for u in units]
        judged = judge(units, self.tz) if units else Judged()
        self.journal.append([u for i, u in enumerate(units) if i not in judged.refused])
        verdicts, base = [], 0
        for us, aside, pieces in batch:
            verdict = Judged()
            verdict.refused = {i - base: why for i, why in judged.refused.items() if base <= i < base + len(us)}
            base += len(us)
            aside.write(pieces + [(us[i], f"no CDR: {why}") for i, why in sorted(verdict.refused.items())])
            verdicts.append(verdict)
        return verdicts

    async def submit(self, units: list[bytes], aside: Aside, pieces: list[tuple[bytes, str]]) -> Judged:
        """:meth:`receive` through group commit (HTTP requests): what the
        requests hand in while a batch is being judged and fsynced waits,
        and goes as the next batch — one judging read and one fsync for
        all, however many senders (a read's fixed cost, ~0.6 ms, paid once
        per batch instead of once per request)."""
        loop = asyncio.get_running_loop()
        if self.batcher is None or self.batcher.done() or self.batcher.get_loop() is not loop:
            self.pending = []
            self.wake = asyncio.Event()
            self.batcher = loop.create_task(self.batching())
        done = loop.create_future()
        self.pending.append((units, aside, pieces, done))
        self.wake.set()
        return await done

    async def batching(self) -> None:
        while True:
            await self.wake.wait()
            self.wake.clear()
            batch, self.pending = self.pending[:MAX_BATCH], self.pending[MAX_BATCH:]
            if self.pending:
                self.wake.set()
            if not batch:
                continue
            try:
                verdicts = await asyncio.to_thread(self.receive_many, [b[:3] for b in batch])
            except Exception:  # one sender's unit broke the batch: each alone, so only it fails
                for units, aside, pieces, done in batch:
                    try:
                        verdict = await asyncio.to_thread(self.receive, units, aside, pieces)
                    except Exception as e:
                        if not done.done():
                            done.set_exception(e)
                    else:
                        if not done.done():
                            done.set_result(verdict)
                continue
            for (_, _, _, done), verdict in zip(batch, verdicts, strict=True):
                if not done.done():  # its sender may have gone
                    done.set_result(verdict)

    async def handle_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self.connections.add(task)
        self.last_connection = asyncio.get_running_loop().time()
        peer = writer.get_extra_info("peername")
        host = peer[0] if isinstance(peer, tuple) else None
        self.peers[host] = self.peers.get(host, 0) + 1
        try:
            if not self.permitted(host):
                self.refuse(host, "not in --permit")
                return
            if len(self.connections) > MAX_CONNECTIONS or self.peers[host] > MAX_PEER_CONNECTIONS:
                self.refuse(host, f"too many open: {self.peers[host]} from it")
                return
            splitter, aside = Splitter(), Aside(self.journal.directory, "tcp", str(host), self.budget)
            while True:
                try:
                    data = await asyncio.wait_for(reader.read(1 << 16), timeout=STALL)
                except TimeoutError:
                    units = splitter.stalled()
                else:
                    units = splitter.feed(data) if data else splitter.end()
                pieces = splitter.take_aside()
                # A read's units already share one judging read and one fsync; reads
                # of several connections are judged in parallel (the core frees the GIL).
                await asyncio.to_thread(self.receive, units, aside, pieces)
                if not data:
                    break
                if aside.offered > MAX_ASIDE:
                    warn(f"closed the connection from {host}: over {MAX_ASIDE} bytes that are no CDR")
                    break
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()
            self.connections.discard(task)
            self.peers[host] -= 1
            if not self.peers[host]:
                del self.peers[host]

    async def asgi(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            from cdrq.services.server import lifespan

            return await lifespan(receive, send)
        host = (scope.get("client") or (None,))[0]
        if not self.permitted(host):
            return await reply(send, 403, "403 Forbidden: this address is not permitted\n")
        if scope["method"] != "POST":
            return await reply(send, 405, "405 Method Not Allowed: POST the records\n", [(b"allow", b"POST")])
        headers = dict(scope["headers"])
        if self.token is not None:
            given = headers.get(b"authorization", b"")
            expected = b"Bearer " + self.token.encode()
            if not hmac.compare_digest(given, expected):
                return await reply(
                    send,
                    401,
                    "401 Unauthorized: give Authorization: Bearer TOKEN\n",
                    [(b"www-authenticate", b"Bearer")],
                )
        length = headers.get(b"content-length", b"0")
        if length.isdigit() and int(length) > MAX_BODY:
            return await reply(send, 413, f"413 Content Too Large: over {MAX_BODY} bytes\n")
        body = bytearray()
        while True:
            message = await receive()
            body += message.get("body", b"")
            if len(body) > MAX_BODY:
                return await reply(send, 413, f"413 Content Too Large: over {MAX_BODY} bytes\n")
            if not message.get("more_body"):
                break
        whole = one_value(body)
        if whole is not None:  # the usual webhook body: the Splitter would cut exactly this
            units, pieces = [whole], []
        else:
            splitter = Splitter(stall=0)
            units = splitter.feed(bytes(body)) + splitter.end()
            pieces = splitter.take_aside()
        aside = Aside(self.journal.directory, "http", str(host), self.budget)
        judged = await self.submit(units, aside, pieces)
        refused = [why for _, why in pieces if _.strip()] + list(judged.refused.values())
        if refused:
            stored = len(units) - len(judged.refused)
            text = f"400 Bad Request: {len(refused)} part(s) no CDR, kept aside (the first: {refused[0][:200]})"
            return await reply(send, 400, f"{text}; {stored} CDR unit(s) stored\n")
        if not units:
            return await reply(send, 400, "400 Bad Request: no record in the body\n")
        await reply(send, 200, "OK\n")

    async def folding(self) -> None:
        while True:
            await asyncio.sleep(self.fold_every)
            await asyncio.to_thread(self.journal.fold, self.tz)

    async def serve(self, host: str, port: int, http: bool = False, cert: str | None = None, key: str | None = None):
        import ssl

        folder = asyncio.create_task(self.folding())
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, stop.set)
            except (NotImplementedError, RuntimeError):
                pass
        try:
            if http:
                import uvicorn

                config = uvicorn.Config(
                    self.asgi,
                    http=protocol(
                        Limits(
                            header_timeout=HEADERS_S,
                            request_timeout=REQUEST_S,
                            connections=MAX_CONNECTIONS,
                            per_peer=MAX_PEER_HTTP_CONNECTIONS,
                        )
                    ),
                    host=host,
                    port=port,
                    ssl_certfile=cert,
                    ssl_keyfile=key,
                    log_level="warning",
                    access_log=False,
                    interface="asgi3",
                )
                server = uvicorn.Server(config)
                server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
                task = asyncio.create_task(server.serve())
                await stop.wait()
                server.should_exit = True
                await task
            else:
                context = None
                if cert and key:
                    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
                    context.load_cert_chain(cert, key)
                tcp = await asyncio.start_server(self.handle_tcp, host, port, ssl=context)
                await stop.wait()
                # Senders the kernel already connected may still wait in the
                # listen backlog: take them in until none has come for a
                # moment (at most a few seconds), then stop accepting and
                # let every connected sender finish.
                give_up = loop.time() + 5
                while loop.time() < give_up and loop.time() - self.last_connection < DRAIN_QUIET_S:
                    await asyncio.sleep(0.05)
                tcp.close()
                if self.connections:
                    await asyncio.wait(set(self.connections), timeout=10)
        finally:
            folder.cancel()
            if self.batcher is not None:  # the senders are answered or gone
                self.batcher.cancel()
            await asyncio.to_thread(self.journal.fold, self.tz)
            self.journal.close()


def one_value(body: bytes | bytearray) -> bytes | None:
    """``body`` without its surrounding whitespace where it is exactly one
    JSON object or array that :class:`Splitter` would cut as one unit —
    checked by the C JSON parser, not the Splitter's Python scan — else
    None (the Splitter decides). Only where the Splitter's limits cannot
    bite: at most :data:`MAX_RECORD` bytes, fewer brackets than
    :data:`MAX_DEPTH` (so never nested deeper), no NUL byte (the JSON
    parser would take it for UTF-16), no NaN or Infinity."""
    unit = bytes(body).strip(WS)
    if (
        not unit
        or unit[0] not in b"{["
        or len(unit) > MAX_RECORD
        or unit.count(b"{") + unit.count(b"[") > MAX_DEPTH
        or b"\x00" in unit
    ):
        return None
    try:
        json.loads(unit, parse_constant=no_constant)
    except (ValueError, RecursionError):
        return None
    return unit


def no_constant(name: str) -> None:
    raise ValueError(f"{name} is no JSON")


async def reply(send, status: int, text: str, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    body = text.encode()
    head = [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
        *(headers or []),
    ]
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": body})
