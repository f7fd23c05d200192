"""`cdrq serve` under load: CLIENTS concurrent HTTPS clients with Digest
auth (loopback only) page through a 1 M-record archive; every page is
checked against `cdrq.cdrapi`, byte for byte; requests/s, p99 latency
and the server's peak RSS are recorded. The clients run in
CDRQ_BENCH_SERVE_PROCESSES processes (default 1: one asyncio loop)."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import socket
import ssl
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import httpx
import trustme

import cdrq

from .gen_cdrs import cached_archive

RECORDS = int(os.environ.get("CDRQ_BENCH_SERVE_RECORDS", "1000000"))
CLIENTS = int(os.environ.get("CDRQ_BENCH_SERVE_CLIENTS", "1000"))
PROCESSES = int(os.environ.get("CDRQ_BENCH_SERVE_PROCESSES", "1"))
PAGES = 2  # per client
QUERIES = [f"format=json&caller=6000-6099&numRecords=1000&offset={1000 * k}" for k in range(10)] + [
    f"format=csv&callee=61@&minDur=100&numRecords=500&offset={500 * k}" for k in range(10)
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def client(
    url: str, ctx: ssl.SSLContext, k: int, expected: dict[str, bytes], latencies: list[float], queries: list[str]
) -> int:
    wrong = 0
    async with httpx.AsyncClient(verify=ctx, auth=httpx.DigestAuth("cdrapi", "pw"), timeout=600) as c:
        for page in range(PAGES):
            qs = queries[(k + page) % len(queries)]
            start = time.perf_counter()
            r = await c.get(f"{url}/cdrapi?{qs}")
            latencies.append(time.perf_counter() - start)
            wrong += r.status_code != 200 or r.content != expected[qs]
    return wrong


def clients(
    url: str, ca_file: str, ks: range, expected: dict[str, bytes], queries: list[str] = QUERIES
) -> tuple[int, list[float], float, float]:
    """Clients ``ks`` at once, each asking ``PAGES`` of ``queries``:
    (wrong pages, latencies, start, end)."""
    ctx = ssl.create_default_context(cafile=ca_file)
    latencies: list[float] = []

    async def everyone() -> int:
        return sum(await asyncio.gather(*(client(url, ctx, k, expected, latencies, queries) for k in ks)))

    start = time.perf_counter()  # CLOCK_MONOTONIC: comparable across processes
    wrong = asyncio.run(everyone())
    return wrong, latencies, start, time.perf_counter()


def wait_for(port: int, seconds: float = 120) -> None:
    """Until a server listens on ``port``."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.2)


def peak_mb(pid: int) -> float:
    """A process's peak RSS so far (VmHWM), MB."""
    status = Path(f"/proc/{pid}/status").read_text()
    return next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM")) / 1e3


def test_serve_under_load(benchmark, tmp_path):
    archive, _ = cached_archive(RECORDS, Path(__file__).parent / ".data")
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1")
    leaf.private_key_pem.write_to_path(tmp_path / "key.pem")
    leaf.cert_chain_pems[0].write_to_path(tmp_path / "cert.pem")
    port = free_port()
    cmd = [sys.executable, "-m", "cdrq", "serve", str(archive), "--cert", str(tmp_path / "cert.pem"),
           "--key", str(tmp_path / "key.pem"), "--host", "127.0.0.1", "--port", str(port), "--api-port", "0",
           "--user", "cdrapi", "--password", "pw", "--permit", "127.0.0.1/32",
           # The clients share 2 cores: a starved client is slow to send, not an attacker.
           "--header-timeout", "600", "--keep-alive", "600"]  # fmt: skip
    server = subprocess.Popen(cmd, stderr=subprocess.DEVNULL)
    try:
        frame = cdrq.read(archive)
        expected = {qs: cdrq.cdrapi(frame, qs).encode() for qs in QUERIES}
        del frame
        wait_for(port)
        url, ca_file = f"https://127.0.0.1:{port}", str(tmp_path / "ca.pem")
        ca.cert_pem.write_to_path(ca_file)
        shares = [range(j, CLIENTS, PROCESSES) for j in range(PROCESSES)]
        if PROCESSES == 1:
            results = [clients(url, ca_file, shares[0], expected)]
        else:
            with ProcessPoolExecutor(PROCESSES, mp_context=multiprocessing.get_context("spawn")) as pool:
                jobs = [pool.submit(clients, url, ca_file, share, expected) for share in shares]
                results = [job.result() for job in jobs]
        wrong = sum(r[0] for r in results)
        latencies = [t for r in results for t in r[1]]
        seconds = max(r[3] for r in results) - min(r[2] for r in results)
        peak = peak_mb(server.pid)
    finally:
        server.terminate()
        server.wait(30)
    latencies.sort()
    report = {
        "clients": CLIENTS,
        "client_processes": PROCESSES,
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
