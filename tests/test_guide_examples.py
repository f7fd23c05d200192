"""The example queries of the vendor's CDR API guide (UCM6100/UCM6510
"Example Queries"; Queries 1, 2 and 5 as the public copies of the guide
print them), answered by `cdrq.cdrapi` over a fixture archive whose rows sit
on each query's edges."""

from __future__ import annotations

import polars as pl
import pytest

import cdrq

HOST = "https://192.168.254.200:8088/cdrapi?"
HEADER = (
    "AcctId,accountcode,src,dst,dcontext,clid,channel,dstchannel,lastapp,lastdata,start,answer,end,duration,"
    "billsec,disposition,amaflags,uniqueid,userfield,channel_ext,dstchannel_ext,service"
)
# AcctId, src, dst, start (UTC wall clock), billsec
CALLS = [
    (1, "5300", "5301", "2013-06-30 23:00:00", 8),
    (2, "5300", "5301", "2013-07-01 05:59:59", 60),  # 23:59:59 on June 30 in UTC-6
    (3, "5300", "6000", "2013-07-01 06:00:00", 61),  # midnight July 1 in UTC-6
    (4, "6350", "5123", "2013-07-15 12:00:00", 7),
    (5, "6399", "4000", "2013-07-20 12:00:00", 30),
    (6, "6400", "5000", "2013-07-31 12:00:00", 30),
    (7, "5301", "5300", "2013-08-01 05:59:59", 9),  # 23:59:59 on July 31 in UTC-6
    (8, "5300", "5", "2013-08-01 06:00:00", 8),
]


@pytest.fixture(scope="module")
def archive() -> pl.DataFrame:
    lines = [HEADER]
    for acct, src, dst, start, billsec in CALLS:
        lines.append(
            f'{acct},,{src},{dst},from-internal,"pn" <{src}>,SIP/{src}-0,SIP/{dst}-1,Dial,SIP/{dst},60,,'
            f"{start},{start},{start},{billsec + 2},{billsec},ANSWERED,DOCUMENTATION,{acct}.0,EXT,{src},{dst},s"
        )
    return cdrq.read(("\n".join(lines) + "\n").encode())


def accts(body: str, fmt: str = "ucm-csv") -> list[int]:
    return cdrq.read(body.encode(), format=fmt)["AcctId"].to_list()


def test_query_1_calls_from_5300_lasting_8_to_60_seconds_as_csv(archive):
    with_format = cdrq.cdrapi(archive, HOST + "format=CSV&caller=5300&minDur=8&maxDur=60")
    without = cdrq.cdrapi(archive, HOST + "caller=5300&minDur=8&maxDur=60")
    assert with_format == without  # csv is the default
    assert with_format.startswith(HEADER + "\n")
    assert accts(with_format) == [1, 2, 8]


def test_query_2_from_5300_or_6300_6399_to_extensions_starting_with_5_as_xml(archive):
    body = cdrq.cdrapi(archive, HOST + "format=XML&caller=5300,6300-6399&callee=5@")
    assert body.startswith('<?xml version="1.0" encoding="UTF-8"?>\n<cdr_root>')
    assert accts(body, "ucm-xml") == [1, 2, 4, 8]


def test_query_5_july_2013_central_time_200_at_a_time(archive):
    july = "startTime=2013-07-01T00:00:00-06:00&endTime=2013-07-31T23:59:59-06:00"
    assert accts(cdrq.cdrapi(archive, f"{HOST}{july}&numRecords=200&offset=0")) == [3, 4, 5, 6, 7]
    assert cdrq.cdrapi(archive, f"{HOST}{july}&numRecords=200&offset=200") == HEADER + "\n"
    # The guide's second URL misspells startTime: an unknown parameter, so
    # the UCM answers with the CSV header alone.
    typo = f"{HOST}s{july}&numRecords=200&offset=200"
    assert cdrq.cdrapi(archive, typo) == HEADER + "\n"
    with pytest.raises(cdrq.QueryError, match="sstartTime"):
        cdrq.query(archive, typo)
    pages = [accts(cdrq.cdrapi(archive, f"{HOST}{july}&numRecords=2&offset={o}")) for o in (0, 2, 4)]
    assert pages == [[3, 4], [5, 6], [7]]
