"""Many sources at once: lists, globs, directories, gzip; one frame in
source order, with an optional `source` column."""

from __future__ import annotations

import gzip
import io
import shutil
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import cdrq


@pytest.fixture
def archive(tmp_path, samples):
    d = tmp_path / "archive"
    (d / "2015").mkdir(parents=True)
    shutil.copy(samples / "ucm6510-fw1.0.2.5-cdrapi.csv", d / "a-old.csv")
    shutil.copy(samples / "ucm6xxx-fw1.0.11-cdrapi-transfer.json", d / "b-new.json")
    data = (samples / "ucm6xxx-fw1.0.11-cdrapi.csv").read_bytes()
    (d / "2015" / "c.csv.gz").write_bytes(gzip.compress(data))
    return d


def test_directory_reads_every_file_sorted(archive):
    df = cdrq.read(archive, include_source=True)
    assert df.height == 3 + 1 + 3
    names = [s.rsplit("/", 1)[-1] for s in df["source"].unique(maintain_order=True)]
    assert names == ["c.csv.gz", "a-old.csv", "b-new.json"]
    assert df["cdr_kind"].to_list() == ["record"] * 4 + ["main", "sub", "sub"]


def test_list_keeps_the_given_order_and_glob_sorts(archive):
    listed = cdrq.read([archive / "b-new.json", archive / "a-old.csv"])
    assert listed["cdr_kind"].to_list()[:3] == ["main", "sub", "sub"]
    globbed = cdrq.read(str(archive / "*.csv"))
    assert globbed["AcctId"].to_list() == [62, 63, 64]
    recursive = cdrq.read(str(archive / "**" / "*.gz"))
    assert recursive["session"].to_list() == ["1447207127558984-6039"]


def test_columns_missing_from_one_file_are_null(tmp_path):
    (tmp_path / "a.json").write_text('{"cdr": [{"src": "1", "nat_call": "yes"}]}')
    (tmp_path / "b.json").write_text('{"cdr": [{"src": "2", "gds_call": "no"}]}')
    df = cdrq.read(tmp_path)
    assert df.select("src", "nat_call", "gds_call").rows() == [("1", "yes", None), ("2", None, "no")]


def test_rejects_of_many_files_name_their_file(tmp_path):
    (tmp_path / "a.json").write_text('{"cdr": [{"AcctId": "x"}]}')
    (tmp_path / "b.json").write_text('{"cdr": [{"AcctId": "1"}, {"AcctId": "y"}]}')
    df, rejects = cdrq.read(tmp_path, on_error="collect")
    assert df["AcctId"].to_list() == [1]
    assert [s.rsplit("/", 1)[-1] for s in rejects["source"]] == ["a.json", "b.json"]


def test_nothing_to_read_is_an_error(tmp_path):
    with pytest.raises(cdrq.CdrqError, match="no file matches"):
        cdrq.read(str(tmp_path / "*.csv"))
    with pytest.raises(cdrq.CdrqError, match="no file in directory"):
        cdrq.read(tmp_path)
    (tmp_path / "bad.gz").write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(cdrq.CdrqError, match=r"bad\.gz: cannot decompress gzip"):
        cdrq.read(tmp_path / "bad.gz")


FIXTURES = Path(__file__).parent / "fixtures"


def test_zstd_files_and_bytes_are_decompressed(samples):
    plain = cdrq.read(samples / "ucm6xxx-fw1.0.11-cdrapi.csv")
    assert cdrq.read(FIXTURES / "ucm6xxx-fw1.0.11-cdrapi.csv.zst").equals(plain)
    assert cdrq.read((FIXTURES / "ucm6xxx-fw1.0.11-cdrapi.csv.zst").read_bytes()).equals(plain)
    assert cdrq.read(FIXTURES / "two-frames.csv.zst").height == 2  # concatenated frames
    nested = cdrq.read(FIXTURES / "transfer.json.zst")  # sniffed after decompressing
    assert nested["cdr_kind"].to_list() == ["main", "sub", "sub"]


def test_gzip_bytes_and_file_objects(samples):
    data = (samples / "ucm6510-fw1.0.2.5-cdrapi.csv").read_bytes()
    assert cdrq.read(io.BytesIO(gzip.compress(data))).equals(cdrq.read(data))


@given(st.binary(max_size=64), st.sampled_from(["csv", "json"]), st.integers(0, 9))
def test_gzip_round_trip(noise, kind, level):
    data = (
        b'{"cdr": [{"src": "' + noise.hex().encode() + b'"}]}'
        if kind == "json"
        else b"AcctId,src,dst\n1," + noise.hex().encode() + b",2\n"
    )
    assert cdrq.read(gzip.compress(data, compresslevel=level)).equals(cdrq.read(data))


CALL = b"AcctId,src,dst\n1,5300,5301\n"


@pytest.fixture
def strays(tmp_path):
    """A directory of one CDR file beside a README, a checksum list, a PNG and a hidden file."""
    d = tmp_path / "in"
    d.mkdir()
    (d / "a.CSV.gz").write_bytes(gzip.compress(CALL))
    (d / "README").write_text("exported nightly\n")
    (d / "SHA256SUMS").write_text("00  a.CSV.gz\n")
    (d / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    (d / ".DS_Store").write_bytes(b"\0")
    return d


def test_a_directory_reads_its_cdr_files_and_names_the_rest(strays):
    for read in (cdrq.read, lambda d: cdrq.scan(d).collect()):
        with pytest.warns(cdrq.SkippedFileWarning, match=r"skipped 3 file\(s\)") as caught:
            assert read(strays)["AcctId"].to_list() == [1]
        assert [w.message.paths for w in caught] == [[str(strays / n) for n in ("README", "SHA256SUMS", "logo.png")]]


def test_include_reads_other_names(strays):
    for name in ("README", "SHA256SUMS", "logo.png"):
        (strays / name).unlink()
    (strays / "calls.log").write_bytes(b"AcctId,src,dst\n2,5302,5301\n")
    assert cdrq.scan(strays, include="*.log").collect()["AcctId"].to_list() == [1, 2]
    assert cdrq.scan(strays, include=["*.dat", "calls.*"]).collect()["AcctId"].to_list() == [1, 2]


def test_a_directory_of_no_cdr_file_is_an_error_naming_what_it_skipped(strays):
    (strays / "a.CSV.gz").unlink()
    with pytest.raises(cdrq.CdrqError, match=r"no CDR file in directory .*: 3 skipped \(.*README"):
        cdrq.read(strays)
