"""`cdrq pull` against `cdrq serve` over loopback TLS: the dataset equals
the archive, for both APIs; an interrupted pull resumes with no gap and no
duplicate; recordings arrive byte for byte."""

from __future__ import annotations

import datetime as dt
import json
import shutil

import polars as pl
import pytest
from test_dataset import sorted_rows
from test_scan import csv_archive
from test_serve import PASSWORD, USER, Running

import cdrq
from cdrq.services import server
from cdrq.services.pull import PullError, months, pull

UNTIL = dt.date(2024, 3, 31)


@pytest.fixture(scope="module")
def served(tmp_path_factory, samples, tls):
    directory = tmp_path_factory.mktemp("archive")
    (directory / "a.csv").write_text(csv_archive(450))
    shutil.copy(samples / "ucm6xxx-fw1.0.11-cdrapi-transfer.json", directory / "b.json")
    root = directory / "recordings" / "monitor" / "2016-04"
    root.mkdir(parents=True)
    (root / "auto-1461920017-1000-1001.wav").write_bytes(b"RIFF" + bytes(range(256)) * 40)
    archive = server.open_archive(
        [directory / "a.csv", directory / "b.json"],
        user=USER,
        password=PASSWORD,
        permit=["127.0.0.1/32"],
        recordings=directory / "recordings",
    )
    run = Running([server.LegacyApi(archive), server.NewApi(archive)], tls)
    run.archive = archive
    yield run
    run.stop()


def pulled(served, tls, to, **kw):
    return pull(served.urls[kw.pop("which", 0)], to, user=USER, password=PASSWORD, since="2016-04-01", until=UNTIL,
                ca=str(tls / "ca.pem"), page_size=50, **kw)  # fmt: skip


@pytest.mark.parametrize("which", [0, 1], ids=["legacy", "new"])
def test_pull_gives_the_archive(served, tls, tmp_path, which):
    counts = pulled(served, tls, tmp_path / "ds", which=which, recordings=True)
    assert counts["written"] == served.archive.frame.height
    assert sorted_rows(cdrq.read(tmp_path / "ds")).equals(sorted_rows(served.archive.frame))
    wav = tmp_path / "ds" / "_recordings" / "auto-1461920017-1000-1001.wav"
    assert wav.read_bytes() == b"RIFF" + bytes(range(256)) * 40
    again = pulled(served, tls, tmp_path / "ds", which=which, recordings=True)
    assert (again["written"], again["recordings"]) == (0, 0)


def test_interrupted_pull_resumes_without_gap_or_duplicate(served, tls, tmp_path):
    common = {"user": USER, "password": PASSWORD, "until": UNTIL, "ca": str(tls / "ca.pem"), "page_size": 50}
    first = pull(served.urls[0], tmp_path / "ds", since="2024-01-01", max_pages=4, **common)
    assert first["pages"] == 4  # January's one page, then three of February
    state = json.loads((tmp_path / "ds" / "_cdrq_pull_state.json").read_text())[served.urls[0]]
    assert state == {"month": "2024-02", "offset": 150}
    rest = pull(served.urls[0], tmp_path / "ds", **common)
    assert rest["pages"] == 7  # resumed at offset 150: 257 more records in six pages, then March
    expected = served.archive.frame.filter(cdrq.read(tmp_path / "ds")["start"].min() <= pl.col("start"))
    back = cdrq.read(tmp_path / "ds")
    assert back.height == expected.height == 450
    assert sorted_rows(back).equals(sorted_rows(expected))


def test_tls_is_verified_and_bad_passwords_fail(served, tmp_path):
    with pytest.raises(PullError):
        pull(served.urls[0], tmp_path / "a", user=USER, password=PASSWORD, since="2024-01-01", until=UNTIL)
    with pytest.raises(PullError, match="401"):
        pull(
            served.urls[0], tmp_path / "b", user=USER, password="wrong", since="2024-01-01", until=UNTIL, insecure=True
        )
    with pytest.raises(PullError, match="login refused"):
        pull(
            served.urls[1], tmp_path / "c", user=USER, password="wrong", since="2024-01-01", until=UNTIL, insecure=True
        )


def test_months_are_utc_calendar_months():
    got = list(months(dt.date(2023, 12, 5), dt.date(2024, 2, 1)))
    assert [m for m, _, _ in got] == ["2023-12", "2024-01", "2024-02"]
    assert got[1][1:] == ("2024-01-01T00:00:00+00:00", "2024-01-31T23:59:59+00:00")
    assert got[2][2] == "2024-02-29T23:59:59+00:00"


def test_rate_limits_are_waited_out():
    import httpx

    from cdrq.services.pull import send

    answers = iter([429, 503, 200])

    def handler(request):
        status = next(answers)
        return httpx.Response(status, headers={"retry-after": "0"} if status != 200 else {}, text="ok")

    with httpx.Client(transport=httpx.MockTransport(handler)) as c:
        assert send(lambda: c.get("https://pbx/cdrapi")).text == "ok"
    with httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(429, headers={"retry-after": "0"}))) as c:
        with pytest.raises(PullError, match="HTTP 429"):
            send(lambda: c.get("https://pbx/cdrapi"), attempts=2)


def test_a_stale_cookie_logs_in_again(served, tls):
    import ssl

    import httpx

    from cdrq.services.pull import NewApiClient

    with httpx.Client(verify=ssl.create_default_context(cafile=str(tls / "ca.pem"))) as http:
        client = NewApiClient(http, served.urls[1], USER, PASSWORD)
        client.cookie = "expired-or-forged"
        page = client.cdrapi({"format": "json", "numRecords": 2})
    assert page.startswith(b'{"cdr_root"') and client.cookie != "expired-or-forged"


def test_a_pbx_that_ignores_offset_does_not_loop_forever(tls, tmp_path):
    page = cdrq.render(cdrq.read(csv_archive(50).encode()), "json").encode()
    calls = []

    async def same_page(scope, receive, send):
        if scope["type"] != "http":
            return
        calls.append(scope["query_string"])
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": page})

    run = Running([same_page], tls)
    try:
        counts = pull(run.urls[0], tmp_path / "ds", user=USER, password=PASSWORD, since="2024-01-01",
                      until=dt.date(2024, 1, 31), api="legacy", ca=str(tls / "ca.pem"), page_size=50)  # fmt: skip
    finally:
        run.stop()
    assert counts["pages"] == 1 and len(calls) == 2  # the second, identical page ends the month
    assert counts["written"] == 50
