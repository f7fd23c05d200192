"""The `cdrq` command line: responses on stdout, errors on stderr, exit codes."""

from __future__ import annotations

import subprocess
import sys

import cdrq

OLD = "tests/samples/ucm6510-fw1.0.2.5-cdrapi.csv"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cdrq", *args], capture_output=True, text=True, check=False)


def test_query_prints_the_cdrapi_response(samples):
    out = run("query", str(samples / OLD.rsplit("/", 1)[1]), "format=json&caller=5300&minDur=6")
    assert out.returncode == 0
    frame = cdrq.read(str(samples / OLD.rsplit("/", 1)[1]))
    assert out.stdout == cdrq.cdrapi(frame, "format=json&caller=5300&minDur=6")
    assert '"AcctId": "62"' in out.stdout


def test_bad_query_exits_2_and_bad_input_1(samples, tmp_path):
    path = str(samples / OLD.rsplit("/", 1)[1])
    assert run("query", path, "caller=1,,2").returncode == 0  # the UCM answers an empty container
    bad = run("query", "--library", path, "caller=1,,2")
    assert bad.returncode == 2 and "empty item" in bad.stderr and bad.stdout == ""
    (tmp_path / "x.csv").write_text("1,2,3\n")
    unreadable = run("query", str(tmp_path / "x.csv"), "caller=1")
    assert unreadable.returncode == 1 and "x.csv:1:1" in unreadable.stderr


def test_library_mode_pages_nothing_and_knows_web_ui_filters(samples):
    out = run("query", "--library", "--now", "2014-01-01T00:00:00", str(samples / OLD.rsplit("/", 1)[1]),
              "callerNumber=5XXX&endTime=now")  # fmt: skip
    assert out.returncode == 0 and out.stdout.count("\n") == 4  # header + 3


def test_help_shows_examples():
    out = run("query", "--help")
    assert out.returncode == 0 and "examples:" in out.stdout and "--library" in out.stdout


def test_firmware_layout(samples):
    path = samples / "ucm6xxx-fw1.0.11-cdrapi.csv"
    out = run("query", "--firmware", "1.0.11", str(path), "format=csv&callee=6011")
    assert out.returncode == 0 and out.stdout == path.read_text()
    library = run("query", "--library", "--firmware", "1.0.11", str(path), "callee=6011")
    assert library.returncode == 0 and library.stdout == path.read_text()
    assert run("query", "--firmware", "9", str(path), "caller=1").returncode == 2  # argparse's usage error
