"""Benchmark fixtures: a generated UCM archive and its RFC-clean twin."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from gen_cdrs import cached_archive, cached_json_archives, cached_xml_archive

#: 2 M records ≈ 620 MB: above the 500 MB the read benchmark must cover.
RECORDS = int(os.environ.get("CDRQ_BENCH_RECORDS", "2000000"))


@pytest.fixture(scope="session")
def archive() -> tuple[Path, Path]:
    return cached_archive(RECORDS, Path(__file__).parent / ".data")


#: 250 k records ≈ 230 MB of JSON per shape.
JSON_RECORDS = int(os.environ.get("CDRQ_BENCH_JSON_RECORDS", "250000"))


@pytest.fixture(scope="session")
def json_archives() -> tuple[Path, Path]:
    return cached_json_archives(JSON_RECORDS, Path(__file__).parent / ".data")


@pytest.fixture(scope="session")
def xml_archive() -> Path:
    return cached_xml_archive(JSON_RECORDS, Path(__file__).parent / ".data")
