"""`cdrq.convert`: archives → the month-partitioned Parquet dataset of
:mod:`cdrq.dataset`, appended a window at a time without duplicates."""

from __future__ import annotations

import json
import os
import pathlib
import secrets
import time
from collections.abc import Iterator

import polars as pl

from cdrq._core import CdrqError
from cdrq.dataset import KEY, MANIFEST, METADATA, NULL_PARTITION, metadata, scan_parts
from cdrq.read import REJECT_SCHEMA, check_encoding, layout_of
from cdrq.scan import ScanSpec
from cdrq.sources import Include, Source, default_threads, expand, open_source
from cdrq.zones import check_tz, localise


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
    columns: list[str] | None = None,
) -> dict[str, int]:
    """Reads ``source`` (anything :func:`cdrq.read` takes; ``include``
    globs as there) a window at a time into the Parquet dataset ``to``
    (created if needed), appending to what is there without duplicating
    records. ``tz`` is the source's zone, ``encoding`` its text's and
    ``columns`` an ``asterisk-custom`` template (as for :func:`cdrq.read`); the dataset keeps the zone it was
    created with and converts other zones' instants into it. Unreadable
    records never stop the run: they are written to ``to/_rejects/``; a
    run that read no record at all raises :class:`CdrqError` saying why.
    Returns the counts: ``records`` read, ``written``, ``duplicates``
    skipped, ``rejects``."""

    check_tz(tz)
    check_encoding(encoding)
    format, layout = layout_of(format, columns)
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
            layout=None if layout is None else tuple(layout),
            on_error="collect",  # as the windows are read: their learning is theirs
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
