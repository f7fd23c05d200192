"""`cdrq.convert` and dataset directories: Parquet by month, appendable
without duplicates, readable and queryable like the source."""

from __future__ import annotations

import json
import subprocess
import sys

import polars as pl
import pytest
from test_scan import csv_archive

import cdrq


def sorted_rows(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.sort("AcctId", "cdr_kind", "leg", nulls_last=True)


@pytest.fixture
def source(tmp_path):
    path = tmp_path / "src" / "a.csv"
    path.parent.mkdir()
    path.write_text(csv_archive(1500))
    return path


def test_convert_round_trip_by_month(tmp_path, source):
    counts = cdrq.convert(source, tmp_path / "ds")
    assert counts == {"records": 1500, "written": 1500, "duplicates": 0, "rejects": 0}
    months = sorted(p.relative_to(tmp_path / "ds").parent.as_posix() for p in (tmp_path / "ds").rglob("*.parquet"))
    assert months[0] == "year=2024/month=01" and "year=2024/month=02" in months
    back = cdrq.read(tmp_path / "ds")
    original = cdrq.read(source)
    assert back.schema == original.schema
    # Month order is the archive's order here (the archive is chronological).
    assert back.equals(original)
    assert cdrq.scan(tmp_path / "ds").select("AcctId").collect()["AcctId"].to_list() == list(range(1, 1501))


def test_rerun_adds_nothing_and_new_records_are_appended(tmp_path, source):
    cdrq.convert(source, tmp_path / "ds")
    again = cdrq.convert(source, tmp_path / "ds")
    assert again == {"records": 1500, "written": 0, "duplicates": 1500, "rejects": 0}
    assert cdrq.read(tmp_path / "ds").height == 1500
    more = tmp_path / "more.csv"
    more.write_text(csv_archive(1700))  # the first 1500 again, then 200 new
    counts = cdrq.convert(more, tmp_path / "ds")
    assert (counts["written"], counts["duplicates"]) == (200, 1500)
    assert sorted_rows(cdrq.read(tmp_path / "ds")).equals(sorted_rows(cdrq.read(more)))
    runs = [json.loads(line) for line in (tmp_path / "ds" / "_cdrq_manifest.jsonl").read_text().splitlines()]
    assert [r["run"] for r in runs] == [1, 2, 3]
    assert [r["written"] for r in runs] == [1500, 0, 200]


def test_records_without_ids_dedupe_on_the_whole_record(tmp_path):
    src = tmp_path / "w.json"
    src.write_text('{"cdr": [{"src": "1", "start": "2024-03-01 10:00:00"}, {"src": "2"}, {"src": "2"}]}')
    assert cdrq.convert(src, tmp_path / "ds")["written"] == 2
    assert cdrq.convert(src, tmp_path / "ds")["written"] == 0
    back = cdrq.read(tmp_path / "ds")
    assert back["src"].to_list() == ["1", "2"]


def test_rejects_are_written_beside_and_nothing_is_lost(tmp_path, source):
    bad = tmp_path / "bad.csv"
    bad.write_text(csv_archive(10).replace("\n3,", "\nx,", 1))
    counts = cdrq.convert([source, bad], tmp_path / "ds")
    assert counts["rejects"] == 1 and counts["records"] == 1509
    rejects = pl.read_parquet(next((tmp_path / "ds" / "_rejects").glob("*.parquet")))
    assert rejects.row(0, named=True)["line"] == 4
    assert rejects["raw"][0].startswith("x,")


def test_a_dataset_queries_like_its_source(tmp_path, source):
    cdrq.convert(source, tmp_path / "ds", tz="Europe/Berlin")
    qs = "caller=5300-5350&minDur=20&startTime=2024-02-01T00:00:00%2B01:00"
    expected = cdrq.query(cdrq.read(source, tz="Europe/Berlin"), qs)
    assert cdrq.query(cdrq.read(tmp_path / "ds", tz="Europe/Berlin"), qs).equals(expected)
    assert cdrq.query(cdrq.scan(tmp_path / "ds", tz="Europe/Berlin"), qs).collect().equals(expected)
    # Another zone shows the same instants.
    utc = cdrq.read(tmp_path / "ds", tz="UTC")
    berlin = cdrq.read(source, tz="Europe/Berlin")["start"]
    assert utc["start"].dt.convert_time_zone("Europe/Berlin").equals(berlin)


def test_cli_convert_and_query_a_dataset(tmp_path, source):
    cli = [sys.executable, "-m", "cdrq"]
    done = subprocess.run([*cli, "convert", str(source), "--to", str(tmp_path / "ds")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["written"] == 1500
    assert done.stderr == ""  # not a terminal: no progress
    qs = "caller=5300&format=csv"
    answer = subprocess.run([*cli, "query", str(tmp_path / "ds"), qs], capture_output=True, text=True)
    assert answer.returncode == 0, answer.stderr
    assert answer.stdout == cdrq.cdrapi(cdrq.read(source), qs)
    library = subprocess.run([*cli, "query", "--library", str(source), qs], capture_output=True, text=True)
    assert library.stdout == cdrq.render(cdrq.query(cdrq.read(source), qs), "csv")
    shown = subprocess.run([*cli, "query", "--library", "--progress", str(source), qs], capture_output=True, text=True)
    assert "records=1500" in shown.stderr


@pytest.mark.parametrize("library", [True, False])
def test_cli_duckdb_engine_answers_like_polars(tmp_path, source, library):
    cli = [sys.executable, "-m", "cdrq", "query"] + (["--library"] if library else [])
    cdrq.convert(source, tmp_path / "ds")
    for qs in ["caller=5300-5320&minDur=30&format=json", "callee=6@&numRecords=7&offset=3", "caller=%", "format=xml"]:
        polars = subprocess.run([*cli, str(tmp_path / "ds"), qs], capture_output=True, text=True)
        duck = subprocess.run([*cli, "--engine", "duckdb", str(tmp_path / "ds"), qs], capture_output=True, text=True)
        assert (duck.returncode, duck.stdout) == (polars.returncode, polars.stdout), qs
