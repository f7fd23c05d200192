"""Datasets: the month-partitioned Parquet directories :func:`cdrq.convert`
writes, told apart from plain directories and read in their zone.

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
from collections.abc import Iterable
from typing import Any

import polars as pl

from cdrq._core import CdrqError
from cdrq.zones import DEFAULT_TZ, localise

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
    return scan_parts(part_files(directory), zone_for(directory, tz))


def part_files(directory: str | os.PathLike[str]) -> list[str]:
    """A dataset's part files (see :func:`parts`); an error if it has none."""
    files = parts(pathlib.Path(directory))
    if not files:
        raise CdrqError(f"dataset {os.fspath(directory)!r} holds no records yet")
    return files


def by_month(files: list[str]) -> list[tuple[str, list[str]]]:
    """Part files (in :func:`parts` order) grouped by their month directory
    (``year=YYYY/month=MM``, relative), months in the same order."""
    groups = itertools.groupby(files, key=lambda f: os.path.join(*pathlib.Path(f).parts[-3:-1]))
    return [(month, list(group)) for month, group in groups]


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


def scan_parts(files: list[str], tz: str | None, union: dict[str, pl.DataType] | None = None) -> pl.LazyFrame:
    """Part files as one LazyFrame in zone ``tz``, with the columns of
    ``union`` (default: :func:`union_of` these files)."""
    schemas = {f: pl.read_parquet_schema(f) for f in files}
    # Parts of other sources may hold other columns: read them all by the union.
    union = union_of(schemas.values()) if union is None else union
    # Datasets written before the zone was recorded may hold parts of other
    # zones, which one scan would refuse: each run of parts of one zone is
    # scanned as such and converted.
    frames = []
    for zone, group in itertools.groupby(files, key=lambda f: next(iter(file_zones(schemas[f])), tz)):
        schema = {n: pl.Datetime(d.time_unit, zone) if isinstance(d, pl.Datetime) else d for n, d in union.items()}
        frame = pl.scan_parquet(list(group), schema=schema, missing_columns="insert", hive_partitioning=False)
        frames.append(localise(frame, tz))
    return frames[0] if len(frames) == 1 else pl.concat(frames)


def union_of(schemas: Iterable[dict[str, pl.DataType]]) -> dict[str, pl.DataType]:
    """Every column of the parts' ``schemas``, each with its first type."""
    union: dict[str, pl.DataType] = {}
    for schema in schemas:
        for name, dtype in schema.items():
            union.setdefault(name, dtype)
    return union


def parts(root: pathlib.Path) -> list[str]:
    """Part files in month order, then in the order they were written."""
    return sorted(str(p) for p in root.glob("year=*/month=*/part-*.parquet"))
