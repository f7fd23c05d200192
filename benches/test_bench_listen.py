"""`cdrq listen` throughput: records/s acknowledged (journaled and fsynced)
over TCP and over HTTP, loopback only. TCP: CONNECTIONS senders streaming
records back to back, timed until the journal holds them all; HTTP: CLIENTS
concurrent keep-alive clients POSTing one record per request (PortSIP's
webhook; the worst case: one fsync-gated answer per record), then PER_POST
records per request (the UCM's HTTP output after an outage), timed until
the last 200. The ceiling: the same clients against a trivial ASGI app that
answers 200 at once, under the same uvicorn (what HTTP costs here before
cdrq does anything). The clients speak HTTP/1.1 over asyncio streams: httpx
costs about 3 ms a request on the client side, which would cap every
server at about 300 requests/s."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from cdrq.services.listen import entries

RECORDS = int(os.environ.get("CDRQ_BENCH_LISTEN_RECORDS", "50000"))
CONNECTIONS = 4
CLIENTS = 32
PER_POST = 10
TRIVIAL = """
import sys, uvicorn
async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        return await send({"type": "lifespan.shutdown.complete"})
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"3")]})
    await send({"type": "http.response.body", "body": b"OK\\n"})
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
"""


def record(i: int) -> bytes:
    minute = i % 1440
    return json.dumps(
        {
            "AcctId": str(i),
            "src": f"53{i % 100:02}",
            "dst": f"6{i % 7}",
            "start": f"2024-05-{1 + i % 28:02} {minute // 60:02}:{minute % 60:02}:00",
            "billsec": str(i % 90),
            "disposition": "ANSWERED",
            "lastapp": "Dial",
            "lastdata": "SIP/trunk/6001,60",
            "session": f"s-{i}",
        }
    ).encode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(ds: Path, port: int, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "cdrq", "listen", "--host", "127.0.0.1", "--port", str(port), "--to", str(ds),
           "--fold-every", "3600", "--permit", "127.0.0.1/32", *extra]  # fmt: skip
    return started(subprocess.Popen(cmd, stderr=subprocess.DEVNULL), port)


def started(proc: subprocess.Popen, port: int) -> subprocess.Popen:
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return proc
        except OSError:
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.1)


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(120)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def journaled(ds: Path) -> int:
    journal = ds / "_incoming" / "journal"
    return sum(1 for _ in entries(journal.read_bytes())) if journal.exists() else 0


def over_tcp(ds: Path) -> float:
    port = free_port()
    proc = start(ds, port)
    try:
        per = RECORDS // CONNECTIONS

        def sender(k: int) -> None:
            with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
                for i in range(k * per, (k + 1) * per):
                    s.sendall(record(i) + b"\n")

        started = time.perf_counter()
        threads = [threading.Thread(target=sender, args=(k,)) for k in range(CONNECTIONS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        while journaled(ds) < per * CONNECTIONS:
            assert time.perf_counter() - started < 300, "records not journaled"
            time.sleep(0.01)
        return per * CONNECTIONS / (time.perf_counter() - started)
    finally:
        stop(proc)


async def post(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, body: bytes) -> int:
    """One keep-alive POST; its status."""
    writer.write(b"POST / HTTP/1.1\r\nhost: bench\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))
    head = await reader.readuntil(b"\r\n\r\n")
    fields = dict(line.split(b":", 1) for line in head.lower().split(b"\r\n")[1:] if b":" in line)
    if b"content-length" in fields:
        await reader.readexactly(int(fields[b"content-length"]))
    else:
        await reader.readuntil(b"0\r\n\r\n")
    return int(head.split(b" ", 2)[1])


def posting(port: int, records: int, per: int) -> float:
    """records/s acknowledged: CLIENTS connections, ``per`` records a POST."""

    async def client(k: int) -> int:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        bad = 0
        for i in range(k * per, records, CLIENTS * per):
            bad += await post(reader, writer, b"\n".join(record(j) for j in range(i, min(i + per, records)))) != 200
        writer.close()
        return bad

    async def everyone() -> int:
        return sum(await asyncio.gather(*(client(k) for k in range(CLIENTS))))

    started = time.perf_counter()
    bad = asyncio.run(everyone())
    rate = records / (time.perf_counter() - started)
    assert bad == 0
    return rate


def over_http(ds: Path, records: int, per: int) -> float:
    port = free_port()
    proc = start(ds, port, "--http")
    try:
        rate = posting(port, records, per)
        assert journaled(ds) == records
        return rate
    finally:
        stop(proc)


def ceiling(records: int) -> float:
    port = free_port()
    proc = started(subprocess.Popen([sys.executable, "-c", TRIVIAL, str(port)], stderr=subprocess.DEVNULL), port)
    try:
        return posting(port, records, 1)
    finally:
        stop(proc)


def test_listen_records_per_second(benchmark, tmp_path):
    tcp = over_tcp(tmp_path / "tcp")
    http_records = min(RECORDS, 10_000)
    trivial = ceiling(http_records)
    http = over_http(tmp_path / "http", http_records, 1)
    batched = over_http(tmp_path / "http-batched", RECORDS, PER_POST)
    report = {
        "records_tcp": RECORDS,
        "tcp_records_per_s": round(tcp),
        "records_http": http_records,
        "http_records_per_s": round(http),
        "http_trivial_200_per_s": round(trivial),
        "records_http_batched": RECORDS,
        "records_per_post": PER_POST,
        "http_batched_records_per_s": round(batched),
    }
    print("\nlisten:", report)
    benchmark.extra_info.update(report)
    benchmark.pedantic(lambda: None, rounds=1)
