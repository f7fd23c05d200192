"""`cdrq listen`: records pushed in JSON or XML, split anywhere, several per
connection, survive a SIGKILL of the receiver and land exactly once."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

import cdrq
from cdrq.services.listen import Splitter, entries


def record(i: int) -> dict:
    minute = i % 1440
    return {
        "AcctId": str(i),
        "src": f"53{i % 100:02}",
        "dst": f"6{i % 7}",
        "start": f"2024-05-{1 + i % 28:02} {minute // 60:02}:{minute % 60:02}:00",
        "billsec": str(i % 90),
        "lastdata": 'SIP/x,"quoted" }{ <not a tag>',
        "session": f"s-{i}",
    }


def as_json(i: int) -> bytes:
    return json.dumps(record(i)).encode()


def as_xml(i: int) -> bytes:
    fields = "".join(f"<{k}>{v.replace('&', '&amp;').replace('<', '&lt;')}</{k}>" for k, v in record(i).items())
    return f"<cdr>{fields}</cdr>".encode()


def cut(data: bytes, points: list[int]) -> list[bytes]:
    points = sorted({p % (len(data) + 1) for p in points})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


@given(st.lists(st.integers(0, 10**6), max_size=40), st.sampled_from([as_json, as_xml]), st.integers(1, 30))
def test_splitter_cuts_whole_units_wherever_the_reads_end(points, encode, n):
    units = [encode(i) for i in range(n)]
    stream = b'<?xml version="1.0"?>\n'.join([b"", *[u + b"\r\n" for u in units]])
    splitter = Splitter()
    got = [u for piece in cut(stream, points) for u in splitter.feed(piece)]
    assert got == units
    assert splitter.rest() == b""


def test_garbage_is_kept_aside():
    splitter = Splitter()
    assert splitter.feed(b"hello " + as_json(1) + b" junk") == [as_json(1)]
    assert splitter.feed(b" {") == []
    assert splitter.rest() == b"hello junk{"  # whitespace between units is not kept


def test_a_torn_journal_entry_was_never_acknowledged():
    data = b"3\nabc5\nhello4\nxy"
    assert list(entries(data)) == [b"abc", b"hello"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(to, port, *extra) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "cdrq", "listen", "--host", "127.0.0.1", "--port", str(port), "--to", str(to)]
    proc = subprocess.Popen([*cmd, "--fold-every", "0.5", *extra], stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    proc.wait()
    raise AssertionError(f"cdrq listen did not start: {proc.args}")


def send(port: int, records: list[bytes], rng: random.Random, per_connection: int = 700) -> None:
    for k in range(0, len(records), per_connection):
        data = b"\n".join(records[k : k + per_connection]) + b"\n"
        with socket.create_connection(("127.0.0.1", port)) as s:
            for piece in cut(data, [rng.randrange(len(data)) for _ in range(50)]):
                s.sendall(piece)


@pytest.mark.parametrize("encode", [as_json, as_xml], ids=["json", "xml"])
def test_kill_9_mid_stream_loses_nothing_acknowledged_and_duplicates_nothing(tmp_path, encode):
    rng = random.Random(7)
    records = [encode(i) for i in range(10_000)]
    port, ds = free_port(), tmp_path / "ds"
    proc = start(ds, port)
    send(port, records[:6000], rng)
    time.sleep(0.3)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    journal = ds / "_incoming" / "journal"
    acknowledged = {json.loads(u)["AcctId"] if u[:1] == b"{" else u.split(b"<AcctId>")[1].split(b"<")[0].decode()
                    for u in entries(journal.read_bytes())} if journal.exists() else set()  # fmt: skip
    # Restart; the PBX flushes everything it buffered, the first 6000 again included.
    proc = start(ds, port)
    send(port, records, rng)
    time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    back = cdrq.read(ds)
    ids = back["AcctId"].to_list()
    assert len(ids) == len(set(ids)) == 10_000
    assert {str(i) for i in ids} >= acknowledged
    assert back.filter(back["AcctId"] == 4321).row(0, named=True)["lastdata"] == record(4321)["lastdata"]
    assert not (ds / "_incoming" / "unparsed").exists()


def test_http_post_and_portsip_webhook_at_least_once(tmp_path, samples):
    port, ds = free_port(), tmp_path / "ds"
    proc = start(ds, port, "--http")
    try:
        webhook = (samples / "portsip-webhook-call_start.json").read_bytes()
        with httpx.Client() as c:
            for _ in range(2):  # delivered twice
                assert c.post(f"http://127.0.0.1:{port}/cdr", content=webhook).status_code == 200
            assert c.post(f"http://127.0.0.1:{port}/", content=as_json(1) + as_json(2) + b"garbage").text == "OK\n"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    back = cdrq.read(ds)
    assert back.height == 3
    assert sorted(back["AcctId"].drop_nulls().to_list())[:2] == [1, 2]
    kept = list((ds / "_incoming" / "unparsed").iterdir())
    assert [p.read_bytes() for p in kept] == [b"garbage"]


def test_https_post_over_tls(tmp_path, tls):
    import ssl

    port, ds = free_port(), tmp_path / "ds"
    proc = start(ds, port, "--http", "--cert", str(tls / "cert.pem"), "--key", str(tls / "key.pem"))
    try:
        context = ssl.create_default_context(cafile=str(tls / "ca.pem"))
        with httpx.Client(verify=context) as c:
            body = b"".join(as_xml(i) for i in range(50))
            assert c.post(f"https://127.0.0.1:{port}/", content=body).status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    assert sorted(cdrq.read(ds)["AcctId"].to_list()) == list(range(50))
