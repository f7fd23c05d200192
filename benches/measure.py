"""Measuring helpers for the benchmarks: timed reads and peak memory."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROUNDS = 3


def run(benchmark, fn, path):
    """Times ``fn(path)`` and records the file's size and throughput."""
    size_mb = path.stat().st_size / 1e6
    df = benchmark.pedantic(fn, args=(path,), rounds=ROUNDS, iterations=1, warmup_rounds=1)
    benchmark.extra_info.update(mb=round(size_mb), mb_per_s=round(size_mb / benchmark.stats["median"]))
    return df


MEASURE = """
import json, sys, polars as pl, cdrq
def status():
    pairs = (line.split(":", 1) for line in open("/proc/self/status"))
    return {k: int(v.split()[0]) for k, v in pairs if v.strip().endswith("kB")}
# VmHWM, not ru_maxrss: Linux keeps ru_maxrss across exec, so a child of a
# large benchmark process would report its parent's peak.
base = status()["VmHWM"]
path = sys.argv[2]
sys.path.insert(0, sys.argv[3])
df = eval(sys.argv[1])
now = status()
peak = now["VmHWM"]
kb = lambda key: now[key]
# estimated_size() counts string bytes only; every string also has a 16-byte view.
views = 16 * df.height * sum(dtype == pl.String for dtype in df.schema.values())
print(json.dumps({
    "peak_mb": peak / 1e3, "import_mb": base / 1e3, "frame_mb": df.estimated_size() / 1e6,
    "frame_with_views_mb": (df.estimated_size() + views) / 1e6,
    "rss_anon_mb": kb("RssAnon") / 1e3, "rss_file_mb": kb("RssFile") / 1e3,
}))
"""


def peak_memory(contenders: dict[str, tuple[str, Path]]) -> dict[str, dict[str, float]]:
    """Runs ``expression`` (with ``path`` bound) for each contender in a new
    interpreter; prints and returns peak RSS against the frame's size."""
    report = {}
    here = str(Path(__file__).parent)
    for kind, (expression, path) in contenders.items():
        out = subprocess.run(
            [sys.executable, "-c", MEASURE, expression, str(path), here], capture_output=True, check=True
        )
        r = json.loads(out.stdout)
        r["peak_over_frame"] = round((r["peak_mb"] - r["import_mb"]) / r["frame_mb"], 2)
        r["peak_over_frame_with_views"] = round((r["peak_mb"] - r["import_mb"]) / r["frame_with_views_mb"], 2)
        report[kind] = r
    columns = "peak RSS | after import | estimated_size | + views | RssAnon | RssFile"
    print(f"\nMB: {columns} | (peak-import)/est | /+views")
    for kind, r in report.items():
        print(
            f"  {kind:15} {r['peak_mb']:6.0f} {r['import_mb']:5.0f} {r['frame_mb']:6.0f} "
            f"{r['frame_with_views_mb']:6.0f} {r['rss_anon_mb']:6.0f} {r['rss_file_mb']:6.0f} "
            f"{r['peak_over_frame']:5.2f} {r['peak_over_frame_with_views']:5.2f}"
        )
    return report


def side_by_side(routes: dict, rounds: int = 5, same=None) -> dict[str, list[float]]:
    """Runs every route once per round, the order rotating each round so no
    contender always runs on a warmer (or busier) machine; one warm-up
    round first. ``same(name, result)`` is given each route's first result
    to compare (the benches assert every contender returns the same rows).
    Returns each route's seconds."""
    import time

    times: dict[str, list[float]] = {name: [] for name in routes}
    names = list(routes)
    for r in range(rounds + 1):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            t0 = time.perf_counter()
            result = routes[name]()
            if r:
                times[name].append(time.perf_counter() - t0)
            elif same is not None:
                same(name, result)
            del result
    return times


def ratio_table(times: dict[str, list[float]], mb: float, base: str) -> str:
    """A Markdown table of min / median seconds, MB/s of the median and each
    route's time ÷ ``base``'s (min / median)."""
    import statistics

    lo_base, mid_base = min(times[base]), statistics.median(times[base])
    lines = [
        f"| contender | min / median (s) | MB/s (median) | ÷ {base} (min / median) |",
        "|---|---:|---:|---:|",
    ]
    for name, t in times.items():
        lo, mid = min(t), statistics.median(t)
        lines.append(f"| {name} | {lo:.3f} / {mid:.3f} | {mb / mid:.0f} | {lo / lo_base:.1f} / {mid / mid_base:.1f} |")
    return "\n".join(lines)


def thread_table(label: str, fn, cores: int | None = None, rounds: int = 3) -> dict[int, float]:
    """Times ``fn(threads)`` for 1, 2, 4, … up to the machine's cores (min
    of ``rounds``, thread counts alternated round by round) and prints the
    speed-up and parallel efficiency (speed-up ÷ threads) of each."""
    import os
    import time

    cores = cores or os.cpu_count() or 1
    counts = sorted({1, 2, 4, 8, 16, cores} & set(range(1, cores + 1)))
    seconds: dict[int, list[float]] = {n: [] for n in counts}
    for r in range(rounds):
        for n in counts if r % 2 == 0 else counts[::-1]:
            t0 = time.perf_counter()
            fn(n)
            seconds[n].append(time.perf_counter() - t0)
    best = {n: min(s) for n, s in seconds.items()}
    print(f"\n{label} ({cores} cores; min of {rounds}):")
    print("| threads | s | speed-up | parallel efficiency |")
    print("|---:|---:|---:|---:|")
    for n, s in best.items():
        print(f"| {n} | {s:.3f} | {best[1] / s:.2f} | {best[1] / s / n:.2f} |")
    return best


def same_rows(frames: dict, columns: list[str]) -> None:
    """Asserts that every frame holds the same rows in ``columns`` (compared
    as text: cdrq types its columns, the by-hand routes leave strings)."""
    import polars as pl

    def text(frame):
        return frame.select(pl.col(c).cast(pl.String) for c in columns)

    (first_name, first), *rest = frames.items()
    for name, frame in rest:
        assert text(frame).equals(text(first)), f"{name} differs from {first_name}"
