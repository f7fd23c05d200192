"""Reading Asterisk's ``Master.csv`` (issue 17): cdrq vs Polars by hand.

A generated cdr_csv file (21 fields a record, every field quoted, as
cdr/cdr_csv.c writes it with ``loguniqueid``, ``loguserfield`` and
``newcdrcolumns``) of ``CDRQ_BENCH_MB`` megabytes (default 30; the
BENCHMARKS.md numbers are at 300) is read side by side, alternating:
- ``cdrq.read(path, format="asterisk-csv")``: typed (times, integers),
  AMA flags named, ``session``/``AcctId``/``caller_name`` filled;
- ``polars.read_csv(path, has_header=False, infer_schema=False)``: what a
  user would do by hand, every column a string, nothing mapped.
Both must give the same rows.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import polars as pl

import cdrq

from .measure import ratio_table, side_by_side

MB = int(os.environ.get("CDRQ_BENCH_MB", "30"))
ROUNDS = 5


def master_csv(mb: int) -> Path:
    """A cached ``Master.csv`` of about ``mb`` megabytes."""
    path = Path(__file__).parent / ".data" / f"asterisk-master-{mb}mb.csv"
    if path.exists():
        return path
    path.parent.mkdir(exist_ok=True)
    names = ["Alice Smith", "Bob", "Doe, John", "Zoë Müller", ""]
    apps = [("Dial", "PJSIP/{dst},30,tT"), ("Queue", "support,t,,,60"), ("VoiceMail", "{dst}@default,u")]
    dispositions = ["ANSWERED", "NO ANSWER", "BUSY", "FAILED"]
    lines, size, i = [], 0, 0
    tmp = path.with_suffix(".tmp")
    with tmp.open("w") as out:
        while size < mb * 1_000_000:
            src, dst = 1000 + i % 900, 2000 + (i * 7) % 500
            name = names[i % len(names)].replace('"', '""')
            clid = f'"""{name}"" <{src}>"' if name else f'"{src}"'
            app, data = apps[i % len(apps)]
            secs = 1706400000 + i * 3
            start = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(secs))
            duration, billsec = 5 + i % 300, (i % 300) if i % 4 == 0 else 0
            answer = (
                f'"{time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(secs + duration - billsec))}"' if billsec else ""
            )
            end = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(secs + duration))
            line = (
                f'"{"sales" if i % 5 == 0 else ""}","{src}","{dst}","from-internal",{clid},"PJSIP/{src}-{i:08x}",'
                f'"PJSIP/{dst}-{i + 1:08x}","{app}","{data.format(dst=dst)}","{start}",{answer},"{end}",'
                f'"{duration}","{billsec}","{dispositions[i % 4] if not billsec else "ANSWERED"}","{1 + i % 3}",'
                f'"pbx1-{secs}.{i}","","","pbx1-{secs - i % 2 * 3}.{i - i % 2}","{i}"\n'
            )
            lines.append(line)
            size += len(line.encode())
            i += 1
            if len(lines) == 10_000:
                out.write("".join(lines))
                lines.clear()
        out.write("".join(lines))
    tmp.rename(path)
    return path


def same_rows(ours: pl.DataFrame, by_hand: pl.DataFrame) -> None:
    assert ours.height == by_hand.height
    pairs = {"src": "column_1", "dst": "column_2", "clid": "column_4", "lastdata": "column_8", "linkedid": "column_19"}
    for name, column in pairs.items():
        assert ours[name].fill_null("").equals(by_hand[column].fill_null("").alias(name)), name
    assert ours["start"].dt.strftime("%Y-%m-%d %H:%M:%S").equals(by_hand["column_9"].alias("start"))
    assert ours["billsec"].cast(pl.String).equals(by_hand["column_13"].alias("billsec"))


def test_side_by_side_master_csv():
    """Rounds alternate the contenders after one warm-up round; prints min /
    median seconds and cdrq's ratio to Polars."""
    path = master_csv(MB)
    routes = {
        'cdrq.read(format="asterisk-csv")': lambda: cdrq.read(path, format="asterisk-csv"),
        "polars.read_csv(has_header=False, infer_schema=False)": lambda: pl.read_csv(
            path, has_header=False, infer_schema=False
        ),
    }
    frames: dict[str, pl.DataFrame] = {}
    times = side_by_side(routes, ROUNDS, same=frames.__setitem__)
    ours, by_hand = frames.values()
    same_rows(ours, by_hand)
    assert ours.schema["start"] == pl.Datetime("us", "UTC") and ours.schema["duration"] == pl.Int64
    mb = path.stat().st_size / 1e6
    print(f"\n{mb:.0f} MB Master.csv, {ours.height} records, {ROUNDS} alternating rounds")
    print(ratio_table(times, mb, "polars.read_csv(has_header=False, infer_schema=False)"))
