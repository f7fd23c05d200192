"""Reading the `cdr` table of a CDR database: cdrq vs Polars by hand.

A SQLite file in the layout of Asterisk's own CDR schema
(contrib/ast-db-manage: `start`/`answer`/`end`, INTEGER `duration`,
`billsec`, `sequence`) of ``CDRQ_BENCH_DB_RECORDS`` rows (default 500 k),
read side by side, the order rotating each round:
- ``cdrq.read_database(connection)``: the data-model frame, typed;
- ``polars.read_database("SELECT * FROM cdr", connection)``: what Polars
  makes of the rows (times stay strings);
- the same plus the typing a user writes by hand (times parsed, counts
  cast).
Every contender's rows are checked alike (count, and the key columns'
values) before the timing rounds.
"""

from __future__ import annotations

import os
import random
import sqlite3
from datetime import datetime, timedelta
from pathlib import Path

import polars as pl

import cdrq

from .measure import ratio_table, side_by_side

RECORDS = int(os.environ.get("CDRQ_BENCH_DB_RECORDS", "500000"))

COLUMNS = [
    "accountcode", "src", "dst", "dcontext", "clid", "channel", "dstchannel", "lastapp", "lastdata",
    "start", "answer", "end", "duration", "billsec", "disposition", "amaflags", "userfield", "uniqueid",
    "linkedid", "peeraccount", "sequence",
]  # fmt: skip
INTEGERS = ("duration", "billsec", "sequence")
TIMES = ("start", "answer", "end")
ASTERISK_TIME = "%Y-%m-%d %H:%M:%S"


def rows(n: int):
    rng = random.Random(17)
    t0 = datetime(2024, 1, 1)
    for i in range(n):
        start = t0 + timedelta(seconds=i * 7 + rng.randrange(5))
        ring, talk = rng.randrange(1, 30), rng.randrange(0, 600)
        answered = talk > 60
        src, dst = str(rng.randrange(1000, 1100)), str(rng.randrange(2000, 2100))
        uniqueid = f"pbx1-{1704067200 + i}.{i}"
        yield (
            "sales" if i % 3 == 0 else "",
            src,
            dst,
            "from-internal",
            f'"User {src}" <{src}>',
            f"PJSIP/{src}-{i:08x}",
            f"PJSIP/{dst}-{i + 1:08x}" if answered else "",
            "Dial",
            f"PJSIP/{dst},30,tT",
            start.strftime(ASTERISK_TIME),
            (start + timedelta(seconds=ring)).strftime(ASTERISK_TIME) if answered else None,
            (start + timedelta(seconds=ring + talk)).strftime(ASTERISK_TIME),
            ring + talk,
            talk if answered else 0,
            "ANSWERED" if answered else "NO ANSWER",
            "DOCUMENTATION",
            "",
            uniqueid,
            uniqueid if i % 2 == 0 else f"pbx1-{1704067200 + i - 1}.{i - 1}",
            "",
            i,
        )


def cached_table(n: int) -> Path:
    path = Path(__file__).parent / ".data" / f"cdr-{n}.db"
    if path.exists():
        return path
    path.parent.mkdir(exist_ok=True)
    partial = path.with_suffix(".partial")
    partial.unlink(missing_ok=True)
    with sqlite3.connect(partial) as con:
        types = {
            name: "INTEGER" if name in INTEGERS else "DATETIME" if name in TIMES else "VARCHAR(80)" for name in COLUMNS
        }
        con.execute(f"CREATE TABLE cdr ({', '.join(f'{chr(34)}{c}{chr(34)} {types[c]}' for c in COLUMNS)})")
        con.executemany(f"INSERT INTO cdr VALUES ({', '.join('?' * len(COLUMNS))})", rows(n))
    con.close()
    partial.rename(path)
    return path


def by_hand(connection: sqlite3.Connection) -> pl.DataFrame:
    """What a user writes: Polars reads the table, then the times and counts
    are typed."""
    frame = pl.read_database("SELECT * FROM cdr", connection)
    return frame.with_columns(
        *(pl.col(c).str.to_datetime(ASTERISK_TIME, strict=False) for c in TIMES),
        *(pl.col(c).cast(pl.Int64) for c in INTEGERS),
    )


def test_side_by_side_read_database():
    path = cached_table(RECORDS)
    connection = sqlite3.connect(path)
    routes = {
        "cdrq.read_database": lambda: cdrq.read_database(connection, tz=None),
        "polars.read_database": lambda: pl.read_database("SELECT * FROM cdr", connection),
        "polars.read_database + typing by hand": lambda: by_hand(connection),
    }
    keys = ["src", "dst", "uniqueid", "duration", "billsec", "start", "answer", "end"]
    reference = by_hand(connection).select(keys)

    def same(name: str, frame: pl.DataFrame) -> None:
        assert frame.height == RECORDS, name
        if name == "polars.read_database":
            assert frame.select(c for c in keys if c not in TIMES).equals(reference.drop(*TIMES)), name
        else:
            assert frame.select(keys).equals(reference), name

    times = side_by_side(routes, rounds=5, same=same)
    connection.close()
    mb = path.stat().st_size / 1e6
    print(f"\n{RECORDS} rows, SQLite file {mb:.0f} MB, 5 rotating rounds")
    print(ratio_table(times, mb, "polars.read_database"))
