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
    assert "records=1,500" in shown.stderr


@pytest.mark.parametrize("library", [True, False])
def test_cli_duckdb_engine_answers_like_polars(tmp_path, source, library):
    cli = [sys.executable, "-m", "cdrq", "query"] + (["--library"] if library else [])
    cdrq.convert(source, tmp_path / "ds")
    for qs in ["caller=5300-5320&minDur=30&format=json", "callee=6@&numRecords=7&offset=3", "caller=%", "format=xml"]:
        polars = subprocess.run([*cli, str(tmp_path / "ds"), qs], capture_output=True, text=True)
        duck = subprocess.run([*cli, "--engine", "duckdb", str(tmp_path / "ds"), qs], capture_output=True, text=True)
        assert (duck.returncode, duck.stdout) == (polars.returncode, polars.stdout), qs


def one_call(tmp_path, name: str, acct: int) -> str:
    path = tmp_path / name
    path.write_text(f"AcctId,src,dst,start,billsec\n{acct},5300,5301,2024-03-01 10:00:00,3\n")
    return str(path)


def test_a_dataset_keeps_the_zone_it_was_created_in(tmp_path):
    ds = tmp_path / "ds"
    cdrq.convert(one_call(tmp_path, "a.csv", 1), ds, tz="Europe/Berlin")
    cdrq.convert(one_call(tmp_path, "b.csv", 2), ds, tz="UTC")  # converted into the dataset's zone
    assert json.loads((ds / "_cdrq_dataset.json").read_text()) == {"tz": "Europe/Berlin"}
    zones = {pl.read_parquet_schema(p)["start"].time_zone for p in ds.rglob("part-*.parquet")}
    assert zones == {"Europe/Berlin"}
    # Both calls began at 10:00 on their PBX's clock: one in Berlin, one in UTC (11:00 in Berlin).
    shown = cdrq.scan(ds).select("AcctId", "start").collect()
    assert shown["start"].dtype == pl.Datetime("us", "Europe/Berlin")
    assert shown["start"].dt.strftime("%H:%M").to_list() == ["10:00", "11:00"]
    assert cdrq.read(ds, tz="UTC")["start"].dt.strftime("%H:%M").to_list() == ["09:00", "10:00"]
    answer = subprocess.run(
        [sys.executable, "-m", "cdrq", "query", str(ds), "format=csv"], capture_output=True, text=True
    )
    assert answer.returncode == 0, answer.stderr
    assert "2024-03-01 10:00:00" in answer.stdout and "2024-03-01 11:00:00" in answer.stdout


def test_read_shows_a_dataset_in_its_zone_by_default(tmp_path):
    cdrq.convert(one_call(tmp_path, "a.csv", 1), tmp_path / "ds", tz="Europe/Berlin")
    assert cdrq.read(tmp_path / "ds")["start"].dtype == pl.Datetime("us", "Europe/Berlin")


def test_naive_and_zoned_times_do_not_mix_in_a_dataset(tmp_path):
    cdrq.convert(one_call(tmp_path, "a.csv", 1), tmp_path / "ds", tz=None)
    with pytest.raises(cdrq.CdrqError, match=r"holds naive times .* times in UTC cannot be added"):
        cdrq.convert(one_call(tmp_path, "b.csv", 2), tmp_path / "ds", tz="UTC")
    assert cdrq.read(tmp_path / "ds", tz=None)["AcctId"].to_list() == [1]
    cdrq.convert(one_call(tmp_path, "c.csv", 3), tmp_path / "zoned", tz="UTC")
    with pytest.raises(cdrq.CdrqError, match=r"holds times in UTC: naive times \(tz=None\) cannot be added"):
        cdrq.convert(one_call(tmp_path, "d.csv", 4), tmp_path / "zoned", tz=None)


def test_datasets_written_before_the_zone_was_recorded_still_read(tmp_path):
    # What the old version left: no zone recorded, and a second run's part in its own zone.
    ds = tmp_path / "ds"
    cdrq.convert(one_call(tmp_path, "a.csv", 1), ds, tz="Europe/Berlin")
    (ds / "_cdrq_dataset.json").unlink()
    month = next(ds.glob("year=2024/month=03"))
    utc = cdrq.read(one_call(tmp_path, "b.csv", 2), tz="UTC")
    utc.write_parquet(month / "part-000002-000000-00000000.parquet")
    shown = cdrq.scan(ds).collect()
    assert shown["start"].dtype == pl.Datetime("us", "Europe/Berlin")  # the first run's zone
    assert shown["start"].dt.strftime("%H:%M").to_list() == ["10:00", "11:00"]
    assert cdrq.read(ds, tz="UTC").height == 2
    # The next run records the zone the dataset was in.
    cdrq.convert(one_call(tmp_path, "c.csv", 3), ds, tz="UTC")
    assert json.loads((ds / "_cdrq_dataset.json").read_text()) == {"tz": "Europe/Berlin"}
    assert cdrq.scan(ds).collect()["AcctId"].to_list() == [1, 2, 3]


def test_convert_skips_stray_files_and_fails_when_nothing_was_readable(tmp_path):
    cli = [sys.executable, "-m", "cdrq", "convert"]
    archive = tmp_path / "in"
    archive.mkdir()
    one_call(archive, "a.csv", 1)
    (archive / "SHA256SUMS").write_text("00  a.csv\n")
    done = subprocess.run([*cli, str(archive), "--to", str(tmp_path / "ds")], capture_output=True, text=True)
    assert done.returncode == 0 and json.loads(done.stdout)["written"] == 1
    # One line of ours on stderr, not Python's warning form.
    assert done.stderr.startswith(f"cdrq: warning: {archive}: skipped 1 file(s) (names not .csv")
    assert done.stderr.endswith(f": {archive / 'SHA256SUMS'}\n") and done.stderr.count("\n") == 1
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    done = subprocess.run([*cli, str(empty), "--to", str(tmp_path / "ds2")], capture_output=True, text=True)
    assert (done.returncode, done.stdout) == (1, "")
    assert f"no record in {empty}: nothing written" in done.stderr
    unreadable = tmp_path / "bad.csv"
    unreadable.write_text("x1,5300,5301\n")
    with pytest.raises(cdrq.CdrqError, match=r"no readable record in .*bad\.csv: all 1 rejected \(the first: .*:1: "):
        cdrq.convert(unreadable, tmp_path / "ds3")
    assert pl.read_parquet(next((tmp_path / "ds3" / "_rejects").glob("*.parquet")))["raw"].to_list() == ["x1,5300,5301"]
    # Records that are all there already are not "nothing readable".
    assert cdrq.convert(archive / "a.csv", tmp_path / "ds")["duplicates"] == 1
