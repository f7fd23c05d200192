"""`cdrq serve` under load: CLIENTS concurrent HTTPS clients with Digest
auth (loopback only) page through a 1 M-record archive; every page is
checked against `cdrq.cdrapi`; requests/s, p99 latency and the server's
peak RSS are recorded."""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx
import trustme

import cdrq

from .gen_cdrs import cached_archive

RECORDS = int(os.environ.get("CDRQ_BENCH_SERVE_RECORDS", "1000000"))
CLIENTS = int(os.environ.get("CDRQ_BENCH_SERVE_CLIENTS", "1000"))
PAGES = 2  # per client
QUERIES = [f"format=json&caller=6000-6099&numRecords=1000&offset={1000 * k}" for k in range(10)] + [
    f"format=csv&callee=61@&minDur=100&numRecords=500&offset={500 * k}" for k in range(10)
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def client(url: str, ctx: ssl.SSLContext, k: int, expected: dict[str, str], latencies: list[float]) -> int:
    wrong = 0
    async with httpx.AsyncClient(verify=ctx, auth=httpx.DigestAuth("cdrapi", "pw"), timeout=600) as c:
        for page in range(PAGES):
            qs = QUERIES[(k + page) % len(QUERIES)]
            start = time.perf_counter()
            r = await c.get(f"{url}/cdrapi?{qs}")
            latencies.append(time.perf_counter() - start)
            wrong += r.status_code != 200 or r.text != expected[qs]
    return wrong


def test_serve_under_load(benchmark, tmp_path):
    archive, _ = cached_archive(RECORDS, Path(__file__).parent / ".data")
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1")
    leaf.private_key_pem.write_to_path(tmp_path / "key.pem")
    leaf.cert_chain_pems[0].write_to_path(tmp_path / "cert.pem")
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    port = free_port()
    cmd = [sys.executable, "-m", "cdrq", "serve", str(archive), "--cert", str(tmp_path / "cert.pem"),
           "--key", str(tmp_path / "key.pem"), "--host", "127.0.0.1", "--port", str(port), "--api-port", "0",
           "--user", "cdrapi", "--password", "pw", "--permit", "127.0.0.1/32",
           # The clients share 2 cores: a starved client is slow to send, not an attacker.
           "--header-timeout", "600", "--keep-alive", "600"]  # fmt: skip
    server = subprocess.Popen(cmd, stderr=subprocess.DEVNULL)
    try:
        frame = cdrq.read(archive)
        expected = {qs: cdrq.cdrapi(frame, qs) for qs in QUERIES}
        del frame
        deadline = time.monotonic() + 120
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.2)
        latencies: list[float] = []

        async def everyone() -> int:
            url = f"https://127.0.0.1:{port}"
            return sum(await asyncio.gather(*(client(url, ctx, k, expected, latencies) for k in range(CLIENTS))))

        start = time.perf_counter()
        wrong = asyncio.run(everyone())
        seconds = time.perf_counter() - start
        status = Path(f"/proc/{server.pid}/status").read_text()
        peak = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM")) / 1e3
    finally:
        server.terminate()
        server.wait(30)
    latencies.sort()
    report = {
        "clients": CLIENTS,
        "requests": len(latencies),
        "requests_per_s": round(len(latencies) / seconds, 1),
        "p50_ms": round(1000 * latencies[len(latencies) // 2]),
        "p99_ms": round(1000 * latencies[int(len(latencies) * 0.99) - 1]),
        "server_peak_rss_mb": round(peak),
        "wrong_pages": wrong,
    }
    print("\nserve under load:", report)
    benchmark.extra_info.update(report)
    benchmark.pedantic(lambda: None, rounds=1)
    assert wrong == 0 and len(latencies) == CLIENTS * PAGES
