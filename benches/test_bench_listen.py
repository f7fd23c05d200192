"""`cdrq listen` throughput: records/s acknowledged (journaled and fsynced)
over TCP and over HTTP, loopback only. TCP: CONNECTIONS senders streaming
records back to back, timed until the journal holds them all; HTTP: CLIENTS
concurrent clients POSTing one record per request (the worst case: one
fsync-gated answer per record), timed until the last 200."""

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

import httpx

from cdrq.services.listen import entries

RECORDS = int(os.environ.get("CDRQ_BENCH_LISTEN_RECORDS", "50000"))
CONNECTIONS = 4
CLIENTS = 32


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
    proc = subprocess.Popen(cmd, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return proc
        except OSError:
            assert time.monotonic() < deadline, "listen did not start"
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


def over_http(ds: Path, records: int) -> float:
    port = free_port()
    proc = start(ds, port, "--http")
    try:

        async def client(k: int, c: httpx.AsyncClient) -> int:
            bad = 0
            for i in range(k, records, CLIENTS):
                r = await c.post(f"http://127.0.0.1:{port}/", content=record(i))
                bad += r.status_code != 200
            return bad

        async def everyone() -> int:
            async with httpx.AsyncClient(timeout=60) as c:
                return sum(await asyncio.gather(*(client(k, c) for k in range(CLIENTS))))

        started = time.perf_counter()
        bad = asyncio.run(everyone())
        rate = records / (time.perf_counter() - started)
        assert bad == 0 and journaled(ds) == records
        return rate
    finally:
        stop(proc)


def test_listen_records_per_second(benchmark, tmp_path):
    tcp = over_tcp(tmp_path / "tcp")
    http_records = min(RECORDS, 10_000)
    http = over_http(tmp_path / "http", http_records)
    report = {
        "records_tcp": RECORDS,
        "tcp_records_per_s": round(tcp),
        "records_http": http_records,
        "http_records_per_s": round(http),
    }
    print("\nlisten:", report)
    benchmark.extra_info.update(report)
    benchmark.pedantic(lambda: None, rounds=1)
