"""`cdrq listen` against attackers and careless PBXs, beyond test_listen:
two receivers on one dataset, a crash that leaves a fold's bookkeeping
torn, many connections from one peer, noise that would grow the unparsed
index without bound, a UTF-8 BOM, half a record then a disconnect.
Loopback only; every wait is bounded."""

from __future__ import annotations

import contextlib
import os
import select
import socket
import stat
import time

import httpx
import pytest
from test_listen import as_json, as_xml, journaled, kept_aside, running, wait_for

import cdrq
from cdrq._core import CdrqError
from cdrq.services import listen
from cdrq.services.listen import Aside, Budget, Journal, Splitter


def test_a_second_receiver_on_the_same_dataset_is_refused(tmp_path):
    # Two journals on one directory: one's fold renames the file the other
    # still appends to, and what the other acknowledged afterwards is lost.
    ds = tmp_path / "ds"
    first = Journal(ds)
    with pytest.raises(CdrqError, match="another"):
        Journal(ds)
    first.append([as_json(1)])
    assert first.fold() == 1
    first.close()
    Journal(ds).close()  # free again once the first is gone


def test_a_torn_fold_tries_record_does_not_stop_the_restart(tmp_path):
    # A kill (or power loss) while the tries record is rewritten leaves it empty.
    ds = tmp_path / "ds"
    incoming = ds / "_incoming"
    incoming.mkdir(parents=True)
    (incoming / "journal.folding").write_bytes(b"%d\n%s" % (len(as_json(1)), as_json(1)))
    (incoming / "journal.folding.tries").write_text("")
    journal = Journal(ds)
    assert journal.fold() == 1
    journal.close()
    assert cdrq.read(ds)["AcctId"].to_list() == [1]


def test_the_new_journal_file_is_made_durable_in_its_directory(tmp_path, monkeypatch):
    # fsync of a file does not make its directory entry durable: after the
    # fold renames the journal, entries fsynced into the new file could
    # vanish with it at a power loss unless the directory is fsynced too.
    ds = tmp_path / "ds"
    journal = Journal(ds)
    journal.append([as_json(1)])
    synced: list[str] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        synced.append("dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    journal.fold()  # renames the journal and opens a new one
    journal.append([as_json(2)])
    journal.close()
    assert "dir" in synced[: synced.index("file")]  # before the new entry counts as acknowledged


# --- noise cannot grow unparsed/ without bound ---------------------------------


def test_the_unparsed_index_counts_against_the_limit(tmp_path):
    # Tiny pieces each cost an index line of ~100 bytes: past the limit the
    # lines must stop too, else a peer fills the disk with index lines.
    directory = tmp_path / "_incoming"
    budget = Budget(directory / "unparsed", 10_000)
    aside = Aside(directory, "tcp", "198.51.100.7", budget)
    for _ in range(2000):
        aside.write([(b"x", "noise"), (b"{}", "no CDR: JSON that holds no CDR record")])
    unparsed = directory / "unparsed"
    on_disk = sum(p.stat().st_size for p in unparsed.iterdir())
    assert on_disk <= 10_000


def test_a_connection_sending_noise_is_closed_past_the_unparsed_limit_too(tmp_path):
    # Past --max-unparsed-mib the noise is no longer kept; the connection
    # must still be closed after MAX_ASIDE bytes of it.
    ds = tmp_path / "ds"
    with running(ds, "--fold-every", "60", "--max-unparsed-mib", "1") as (port, _proc):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(b"noise " * 200_000)  # 1.2 MB: the limit is spent
        assert wait_for(lambda: any(line.get("kept") is False for line in kept_aside(ds)), 10)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            closed = False
            try:
                for _ in range(50):  # 3 MB
                    s.sendall(b"noise " * 10_000)
                s.settimeout(5)
                closed = s.recv(1) == b""
            except OSError as e:  # reset: closed with our noise unread
                closed = not isinstance(e, TimeoutError)
        assert closed, "the receiver took noise past MAX_ASIDE without closing"


# --- many connections ------------------------------------------------------------


def closed_within(s: socket.socket, seconds: float) -> bool:
    s.settimeout(seconds)
    try:
        return s.recv(1) == b""
    except TimeoutError:
        return False
    except OSError:  # reset
        return True


def test_one_peer_cannot_hold_every_connection(tmp_path):
    # Each connection costs a descriptor and up to MAX_RECORD of buffer: a
    # peer opening thousands must exhaust neither; past its share the
    # receiver closes new ones, and serves again once it lets go.
    ds = tmp_path / "ds"
    with running(ds, "--fold-every", "60") as (port, proc):
        # One more than its share (the start-up probe may still count for a
        # moment, so which one is closed is not fixed): the receiver never
        # sends over TCP, so a socket that turns readable was closed.
        held = [
            socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(listen.MAX_PEER_CONNECTIONS + 1)
        ]
        try:
            closed, _, _ = select.select(held, [], [], 5)
            assert closed and all(closed_within(s, 1) for s in closed)
            assert len(held) - len(closed) <= listen.MAX_PEER_CONNECTIONS
            assert len(os.listdir(f"/proc/{proc.pid}/fd")) < 32 + listen.MAX_PEER_CONNECTIONS
        finally:
            for s in held:
                s.close()
        assert wait_for(lambda: len(os.listdir(f"/proc/{proc.pid}/fd")) < 32, 5)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(as_json(1))
        assert wait_for(lambda: journaled(ds) == [as_json(1)], 5)


# --- careless PBXs -----------------------------------------------------------------


def test_a_utf8_bom_is_no_noise():
    bom = b"\xef\xbb\xbf"
    stream = bom + as_json(1) + b"\n" + bom + as_xml(2)
    for cut_at in range(1, 4):  # a read boundary inside the BOM
        splitter = Splitter()
        units = splitter.feed(stream[:cut_at]) + splitter.feed(stream[cut_at:]) + splitter.end()
        assert units == [as_json(1), as_xml(2)]
        assert splitter.take_aside() == []


def test_an_http_body_with_a_bom_is_stored_with_200(tmp_path):
    ds = tmp_path / "ds"
    with running(ds, "--http") as (port, _proc):
        r = httpx.post(f"http://127.0.0.1:{port}/", content=b"\xef\xbb\xbf" + as_json(1), timeout=10)
        assert r.status_code == 200, r.text
    assert cdrq.read(ds)["AcctId"].to_list() == [1]
    assert kept_aside(ds) == []


@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b""])
def test_a_record_then_half_a_record_then_a_disconnect(tmp_path, newline):
    # The whole record lands; the half is kept aside (never journaled).
    ds = tmp_path / "ds"
    half = as_json(2)[: len(as_json(2)) // 2]
    with running(ds, "--fold-every", "60") as (port, _proc):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(as_json(1) + newline + half)
        unparsed = ds / "_incoming" / "unparsed"
        assert wait_for(lambda: b"".join(p.read_bytes() for p in unparsed.glob("*.bin")) == half, 5)
    assert cdrq.read(ds)["AcctId"].to_list() == [1]
    assert [line["why"] for line in kept_aside(ds)] == ["json: incomplete at the end of the stream"]


# --- HTTP: slow or lying senders ----------------------------------------------------


def test_http_headers_sent_slowly_are_cut_off(tmp_path):
    # A slowloris holds a connection (a descriptor, a slot) by never
    # finishing its headers; uvicorn has no deadline for the first request.
    ds = tmp_path / "ds"
    with running(ds, "--http") as (port, _proc):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\n")
            started = time.monotonic()
            cut = False
            while not cut and time.monotonic() - started < listen.HEADERS_S + 3:
                with contextlib.suppress(OSError):
                    s.sendall(b"X")
                cut = closed_within(s, 0.5)
            assert cut and time.monotonic() - started >= listen.HEADERS_S - 1
        assert httpx.post(f"http://127.0.0.1:{port}/", content=as_json(1), timeout=10).status_code == 200


def test_a_latin1_pbx_is_stored_with_its_encoding(tmp_path):
    # A caller name in Latin-1 (\xe9 is é): invalid UTF-8. By default the
    # unit is refused and kept aside verbatim; with --encoding latin-1 it
    # is stored, as UTF-8.
    unit = as_json(1).replace(b'"src": "5301"', b'"src": "5301", "caller_name": "Jos\xe9"')
    for extra, stored in (((), []), (("--encoding", "latin-1"), ["José"])):
        ds = tmp_path / f"ds{len(extra)}"
        with running(ds, *extra) as (port, _proc):
            with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                s.sendall(unit + b"\n")
            assert wait_for(lambda: kept_aside(ds) or list(ds.rglob("*.parquet")), 5)  # noqa: B023
        names = cdrq.read(ds)["caller_name"].to_list() if list(ds.rglob("*.parquet")) else []
        assert names == stored
        assert [piece["why"].startswith("no CDR: not JSON") for piece in kept_aside(ds)] == ([] if stored else [True])


def test_an_unknown_encoding_or_one_units_cannot_be_cut_in_is_refused_at_the_start(tmp_path):
    with pytest.raises(CdrqError, match="unknown encoding"):
        listen.Listener(tmp_path / "ds", encoding="klingon")
    # Units are cut before they are decoded: in Shift_JIS a character's
    # second byte can be `[` or `{`, and UTF-16 writes no ASCII at all.
    for encoding in ("shift_jis", "utf-16le", "big5"):
        with pytest.raises(CdrqError, match="one byte a character"):
            listen.Listener(tmp_path / "ds", encoding=encoding)
    assert all(listen.splits_as_ascii(e) for e in ("utf8", "utf8-lossy", "latin-1", "windows-1252", "iso-8859-2"))


def test_refused_connections_are_said_once_a_minute_per_sender(tmp_path, capsys):
    # A flood of connections from outside --permit (or past the cap) must
    # not flood stderr: a line per sender and minute.
    listener = listen.Listener(tmp_path / "ds")
    try:
        for _ in range(1000):
            listener.refuse("10.0.0.1", "not in --permit")
        listener.refuse("10.0.0.2", "not in --permit")
        lines = capsys.readouterr().err.splitlines()
        assert [line.split(" (")[0] for line in lines] == [
            "cdrq: listen: refused a TCP connection from 10.0.0.1",
            "cdrq: listen: refused a TCP connection from 10.0.0.2",
        ]
        listener.refusals["10.0.0.1"] -= listen.REFUSALS_S  # a minute later
        listener.refuse("10.0.0.1", "not in --permit")
        assert capsys.readouterr().err.count("10.0.0.1") == 1
    finally:
        listener.journal.close()


def test_one_http_sender_cannot_hold_every_connection(tmp_path):
    # As over TCP: past its share a sender's new connections are closed
    # (and the PBX's own requests are still answered).
    ds = tmp_path / "ds"
    with running(ds, "--http") as (port, _proc):
        share = listen.MAX_PEER_HTTP_CONNECTIONS
        held = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(share + 1)]
        try:
            closed, _, _ = select.select(held, [], [], 4)  # before the 5 s header deadline
            assert closed and all(closed_within(s, 1) for s in closed)
            assert len(held) - len(closed) <= share
        finally:
            for s in held:
                s.close()
        assert wait_for(lambda: httpx.post(f"http://127.0.0.1:{port}/", content=as_json(1)).status_code == 200, 10)
