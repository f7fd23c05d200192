"""`cdrq listen`: the UCM's CDR Real-time Output (and PortSIP's CDR webhook)
received into a dataset, durably.

The PBX connects to us — over TCP, sending records and expecting nothing
back, or with HTTP(S) POSTs — in JSON or XML, one record or many per
connection, split across reads wherever the network splits them (after an
outage it flushes up to 10 000 buffered records at once). The receiver:

1. cuts the byte stream into whole top-level units (a JSON value, or an XML
   element) with :class:`Splitter`, whatever the read boundaries;
2. appends each unit to a journal (``DATASET/_incoming/journal``) and
   fsyncs before anything else happens — from then on the record is
   acknowledged (HTTP: the 200 goes out after the fsync) and survives a
   ``kill -9``;
3. folds the journal into the month partitions every few seconds, at
   start-up (what a killed run left) and at shutdown; the dataset writer
   skips records already there, so a fold repeated after a crash, or a PBX
   (or PortSIP webhook, delivered at least once) sending a record twice,
   adds nothing.

Bytes that are neither JSON nor XML, or a unit that does not parse, are kept
verbatim under ``DATASET/_incoming/unparsed/``; nothing is dropped.
"""

from __future__ import annotations

import asyncio
import json
import os
import pathlib
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

from cdrq._core import CdrqError
from cdrq.convert import MonthWriter, next_run
from cdrq.dataset import MANIFEST
from cdrq.read import read

INCOMING = "_incoming"


class Splitter:
    """Cuts a byte stream into whole JSON values and XML elements; feed it
    bytes as they come, take the units it completes."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.garbage = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        self.buffer += data
        units = []
        while True:
            self.skip_noise()
            if not self.buffer:
                return units
            end = json_end(self.buffer) if self.buffer[0] in b"{[" else xml_end(self.buffer)
            if end is None:
                return units
            units.append(bytes(self.buffer[:end]))
            del self.buffer[:end]

    def skip_noise(self) -> None:
        """Drops whitespace, XML declarations and comments between units;
        anything else that cannot start a unit is kept aside as garbage."""
        while self.buffer:
            stripped = self.buffer.lstrip()
            del self.buffer[: len(self.buffer) - len(stripped)]
            if not self.buffer:
                return
            if self.buffer.startswith(b"<?") or self.buffer.startswith(b"<!--"):
                close = b"?>" if self.buffer.startswith(b"<?") else b"-->"
                k = self.buffer.find(close)
                if k < 0:
                    return
                del self.buffer[: k + len(close)]
                continue
            if self.buffer[0] in b"{[<":
                return
            starts = [k for k in (self.buffer.find(b"{"), self.buffer.find(b"<"), self.buffer.find(b"[")) if k >= 0]
            cut = min(starts) if starts else len(self.buffer)
            self.garbage += self.buffer[:cut]
            del self.buffer[:cut]

    def rest(self) -> bytes:
        """What could not be cut into units (at the end of a connection)."""
        rest = bytes(self.garbage + self.buffer)
        self.garbage.clear()
        self.buffer.clear()
        return rest


def json_end(buf: bytearray) -> int | None:
    """End of the JSON value at the start of ``buf``, if complete."""
    depth, in_string, escaped = 0, False, False
    for i, b in enumerate(buf):
        if in_string:
            if escaped:
                escaped = False
            elif b == 0x5C:  # backslash
                escaped = True
            elif b == 0x22:
                in_string = False
        elif b == 0x22:
            in_string = True
        elif b in b"{[":
            depth += 1
        elif b in b"}]":
            depth -= 1
            if depth == 0:
                return i + 1
    return None


def xml_end(buf: bytearray) -> int | None:
    """End of the XML element at the start of ``buf``, if complete."""
    depth, pos = 0, 0
    while True:
        start = buf.find(b"<", pos)
        if start < 0:
            return None
        if buf.startswith(b"<![CDATA[", start):
            end = buf.find(b"]]>", start)
            if end < 0:
                return None
            pos = end + 3
            continue
        if buf.startswith(b"<!--", start) or buf.startswith(b"<?", start):
            close = b"-->" if buf.startswith(b"<!--", start) else b"?>"
            end = buf.find(close, start)
            if end < 0:
                return None
            pos = end + len(close)
            continue
        end = buf.find(b">", start)
        if end < 0:
            return None
        tag = buf[start + 1 : end]
        if tag.startswith(b"/"):
            depth -= 1
        elif not tag.endswith(b"/"):
            depth += 1
        pos = end + 1
        if depth == 0:
            return pos


class Journal:
    """Units appended and fsynced before they count; folded into the
    dataset later. Each entry is ``LENGTH\\n`` then the unit's bytes."""

    def __init__(self, root: pathlib.Path) -> None:
        self.root = root
        self.directory = root / INCOMING
        self.directory.mkdir(parents=True, exist_ok=True)
        self.path = self.directory / "journal"
        self.lock = threading.Lock()
        self.repair()
        self.file = self.path.open("ab")
        self.fold_lock = threading.Lock()

    def repair(self) -> None:
        """Cuts a torn last entry (a kill mid-write, never acknowledged) off
        the journal, keeping its bytes aside, so that new entries follow
        whole ones."""
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        end = whole_length(data)
        if end < len(data):
            self.keep_unparsed(data[end:], "torn")
            with self.path.open("r+b") as f:
                f.truncate(end)
                os.fsync(f.fileno())

    def append(self, units: list[bytes]) -> None:
        if not units:
            return
        data = b"".join(str(len(u)).encode() + b"\n" + u for u in units)
        with self.lock:
            self.file.write(data)
            self.file.flush()
            os.fsync(self.file.fileno())

    def keep_unparsed(self, data: bytes, why: str) -> None:
        if not data.strip():
            return
        directory = self.directory / "unparsed"
        directory.mkdir(exist_ok=True)
        name = f"{time.strftime('%Y%m%dT%H%M%S')}-{time.monotonic_ns()}-{why}.bin"
        with open(directory / name, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())

    def fold(self, tz: str | None = "UTC") -> int:
        """Moves the journal's units into the dataset; returns records
        written. A fold a kill interrupted is finished first."""
        with self.fold_lock:
            folding = self.directory / "journal.folding"
            written = self.fold_file(folding, tz) if folding.exists() else 0
            with self.lock:
                if self.path.stat().st_size == 0:
                    return written
                self.file.close()
                os.replace(self.path, folding)
                self.file = self.path.open("ab")
            return written + self.fold_file(folding, tz)

    def fold_file(self, folding: pathlib.Path, tz: str | None) -> int:
        units = list(entries(folding.read_bytes()))
        run = next_run(self.root)
        writer = MonthWriter(self.root, run, tz)
        written = 0
        for fmt, doc in documents(units, self.keep_unparsed):
            try:
                frame, rejects = read(doc, format=fmt, tz=tz, on_error="collect")
            except CdrqError:
                self.keep_unparsed(doc, fmt)
                continue
            for raw in rejects["raw"]:
                self.keep_unparsed(raw.encode(), "reject")
            written += writer.write(frame)
        line = {"run": run, "source": "listen", "units": len(units), "written": written}
        with (self.root / MANIFEST).open("a") as f:
            f.write(json.dumps(line) + "\n")
        folding.unlink()
        return written

    def close(self) -> None:
        with self.lock:
            self.file.close()


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
        line_end = data.find(b"\n", pos)
        if line_end < 0 or not data[pos:line_end].isdigit():
            return
        start = line_end + 1
        end = start + int(data[pos:line_end])
        if end > len(data):
            return
        yield start, end
        pos = end


def documents(units: list[bytes], keep_unparsed) -> Iterator[tuple[str, bytes]]:
    """Units as documents the readers take: JSON records gathered into one
    ``{"cdr_root": [...]}`` (PortSIP events one by one), XML elements one
    by one."""
    calls: list[Any] = []
    elements: list[bytes] = []
    for unit in units:
        if unit[:4] == b"<cdr" and unit[4:5] in (b" ", b">", b"\t", b"\r", b"\n"):
            elements.append(unit)  # one call or record: gathered under one root
            continue
        if unit[:1] == b"<":
            yield "ucm-xml", unit
            continue
        try:
            value = json.loads(unit)
        except ValueError:
            keep_unparsed(unit, "json")
            continue
        if isinstance(value, dict) and ("event_type" in value or "items" in value):
            yield "portsip-json", unit
        elif isinstance(value, dict) and isinstance(value.get("cdr_root", value.get("cdr")), list):
            calls.extend(value.get("cdr_root", value.get("cdr")))
        elif isinstance(value, dict) and isinstance(value.get("cdr"), dict) and "main_cdr" not in value:
            calls.append(value["cdr"])
        elif isinstance(value, list):
            calls.extend(value)
        else:
            calls.append(value)
    if calls:
        yield "ucm-json", json.dumps({"cdr_root": calls}).encode()
    if elements:
        yield "ucm-xml", b"<cdr_root>" + b"".join(elements) + b"</cdr_root>"


class Listener:
    """TCP (or HTTP POST) receiver writing into the dataset at ``to``."""

    def __init__(self, to: str | os.PathLike[str], tz: str | None = "UTC", fold_every: float = 5.0) -> None:
        self.root = pathlib.Path(to)
        self.root.mkdir(parents=True, exist_ok=True)
        self.journal = Journal(self.root)
        self.tz, self.fold_every = tz, fold_every
        self.connections: set[Any] = set()
        self.journal.fold(tz)  # what a killed run left

    async def handle_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self.connections.add(task)
        splitter = Splitter()
        try:
            while data := await reader.read(1 << 16):
                units = splitter.feed(data)
                await asyncio.to_thread(self.journal.append, units)
        finally:
            self.journal.keep_unparsed(splitter.rest(), "tcp")
            writer.close()
            self.connections.discard(task)

    async def asgi(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            from cdrq.services.server import lifespan

            return await lifespan(receive, send)
        splitter, body = Splitter(), b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        units = splitter.feed(body)
        await asyncio.to_thread(self.journal.append, units)
        self.journal.keep_unparsed(splitter.rest(), "http")
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"OK\n"})

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
                    host=host,
                    port=port,
                    ssl_certfile=cert,
                    ssl_keyfile=key,
                    log_level="warning",
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
                # Stop accepting; let the senders connected now finish.
                tcp.close()
                if self.connections:
                    await asyncio.wait(set(self.connections), timeout=10)
        finally:
            folder.cancel()
            await asyncio.to_thread(self.journal.fold, self.tz)
            self.journal.close()
