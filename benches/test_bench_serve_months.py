"""`cdrq serve` over a dataset, by month against whole (issue 16): a
dataset of RECORDS records over 8 months (written by `cdrq.convert`)
served by `cdrq serve` in its own process, the month cache small
(``--cache-months 2``) and at its default, against the same server holding
the whole dataset in one frame (the previous design). CLIENTS concurrent
HTTPS clients with Digest auth each ask 2 pages of a mix of queries with a
day's window (one month read) and without (every month filtered once);
every page is compared with `cdrq.cdrapi` over the whole dataset, byte for
byte. Contenders alternate, ROUNDS rounds each, a fresh server every run:
requests/s, p99, the server's peak RSS and its start-up time, min and
median."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import trustme

import cdrq

from .gen_cdrs import records, ucm_lines
from .test_bench_serve import clients, free_port, peak_mb, wait_for

RECORDS = int(os.environ.get("CDRQ_BENCH_SERVE_MONTHS_RECORDS", "1000000"))
CLIENTS = int(os.environ.get("CDRQ_BENCH_SERVE_MONTHS_CLIENTS", "200"))
ROUNDS = int(os.environ.get("CDRQ_BENCH_SERVE_MONTHS_ROUNDS", "2"))
SPAN = 212 * 86400  # seconds: from 2023-11-14 into June 2024, 8 months
QUERIES = (
    [f"format=json&caller=6000-6099&numRecords=1000&offset={1000 * k}" for k in range(5)]
    + [f"format=csv&callee=61@&minDur=100&numRecords=500&offset={500 * k}" for k in range(5)]
    + [
        f"format=json&startTime=2024-0{m}-10T00:00:00Z&endTime=2024-0{m}-11T00:00:00Z&numRecords=1000&offset={o}"
        for m in range(1, 6)
        for o in (0, 1000, 2000)
    ]
    + [f"format=xml&startTime=2024-02-29T12:00:00Z&endTime=2024-03-01T12:00:00Z&numRecords=500&offset={o}"
       for o in (0, 2000)]
)  # fmt: skip
#: The server: the command line a user runs, the whole contender with a
#: dataset read whole (``open_archive(..., by_month=False)``).
SERVE = """
import sys
from cdrq.services import server
if sys.argv[1] == "whole":
    by_month = server.open_archive
    server.open_archive = lambda *a, **k: by_month(*a, **k, by_month=False)
from cdrq.cli import main
sys.exit(main(sys.argv[2:]))
"""
#: Freed pages back to the system at once (Polars' jemalloc keeps them ~10 s).
PROMPT_FREE = {"_RJEM_MALLOC_CONF": "dirty_decay_ms:0,muzzy_decay_ms:0"}
CONTENDERS = {
    "whole (one frame)": ("whole", [], {}),
    "by month, --cache-months 2": ("months", ["--cache-months", "2"], {}),
    "by month, --cache-months 2, jemalloc decay 0": ("months", ["--cache-months", "2"], PROMPT_FREE),
    "by month, defaults (12 months, 512 MiB)": ("months", [], {}),
}


def cached_dataset(n: int, directory: Path) -> Path:
    """``n`` records a record every SPAN/n seconds, converted once into a
    dataset (UTC)."""
    root = directory / f"months-{n}"
    done = root / "complete"
    if done.exists():
        return root
    step = max(3, SPAN // n)
    shift = pl.duration(seconds=pl.int_range(pl.len(), dtype=pl.Int64) * (step - 3))  # records() steps 3 s

    def moved(column: str) -> pl.Expr:
        text = pl.col(column)
        later = (text.str.strptime(pl.Datetime("us"), "%Y-%m-%d %H:%M:%S", strict=False) + shift).dt.strftime(
            "%Y-%m-%d %H:%M:%S"
        )
        return pl.when(text == "").then(text).otherwise(later).alias(column)

    frame = records(n).with_columns(moved("start"), moved("answer"), moved("end"))
    source = directory / f"months-{n}.csv"
    source.write_text("\n".join(ucm_lines(frame)) + "\n", encoding="utf-8")
    cdrq.convert(source, root, tz="UTC")
    source.unlink()
    done.touch()
    return root


def run_server(dataset: Path, contender: tuple, cert: Path, key: Path, ca_file: str, expected) -> dict:
    kind, options, env = contender
    port = free_port()
    cmd = [sys.executable, "-c", SERVE, kind, "serve", str(dataset), "--cert", str(cert), "--key", str(key),
           "--host", "127.0.0.1", "--port", str(port), "--api-port", "0", "--user", "cdrapi", "--password", "pw",
           "--permit", "127.0.0.1/32", "--header-timeout", "600", "--keep-alive", "600", *options]  # fmt: skip
    began = time.perf_counter()
    log = cert.with_name(f"serve-{port}.log")
    with log.open("w") as stderr:
        server = subprocess.Popen(cmd, stderr=stderr, env={**os.environ, **env})
    try:
        wait_for(port, 300)
        while "serving" not in log.read_text():  # printed once the archive is open
            assert server.poll() is None, log.read_text()
            time.sleep(0.05)
        started = time.perf_counter() - began
        wrong, latencies, start, end = clients(f"https://127.0.0.1:{port}", ca_file, range(CLIENTS), expected, QUERIES)
        peak = peak_mb(server.pid)
    finally:
        server.terminate()
        server.wait(30)
    latencies.sort()
    return {
        "wrong": wrong,
        "requests": len(latencies),
        "requests_per_s": len(latencies) / (end - start),
        "p99_s": latencies[int(len(latencies) * 0.99) - 1],
        "peak_mb": peak,
        "start_s": started,
    }


def test_serve_a_dataset_by_month_against_whole(benchmark, tmp_path):
    dataset = cached_dataset(RECORDS, Path(__file__).parent / ".data")
    whole = cdrq.read(dataset)
    months = sorted({p.parent.name + p.parent.parent.name for p in dataset.glob("year=*/month=*/*.parquet")})
    expected = {qs: cdrq.cdrapi(whole, qs).encode() for qs in QUERIES}
    frame_mb = whole.estimated_size() / 1e6
    del whole
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1")
    cert, key, ca_file = tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "ca.pem"
    leaf.private_key_pem.write_to_path(key)
    leaf.cert_chain_pems[0].write_to_path(cert)
    ca.cert_pem.write_to_path(ca_file)
    runs: dict[str, list[dict]] = {name: [] for name in CONTENDERS}
    for _ in range(ROUNDS):
        for name, contender in CONTENDERS.items():  # alternating: one of each per round
            runs[name].append(run_server(dataset, contender, cert, key, str(ca_file), expected))
    print(f"\n{RECORDS} records, {len(months)} months, frame {frame_mb:.0f} MB (estimated_size), {CLIENTS} clients")
    print("contender | requests/s min/median | p99 s min/median | peak RSS MB min/median | start s | wrong")
    report = {}
    for name, results in runs.items():

        def spread(key: str, digits: int = 1) -> str:
            values = [r[key] for r in results]  # noqa: B023
            return f"{min(values):.{digits}f} / {statistics.median(values):.{digits}f}"

        wrong = sum(r["wrong"] for r in results)
        line = [spread("requests_per_s"), spread("p99_s", 2), spread("peak_mb", 0), spread("start_s"), str(wrong)]
        print(name, "|", " | ".join(line))
        report[name] = line
    benchmark.extra_info.update(records=RECORDS, months=len(months), clients=CLIENTS, rounds=ROUNDS, runs=report)
    benchmark.pedantic(lambda: None, rounds=1)
    assert len(months) >= 6
    assert all(r["wrong"] == 0 and r["requests"] == CLIENTS * 2 for results in runs.values() for r in results)
