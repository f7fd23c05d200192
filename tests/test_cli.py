"""The `cdrq` command line: responses on stdout, errors on stderr, exit codes."""

from __future__ import annotations

import os
import select
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import cdrq

OLD = "tests/samples/ucm6510-fw1.0.2.5-cdrapi.csv"


def run(*args: str, input: bytes | str | None = None, env: dict[str, str] | None = None, timeout: float = 120):
    return subprocess.run(
        [sys.executable, "-m", "cdrq", *args],
        capture_output=True,
        text=not isinstance(input, bytes),
        input=input,
        env={**os.environ, **(env or {})},
        timeout=timeout,
        check=False,
    )


def failed(out: subprocess.CompletedProcess, status: int, *texts: str) -> bool:
    """Exit ``status``, one line on stderr holding each of ``texts``, no traceback."""
    err = out.stderr.decode() if isinstance(out.stderr, bytes) else out.stderr
    assert out.returncode == status, (out.returncode, err)
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert all(t in err for t in texts), err
    return True


@pytest.fixture()
def old(samples) -> str:
    return str(samples / OLD.rsplit("/", 1)[1])


def test_query_prints_the_cdrapi_response(samples):
    out = run("query", str(samples / OLD.rsplit("/", 1)[1]), "format=json&caller=5300&minDur=6")
    assert out.returncode == 0
    frame = cdrq.read(str(samples / OLD.rsplit("/", 1)[1]))
    assert out.stdout == cdrq.cdrapi(frame, "format=json&caller=5300&minDur=6")
    assert '"AcctId": "62"' in out.stdout


def test_bad_query_exits_2_and_bad_input_1(old, tmp_path):
    # The PBX's answer (its empty container) on stdout, and the error on stderr.
    rejected = run("query", old, "caller=1,,2")
    assert failed(rejected, 2, "bad query", "empty item") and rejected.stdout.startswith("AcctId,")
    bad = run("query", "--library", old, "caller=1,,2")
    assert failed(bad, 2, "empty item") and bad.stdout == ""
    (tmp_path / "x.csv").write_text("1,2,3\n")
    assert failed(run("query", str(tmp_path / "x.csv"), "caller=1"), 1, "x.csv:1:1")


def test_a_mistyped_parameter_is_an_error_in_every_engine(old, tmp_path):
    typo = run("query", old, "caler=5300")
    assert failed(typo, 2, "unknown parameter", "caler") and typo.stdout.count("\n") == 1
    cdrq.convert(old, tmp_path / "ds")
    duck = run("query", "--engine", "duckdb", str(tmp_path / "ds"), "caler=5300")
    assert failed(duck, 2, "unknown parameter", "caler") and duck.stdout.startswith("AcctId,")
    assert failed(run("query", "--library", "--engine", "duckdb", str(tmp_path / "ds"), "caler=5300"), 2, "caler")


def test_duckdb_leaves_stderr_clean(old, tmp_path):
    cdrq.convert(old, tmp_path / "ds")
    out = run("query", "--engine", "duckdb", str(tmp_path / "ds"), "caller=5300")
    assert out.returncode == 0 and out.stderr == "" and out.stdout.count("\n") == 4


def test_library_mode_pages_nothing_and_knows_web_ui_filters(samples):
    out = run("query", "--library", "--now", "2014-01-01T00:00:00", str(samples / OLD.rsplit("/", 1)[1]),
              "callerNumber=5XXX&endTime=now")  # fmt: skip
    assert out.returncode == 0 and out.stdout.count("\n") == 4  # header + 3


def test_help_shows_examples_and_exit_statuses():
    out = run("query", "--help")
    assert out.returncode == 0 and "examples:" in out.stdout and "--library" in out.stdout
    top = run("--help")
    assert "exit status: 0 ok; 1" in top.stdout and "CDRQ_PASSWORD" in top.stdout


def test_version():
    out = run("--version")
    assert out.returncode == 0 and out.stdout == f"cdrq {cdrq.__version__}\n"


def test_firmware_layout(samples):
    path = samples / "ucm6xxx-fw1.0.11-cdrapi.csv"
    out = run("query", "--firmware", "1.0.11", str(path), "format=csv&callee=6011")
    assert out.returncode == 0 and out.stdout == path.read_text()
    library = run("query", "--library", "--firmware", "1.0.11", str(path), "callee=6011")
    assert library.returncode == 0 and library.stdout == path.read_text()
    assert failed(run("query", "--firmware", "9", str(path), "caller=1"), 2, "cdrq query: error:", "--firmware")


def test_usage_errors_are_one_line(old):
    assert failed(run("query", old), 2, "cdrq query: error: give at least one archive and the query")
    assert failed(run("query", "--now", "yesterday", old, "caller=1"), 2, "--now", "yesterday")
    assert failed(run("query", "--engine", "duckdb", "--progress", old, "caller=1"), 2, "--progress")
    assert failed(run("query", "-", "-", "caller=1"), 2, "stdin")
    assert failed(run("pull", "https://x", "--user", "u", "--password", "p", "--to", "d", "--since", "2024-13-01"),
                  2, "--since", "2024-13-01")  # fmt: skip


def test_failures_name_what_and_where_without_traceback(old, tmp_path):
    assert failed(run("query", str(tmp_path / "none.csv"), "caller=1"), 1, "none.csv")
    assert failed(run("query", "--library", str(tmp_path / "none.csv"), "caller=1"), 1, "none.csv")
    # A target that is a file.
    (tmp_path / "file").write_text("")
    assert failed(run("convert", old, "--to", str(tmp_path / "file")), 1, "--to", "file: not a directory")
    # A dataset that cannot be read: a part that is no Parquet.
    cdrq.convert(old, tmp_path / "ds")
    part = next((tmp_path / "ds").glob("year=*/month=*/part-*.parquet"))
    part.write_bytes(b"not parquet")
    assert failed(run("query", "--library", str(tmp_path / "ds"), "caller=1"), 1)
    traced = run("query", "--debug", "--library", str(tmp_path / "ds"), "caller=1")
    assert traced.returncode == 1 and "Traceback" in traced.stderr


def test_stdin_is_an_archive(old):
    data = Path(old).read_bytes()
    out = run("query", "-", "format=json&caller=5300&minDur=6", input=data)
    assert (
        out.returncode == 0 and out.stdout == cdrq.cdrapi(cdrq.read(data), "format=json&caller=5300&minDur=6").encode()
    )


def test_progress_counts_records_as_integers(tmp_path, samples):
    header, row = (samples / OLD.rsplit("/", 1)[1]).read_text().splitlines()[:2]
    rows = (f"{i}{row[row.index(',') :]}" for i in range(40_000))
    (tmp_path / "big.csv").write_text("\n".join([header, *rows]) + "\n")
    out = run("convert", str(tmp_path / "big.csv"), "--to", str(tmp_path / "ds"), "--progress")
    assert out.returncode == 0 and "records=40,000" in out.stderr and "e+" not in out.stderr
    query = run("query", "--progress", str(tmp_path / "big.csv"), "caller=5300&numRecords=1")
    assert query.returncode == 0 and "records=40,000" in query.stderr


# Servers: each started here is stopped here; a port in use is one we hold.


def serve(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "cdrq", "serve", *args],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env={**os.environ, **(env or {})},
    )


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    if process.stderr is not None:
        process.stderr.close()


def held_port() -> socket.socket:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    return s


def test_serve_failures_come_before_serving(old, tls, tmp_path):
    common = ["--host", "127.0.0.1", "--user", "u", "--password", "p", "--permit", "127.0.0.1/32"]
    missing = run("serve", old, "--cert", str(tmp_path / "no.pem"), "--key", str(tls / "key.pem"), *common)
    assert failed(missing, 1, "--cert", "no.pem: no such file")
    with held_port() as held:
        port = str(held.getsockname()[1])
        busy = run("serve", old, "--self-signed", "--port", port, "--api-port", "0", *common)
        assert failed(busy, 1, f"--port {port}", f"127.0.0.1:{port}", "address already in use")
        listen = run("listen", "--host", "127.0.0.1", "--port", port, "--to", str(tmp_path / "ds"))
        assert failed(listen, 1, "address already in use")
    both = run("serve", old, "--self-signed", "--cert", str(tls / "cert.pem"), *common)
    assert failed(both, 2, "--self-signed", "not both")
    half = run("serve", old, "--cert", str(tls / "cert.pem"), *common)
    assert failed(half, 2, "--cert and --key together")
    # `--permit` takes one value: a second network is not read as an archive.
    swallowed = run("serve", "--self-signed", *common, "10.0.0.0/8", old)
    assert failed(swallowed, 2, "'10.0.0.0/8' is a network")
    assert failed(run("serve", old, "--self-signed", *common, "--permit", "10.0.0.0/33"), 2, "10.0.0.0/33")
    no_password = run("serve", old, "--self-signed", "--user", "u", env={"CDRQ_PASSWORD": ""})
    assert failed(no_password, 2, "CDRQ_PASSWORD")


def test_serve_takes_permits_and_the_password_from_the_environment(old, tls):
    import httpx
    from test_serve import client, free_port

    port = free_port()
    process = serve(old, "--cert", str(tls / "cert.pem"), "--key", str(tls / "key.pem"), "--host", "127.0.0.1",
                    "--port", str(port), "--api-port", "0", "--user", "u", "--permit", "10.0.0.0/8,127.0.0.1/32",
                    "--permit", "192.168.0.0/16", env={"CDRQ_PASSWORD": "from env"})  # fmt: skip
    try:
        ready, _, _ = select.select([process.stderr], [], [], 60)
        assert ready and "serving 3 records" in process.stderr.readline()
        with client(tls, auth=httpx.DigestAuth("u", "from env")) as c:
            for _ in range(100):  # the line comes just before uvicorn accepts
                try:
                    answer = c.get(f"https://127.0.0.1:{port}/cdrapi", params={"caller": "5300"})
                    break
                except httpx.ConnectError:
                    time.sleep(0.05)
        assert answer.status_code == 200 and answer.text.count("\n") == 4
    finally:
        stop(process)


@pytest.fixture(scope="module")
def pbx(tmp_path_factory, tls):
    from test_scan import csv_archive
    from test_serve import PASSWORD, USER, Running

    from cdrq.services import server

    directory = tmp_path_factory.mktemp("pbx")
    (directory / "a.csv").write_text(csv_archive(60))
    archive = server.open_archive(directory / "a.csv", user=USER, password=PASSWORD, permit=["127.0.0.1/32"])
    running = Running([server.LegacyApi(archive)], tls)
    running.user, running.password = USER, PASSWORD
    yield running
    running.stop()


def test_pull_says_which_window_and_takes_the_password_from_a_file(pbx, tls, tmp_path):
    (tmp_path / "secret").write_text(pbx.password + "\n")
    common = ["--user", pbx.user, "--ca", str(tls / "ca.pem"), "--to", str(tmp_path / "ds")]
    out = run("pull", pbx.urls[0], "--since", "2024-01-15", "--password-file", str(tmp_path / "secret"), *common)
    assert out.returncode == 0, out.stderr
    assert "cdrq: pull: fetching 2024-01-01 … 2024-01-31 (UTC)\n" in out.stderr
    assert "fetching 2024-02-01 … 2024-02-29" in out.stderr and '"written": 60' in out.stdout
    again = run("pull", pbx.urls[0], "--password-env", "PBX_SECRET", *common, env={"PBX_SECRET": pbx.password})
    assert again.returncode == 0 and "resuming where the last pull" in again.stderr
    fresh = run("pull", pbx.urls[0], *common[:-1], str(tmp_path / "b"), env={"CDRQ_PASSWORD": "wrong"})
    assert "pulling its whole history" in fresh.stderr and fresh.returncode == 1 and "HTTP 401" in fresh.stderr
    both = run("pull", pbx.urls[0], "--password", "x", "--password-env", "X", *common)
    assert failed(both, 2, "not allowed with")
    assert failed(run("pull", pbx.urls[0], "--password", "x", "--insecure", *common), 2, "--insecure", "not both")


def test_network_errors_name_the_host(tmp_path):
    with held_port() as held:
        port = held.getsockname()[1]
    out = run("pull", f"https://127.0.0.1:{port}", "--user", "u", "--password", "p", "--since", "2024-01-01",
              "--to", str(tmp_path / "ds"))  # fmt: skip
    assert out.returncode == 1 and f"cdrq: 127.0.0.1:{port}: " in out.stderr and "Traceback" not in out.stderr


@pytest.mark.parametrize(
    "args",
    [
        ("serve", OLD, "--request-timeout", "-1"),
        ("serve", OLD, "--header-timeout", "nan"),
        ("serve", OLD, "--lockout", "inf"),
        ("listen", "--port", "0", "--to", "ds", "--fold-every", "-5"),
    ],
)
def test_a_time_that_is_no_duration_is_a_usage_error(args):
    # A negative timeout closed every connection at once, NaN never.
    done = run(*args)
    assert done.returncode == 2 and "must be a finite number, zero or more" in done.stderr
    assert len(done.stderr.strip().splitlines()) <= 2  # usage line and the error, no traceback
