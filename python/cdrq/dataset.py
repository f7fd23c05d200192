"""`cdrq.convert`: archives → a month-partitioned Parquet dataset.

Layout of a dataset directory::

    DIR/_cdrq_manifest.jsonl          one line per source read, per run
    DIR/_cdrq_dataset.json            {"tz": zone of every part's times}
    DIR/_rejects/run-000001.parquet   the records a run could not read
    DIR/year=2024/month=05/part-000001-000000-1a2b3c4d.parquet

Every part holds its times in the dataset's zone, the ``tz`` of the run
that created it: a later run in another zone has its instants converted
into it (a run of naive times into a zoned dataset, or the reverse, is
refused: there is no instant to convert). Datasets written before the zone
was recorded take the zone of their first part, and parts of other zones
are converted as they are read. Months are those of ``start`` in the
dataset's zone; records without a start
go to ``year=__HIVE_DEFAULT_PARTITION__`` (null when read back). A run
appends: a record already in the dataset is not written again. Records are
the same when ``session``, ``AcctId``, ``cdr_kind`` and ``leg`` are (PortSIP
records carry their own ``id`` as ``AcctId`` and ``call_id`` as
``session``); a record with neither ``session`` nor ``AcctId`` is the same
only as an identical record. Part files are written under a temporary name
and renamed, and the manifest line follows its parts, so an interrupted run
leaves nothing half-written and a re-run completes it without duplicates.
"""

from __future__ import annotations

import itertools
import json
import os
import pathlib
import secrets
import time
from collections.abc import Iterator
from typing import Any

import polars as pl

from cdrq._core import CdrqError
from cdrq._zone import DEFAULT_TZ
from cdrq.read import REJECT_SCHEMA, Include, Source, check_tz, default_threads, expand, localise, open_source

MANIFEST = "_cdrq_manifest.jsonl"
METADATA = "_cdrq_dataset.json"
KEY = ["session", "AcctId", "cdr_kind", "leg"]
NULL_PARTITION = "__HIVE_DEFAULT_PARTITION__"


def is_dataset(source: Any) -> bool:
    """Whether ``source`` is a directory written by :func:`convert`."""
    return isinstance(source, (str, os.PathLike)) and os.path.isfile(os.path.join(source, MANIFEST))


def scan_dataset(directory: str | os.PathLike[str], tz: str | None = DEFAULT_TZ) -> pl.LazyFrame:
    """A dataset's records, months in order, as a LazyFrame in zone ``tz``
    (by default the dataset's own)."""
    files = parts(pathlib.Path(directory))
    if not files:
        raise CdrqError(f"dataset {os.fspath(directory)!r} holds no records yet")
    return scan_parts(files, zone_for(directory, tz))


def zone_for(source: Any, tz: str | None) -> str | None:
    """``tz``; for the default and a dataset ``source``, the dataset's zone."""
    if tz is DEFAULT_TZ and is_dataset(source):
        return metadata(pathlib.Path(source)).get("tz", "UTC")
    return tz


def metadata(root: pathlib.Path) -> dict[str, Any]:
    """What a dataset records of itself (``{"tz": ...}``); for one written
    before it did, the zone of its first part; ``{}`` while it has neither."""
    path = root / METADATA
    if path.exists():
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise CdrqError(f"dataset {os.fspath(root)!r}: {METADATA} is unreadable: {e}") from e
    # part-RUN-SEQ-… names sort by run, then by write order.
    for f in sorted(parts(root), key=os.path.basename):
        zones = file_zones(pl.read_parquet_schema(f))
        if zones:
            return {"tz": zones[0]}
    return {}


def file_zones(schema: dict[str, pl.DataType]) -> list[str | None]:
    """The zones of a part's time columns."""
    return [dtype.time_zone for dtype in schema.values() if isinstance(dtype, pl.Datetime)]


def scan_parts(files: list[str], tz: str | None) -> pl.LazyFrame:
    """Part files as one LazyFrame in zone ``tz``."""
    schemas = {f: pl.read_parquet_schema(f) for f in files}
    # Parts of other sources may hold other columns: read them all by the union.
    union: dict[str, pl.DataType] = {}
    for schema in schemas.values():
        for name, dtype in schema.items():
            union.setdefault(name, dtype)
    # Datasets written before the zone was recorded may hold parts of other
    # zones, which one scan would refuse: each run of parts of one zone is
    # scanned as such and converted.
    frames = []
    for zone, group in itertools.groupby(files, key=lambda f: next(iter(file_zones(schemas[f])), tz)):
        schema = {n: pl.Datetime(d.time_unit, zone) if isinstance(d, pl.Datetime) else d for n, d in union.items()}
        frame = pl.scan_parquet(list(group), schema=schema, missing_columns="insert", hive_partitioning=False)
        frames.append(localise(frame, tz))
    return frames[0] if len(frames) == 1 else pl.concat(frames)


def parts(root: pathlib.Path) -> list[str]:
    """Part files in month order, then in the order they were written."""
    return sorted(str(p) for p in root.glob("year=*/month=*/part-*.parquet"))


def convert(
    source: Source,
    to: str | os.PathLike[str],
    format: str = "auto",
    tz: str | None = "UTC",
    *,
    include: Include = None,
    threads: int | None = None,
    progress: bool = False,
    encoding: str = "utf8",
) -> dict[str, int]:
    """Reads ``source`` (anything :func:`cdrq.read` takes; ``include``
    globs as there) a window at a time into the Parquet dataset ``to``
    (created if needed), appending to what is there without duplicating
    records. ``tz`` is the source's zone and ``encoding`` its text's (as
    for :func:`cdrq.read`); the dataset keeps the zone it was
    created with and converts other zones' instants into it. Unreadable
    records never stop the run: they are written to ``to/_rejects/``; a
    run that read no record at all raises :class:`CdrqError` saying why.
    Returns the counts: ``records`` read, ``written``, ``duplicates``
    skipped, ``rejects``."""
    from cdrq.scan import ScanSpec

    check_tz(tz)
    files = expand(source, include)
    root = pathlib.Path(to)
    root.mkdir(parents=True, exist_ok=True)
    manifest = root / MANIFEST
    run = next_run(root)
    writer = MonthWriter(root, run, tz)
    totals = {"records": 0, "written": 0, "duplicates": 0, "rejects": 0}
    rejects: list[tuple] = []
    labels = []
    for one in files:
        data, name = open_source(one)
        label = name or (os.fspath(one) if isinstance(one, (str, os.PathLike)) else "<bytes>")
        labels.append(label)
        spec = ScanSpec(
            sources=(data,),
            names=(name,),
            format=format,
            tz=tz,
            threads=default_threads(threads),
            window_bytes=None,
            progress=progress,
            encoding=encoding,
        )
        counts = {"records": 0, "written": 0, "duplicates": 0, "rejects": 0}
        for frame, bad in spec.windows(None, on_error="collect"):
            written = writer.write(frame)
            counts["records"] += frame.height
            counts["written"] += written
            counts["duplicates"] += frame.height - written
            counts["rejects"] += len(bad)
            rejects.extend(bad)
        for k, v in counts.items():
            totals[k] += v
        stat = os.stat(one) if isinstance(one, (str, os.PathLike)) else None
        line = {
            "run": run,
            "source": label,
            "size": stat.st_size if stat else len(data),
            "mtime": stat.st_mtime if stat else None,
            "format": format,
            "tz": tz,
            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            **counts,
        }
        with manifest.open("a") as f:
            f.write(json.dumps(line) + "\n")
            f.flush()
            os.fsync(f.fileno())
    if rejects:
        (root / "_rejects").mkdir(exist_ok=True)
        atomic_parquet(
            pl.DataFrame(rejects, schema=REJECT_SCHEMA, orient="row"), root / "_rejects" / f"run-{run:06d}.parquet"
        )
    if not totals["records"]:
        raise CdrqError(nothing_read(labels, rejects, root / "_rejects" / f"run-{run:06d}.parquet"))
    return totals


def nothing_read(labels: list[str], rejects: list[tuple], kept: pathlib.Path) -> str:
    """Why a conversion wrote nothing: its sources hold no record, or every one was rejected."""
    named = ", ".join(labels[:3]) + (f" and {len(labels) - 3} more" if len(labels) > 3 else "")
    if not rejects:
        return f"no record in {named}: nothing written"
    source, line, _, reason, _ = rejects[0]
    return (
        f"no readable record in {named}: all {len(rejects)} rejected (the first: {source}:{line}: {reason}); "
        f"nothing written, the rejects are in {kept}"
    )


class MonthWriter:
    """Writes frames into month partitions, skipping records the dataset
    (or this run) already holds; keeps the keys of the months it touched."""

    def __init__(self, root: pathlib.Path, run: int, tz: str | None) -> None:
        """``tz`` is the zone of the frames written; they are stored in the
        dataset's zone, which a new dataset takes from ``tz``."""
        recorded = metadata(root)
        zone = recorded.get("tz", tz)
        if zone is not None and tz is None:
            raise CdrqError(
                f"dataset {os.fspath(root)!r} holds times in {zone}: naive times (tz=None) cannot be added; "
                "give the zone the source's times are in"
            )
        if zone is None and tz is not None:
            raise CdrqError(
                f"dataset {os.fspath(root)!r} holds naive times (written with tz=None): times in {tz} "
                "cannot be added; read the source with tz=None"
            )
        if not (root / METADATA).exists():
            atomic_write(root / METADATA, json.dumps({"tz": zone}).encode())
        self.root, self.run, self.tz = root, run, zone
        (root / MANIFEST).touch()  # the directory is a dataset from its first part on
        self.keys: dict[tuple[str, str], pl.DataFrame] = {}
        self.whole: dict[tuple[str, str], pl.DataFrame] = {}
        self.sequence = 0

    def write(self, frame: pl.DataFrame) -> int:
        frame = localise(frame, self.tz)
        written = 0
        for (year, month), part in self.months(frame):
            fresh = self.fresh((year, month), part)
            if fresh.height:
                directory = self.root / f"year={year}" / f"month={month}"
                directory.mkdir(parents=True, exist_ok=True)
                # The random tail keeps two writers of one run number apart.
                name = f"part-{self.run:06d}-{self.sequence:06d}-{secrets.token_hex(4)}.parquet"
                atomic_parquet(fresh, directory / name)
                self.sequence += 1
                written += fresh.height
        return written

    def months(self, frame: pl.DataFrame) -> Iterator[tuple[tuple[str, str], pl.DataFrame]]:
        start = pl.col("start")
        labelled = frame.with_columns(
            _year=start.dt.year().cast(pl.String).str.zfill(4).fill_null(NULL_PARTITION),
            _month=start.dt.month().cast(pl.String).str.zfill(2).fill_null(NULL_PARTITION),
        )
        for (year, month), part in labelled.group_by("_year", "_month", maintain_order=True):
            yield (str(year), str(month)), part.drop("_year", "_month")

    def fresh(self, month: tuple[str, str], part: pl.DataFrame) -> pl.DataFrame:
        """The rows of ``part`` not yet in the month, each once."""
        if month not in self.keys:
            self.load(month)
        keyed = pl.col("session").is_not_null() | pl.col("AcctId").is_not_null()
        with_key = part.filter(keyed).unique(KEY, keep="first", maintain_order=True)
        with_key = with_key.join(self.keys[month], on=KEY, how="anti", nulls_equal=True)
        without = part.filter(~keyed).unique(keep="first", maintain_order=True)
        if self.whole[month].height:
            without = without.join(self.whole[month], on=without.columns, how="anti", nulls_equal=True)
        self.keys[month] = pl.concat([self.keys[month], with_key.select(KEY)])
        self.whole[month] = pl.concat([self.whole[month], without], how="diagonal_relaxed")
        if not without.height:
            return with_key
        return pl.concat([with_key, without], how="diagonal_relaxed")

    def load(self, month: tuple[str, str]) -> None:
        files = sorted((self.root / f"year={month[0]}" / f"month={month[1]}").glob("part-*.parquet"))
        empty = pl.DataFrame(schema={"session": pl.String, "AcctId": pl.Int64, "cdr_kind": pl.String, "leg": pl.Int64})
        if not files:
            self.keys[month], self.whole[month] = empty, pl.DataFrame()
            return
        existing = scan_parts([str(f) for f in files], self.tz)
        keyed = pl.col("session").is_not_null() | pl.col("AcctId").is_not_null()
        self.keys[month] = existing.filter(keyed).select(KEY).collect()
        self.whole[month] = existing.filter(~keyed).collect()


def next_run(root: pathlib.Path) -> int:
    """The number of the next run writing into the dataset at ``root``."""
    manifest = root / MANIFEST
    runs = [json.loads(line) for line in manifest.read_text().splitlines()] if manifest.exists() else []
    return max((r["run"] for r in runs), default=0) + 1


def atomic_parquet(frame: pl.DataFrame, path: pathlib.Path) -> None:
    """Writes ``path`` whole or not at all."""
    tmp = path.with_name(f".{path.name}.tmp")
    frame.write_parquet(tmp)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def atomic_write(path: pathlib.Path, data: bytes) -> None:
    """Writes ``path`` whole or not at all."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
