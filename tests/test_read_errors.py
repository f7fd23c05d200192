"""Unreadable records: strict mode raises ParseError naming source, line,
column, reason and raw text; on_error="collect" loses nothing."""

from __future__ import annotations

import polars as pl
import pytest

import cdrq
from cdrq import _core

GOOD = (
    '1,,6039,6011,from-internal,x,c,d,Dial,"a,b",2015-11-10 17:58:47,,2015-11-10 17:58:51,4,0,'
    "NO ANSWER,D,1.1,I,1,2,s,n,,,,s1,1,DIAL,, "
)
# Column (1-based) of each field of GOOD.
COLUMN = {"AcctId": 1, "lastdata": 39, "start": 45, "end": 66, "duration": 86, "billsec": 88}


def bad(field: str, value: str) -> str:
    fields = {"AcctId": 0, "start": 10, "end": 12, "duration": 13, "billsec": 14}
    parts = GOOD.replace('"a,b"', "AB").split(",")
    parts[fields[field]] = value
    return ",".join(parts).replace("AB", '"a,b"')


CASES = [
    ("field-count", "1,2,3", 1, "expected 22, 31 or 32 fields"),
    ("acctid", bad("AcctId", "62a"), COLUMN["AcctId"], 'AcctId is not an integer: "62a"'),
    ("duration", bad("duration", "4.5"), COLUMN["duration"], 'duration is not an integer: "4.5"'),
    ("billsec", bad("billsec", "-"), COLUMN["billsec"], 'billsec is not an integer: "-"'),
    ("start", bad("start", "2015-02-29 10:00:00"), COLUMN["start"], "start is not a YYYY-MM-DD HH:MM:SS"),
    ("end", bad("end", "2015-11-10T17:58:51"), COLUMN["end"], "end is not a YYYY-MM-DD HH:MM:SS"),
    ("unterminated", GOOD.replace('"a,b"', '"a,b'), COLUMN["lastdata"], "unterminated quoted field"),
]


@pytest.mark.parametrize(("line", "column", "reason"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_strict_mode_names_line_column_reason_raw(line, column, reason):
    data = f"{GOOD}\n{GOOD}\n{line}\n{GOOD}\n".encode()
    with pytest.raises(cdrq.ParseError) as e:
        cdrq.read(data)
    err = e.value
    assert isinstance(err, cdrq.CdrqError) and isinstance(err, ValueError)
    assert (err.source, err.line, err.column) == ("<bytes>", 3, column)
    assert err.reason.startswith(reason)
    assert err.raw == line
    assert f"<bytes>:3:{column}: {reason}" in str(err)


def test_invalid_utf8_is_rejected_at_its_byte():
    data = GOOD.encode().replace(b"DIAL", b"DI\xffL") + b"\n" + GOOD.encode()
    with pytest.raises(cdrq.ParseError) as e:
        cdrq.read(data)
    assert (e.value.line, e.value.reason) == (1, "invalid UTF-8")
    assert e.value.column == GOOD.index("DIAL") + 3
    df, rejects = cdrq.read(data, on_error="collect")
    assert (df.height, rejects.height) == (1, 1)
    assert "DI\ufffdL" in rejects["raw"][0]


def test_collect_returns_every_record_once():
    lines = [GOOD] + [c[1] for c in CASES] + [GOOD, "", GOOD]
    data = "\r\n".join(lines).encode()
    df, rejects = cdrq.read(data, on_error="collect")
    assert df.height == 3
    assert rejects.height == len(CASES)
    assert df.height + rejects.height == sum(1 for line in lines if line)
    assert rejects.columns == ["source", "line", "column", "reason", "raw"]
    assert rejects["line"].to_list() == list(range(2, 2 + len(CASES)))
    assert rejects["raw"].to_list() == [c[1] for c in CASES]
    for reason, case in zip(rejects["reason"], CASES, strict=True):
        assert reason.startswith(case[3])


def test_collect_with_many_chunks_matches_one_chunk():
    lines = [GOOD if i % 5 else CASES[i % len(CASES)][1] for i in range(400)]
    data = "\n".join(lines).encode()
    one = _core.read(data, on_error="collect", threads=1)
    many = _core.read(data, on_error="collect", threads=2, chunk_bytes=700)
    assert one[1] == many[1]
    assert pl.DataFrame(one[0]).equals(pl.DataFrame(many[0]))


def test_multi_line_record_error_reports_the_line_of_the_field():
    row = GOOD.replace('"a,b"', '"a\nb"').replace("2015-11-10 17:58:51", "2015-11-10 25:00:00")
    with pytest.raises(cdrq.ParseError) as e:
        cdrq.read(f"{GOOD}\n{row}\n".encode())
    assert (e.value.line, e.value.column) == (3, row.split("\n")[1].index("2015-11-10 25") + 1)
    assert e.value.raw == row


def test_header_errors():
    with pytest.raises(cdrq.ParseError, match="duplicate column"):
        cdrq.read(b"AcctId,src,dst,src\n1,2,3,4\n")
    with pytest.raises(cdrq.ParseError, match="expected 3 fields as in the header"):
        cdrq.read(b"AcctId,src,dst\n1,2\n")


def test_a_panic_in_the_core_arrives_as_cdrq_error():
    with pytest.raises(cdrq.CdrqError, match=r"internal error.*deliberate test panic"):
        _core._panic_for_test()


@pytest.mark.parametrize("threads", [-1, 1.5, True, "2"])
def test_a_thread_count_that_is_no_count_is_a_cdrq_error(threads):
    # The core met -1 as an OverflowError; a bool would have been 1 thread.
    with pytest.raises(cdrq.CdrqError, match="threads must be a non-negative integer"):
        cdrq.read(b"AcctId,src\n1,5300\n", threads=threads)


def test_a_huge_thread_count_is_capped_not_spawned(samples):
    # 2**40 threads hung the machine; past MAX_THREADS a count means "many".
    archive = samples / "ucm6xxx-fw1.0.11-cdrapi.csv"
    assert cdrq.read(archive, threads=2**40).equals(cdrq.read(archive))
    assert cdrq.scan(archive, threads=2**40).collect().equals(cdrq.read(archive))


def test_rejects_on_one_long_line_name_their_character_columns():
    """The UCM's JSON is one line: each reject's column was counted from the
    line's start (40 000 rejects took 17 s); it is now counted on from the
    one before, and still in characters, not bytes."""
    good = '{"AcctId": "1", "src": "5300", "caller_name": "Zoë Ünal"}'
    bad = '{"AcctId": "x%d", "src": "5300"}'
    records = [good, bad % 1, good, good, bad % 2, bad % 3]
    line = '{"cdr": [' + ", ".join(records) + "]}"
    frame, rejects = cdrq.read(("\n\n" + line).encode(), on_error="collect")
    assert frame.height == 3
    starts = [line.index(f'"x{k}"') + 1 for k in (1, 2, 3)]  # the bad value's first character
    assert rejects.select("line", "column").rows() == [(3, s + 1) for s in starts]
    # Past a line end the column starts again.
    two = line.replace(", " + good + ", " + bad % 2, ",\n" + good + ", " + bad % 2)
    frame, rejects = cdrq.read(two.encode(), on_error="collect")
    second = two.index("\n") + 1
    at = [two.index(f'"x{k}"') + 1 for k in (1, 2, 3)]
    assert rejects.select("line", "column").rows() == [(1, at[0] + 1), (2, at[1] - second + 1), (2, at[2] - second + 1)]


def test_an_error_message_shows_part_of_a_huge_record():
    data = b'"' + b"A" * 100_000 + b"\n"
    with pytest.raises(cdrq.ParseError) as e:
        cdrq.read(data)
    assert len(str(e.value)) < 1000 and "more bytes" in str(e.value)
    assert len(e.value.raw) >= 100_000
