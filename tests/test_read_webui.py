"""The UCM web UI "Download" CSV (csv.rs with the web UI dialect, webui.rs):
labels in any subset, order and case; `cdr` → cdr_kind and leg; UI times."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

import cdrq

UTC = timezone.utc


def sample_parts(samples):
    text = (samples / "ucm63xx-webui-export-columns.txt").read_text()
    full, reduced = text.split("# A reduced export")
    labels = [line for line in full.splitlines() if line and not line.startswith("#")]
    reduced_csv = reduced.split("\n", 1)[1]
    return labels, reduced_csv


def test_reduced_export_sample(samples):
    _, csv = sample_parts(samples)
    df = cdrq.read(csv.encode())  # sniffed as ucm-webui-csv
    rows = df.select(
        "cdr_kind", "leg", "session", "call_type", "src", "dst", "start", "answer", "billsec",
        "disposition", "dstchannel_ext", "action_type",
    ).rows()  # fmt: skip
    assert rows == [
        ("main", 0, "s1", "Inbound", "01001234567", "6514", datetime(2026, 9, 28, 10, 0, tzinfo=UTC), None, 0,
         "ANSWERED", None, "QUEUE[6514]"),
        ("sub", 1, "s1", "Inbound", "01001234567", "6006", datetime(2026, 9, 28, 10, 0, 5, tzinfo=UTC),
         datetime(2026, 9, 28, 10, 0, 20, tzinfo=UTC), 95, "ANSWERED", "6006", "DIAL"),
    ]  # fmt: skip


EXPECTED_FIELD = {
    "Account Code": "accountcode", "Caller Number": "src", "Caller NAT": "caller_nat",
    "Callee Number": "dst", "Callee NAT": "callee_nat", "Context": "dcontext", "Caller ID": "clid",
    "Source Channel": "channel", "Dest. Channel": "dstchannel", "Last app.": "lastapp",
    "Last data": "lastdata", "Start Time": "start", "Answer Time": "answer", "End Time": "end",
    "Call Time": "duration", "Talk Time": "billsec", "Call Status": "disposition",
    "AMA Flags": "amaflags", "Unique ID": "uniqueid", "Call Type": "call_type",
    "Dest Channel Extension": "dstchannel_ext", "Caller Name": "caller_name", "Answered by": "dstanswer",
    "Session": "session", "Premier Caller": "premier_caller", "Action Type": "action_type",
    "Source Trunk Name": "src_trunk_name", "Destination Trunk Name": "dst_trunk_name",
}  # fmt: skip


def test_every_label_of_the_full_set_maps_to_its_field(samples):
    labels, _ = sample_parts(samples)
    assert set(labels) == set(EXPECTED_FIELD)
    values = {
        "Start Time": "2026-09-28 10:00:00", "Answer Time": "9/28/2026 10:00:05 AM",
        "End Time": "9/28/2026 10:01:40 AM", "Call Time": "0:01:40", "Talk Time": "95",
    }  # fmt: skip
    row = [values.get(label, f"v-{i}") for i, label in enumerate(labels)]
    df = cdrq.read((",".join(labels) + "\n" + ",".join(row) + "\n").encode(), format="ucm-webui-csv")
    got = df.row(0, named=True)
    for i, label in enumerate(labels):
        field = EXPECTED_FIELD[label]
        if label not in values:
            assert got[field] == f"v-{i}", label
    assert got["start"] == datetime(2026, 9, 28, 10, 0, tzinfo=UTC)
    assert got["answer"] == datetime(2026, 9, 28, 10, 0, 5, tzinfo=UTC)
    assert got["end"] == datetime(2026, 9, 28, 10, 1, 40, tzinfo=UTC)
    assert (got["duration"], got["billsec"]) == (100, 95)
    assert (got["cdr_kind"], got["leg"]) == ("record", 0)  # no `cdr` column


def test_any_order_and_letter_case_and_legs_count_from_each_main():
    text = (
        "CALLER NUMBER,cdr,talk time,SESSION\n"
        "100,main_cdr,0:00:10,a\n100,sub_cdr,5,a\n100,sub_cdr,5,a\n"
        "200,main_cdr,1,b\n200,sub_cdr,1,b\n"
    )
    df = cdrq.read(text.encode())
    assert df["cdr_kind"].to_list() == ["main", "sub", "sub", "main", "sub"]
    assert df["leg"].to_list() == [0, 1, 2, 0, 1]
    assert df["billsec"].to_list() == [10, 5, 5, 1, 1]
    assert df["src"].to_list() == ["100"] * 3 + ["200"] * 2


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ("x_cdr,1,2026-09-28 10:00:00", 'cdr is not main_cdr or sub_cdr: "x_cdr"'),
        ("main_cdr,1:5,2026-09-28 10:00:00", 'billsec is not seconds or H:MM:SS: "1:5"'),
        ("main_cdr,1,13/28/2026 10:00:00 AM", "start is not a YYYY-MM-DD HH:MM:SS time"),
    ],
)
def test_bad_values_are_rejected(row, reason):
    data = f"cdr,Talk Time,Start Time\n{row}\nmain_cdr,2,2026-09-28 10:00:00\n".encode()
    with pytest.raises(cdrq.ParseError) as e:
        cdrq.read(data, format="ucm-webui-csv")
    assert e.value.line == 2 and e.value.reason.startswith(reason)
    df, rejects = cdrq.read(data, format="ucm-webui-csv", on_error="collect")
    assert (df.height, rejects.height) == (1, 1)


def test_header_of_no_known_label_is_an_error():
    with pytest.raises(cdrq.ParseError, match="web UI column labels"):
        cdrq.read(b"foo,bar\n1,2\n", format="ucm-webui-csv")


# Property: a random subset of the labels, in random order and letter case,
# with rows of main/sub records, reads back as written.

TEXT_LABELS = [
    label for label, field in EXPECTED_FIELD.items() if field not in ("start", "answer", "end", "duration", "billsec")
]
SAFE = st.text(alphabet=st.sampled_from("ab Zé李;<>@/-0123456789"), min_size=1, max_size=8)


def case_variant(label: str, how: int) -> str:
    return [label, label.upper(), label.lower()][how % 3]


@given(
    st.lists(st.sampled_from(TEXT_LABELS), min_size=1, max_size=8, unique=True),
    st.lists(st.tuples(st.booleans(), st.integers(0, 10**5), st.lists(SAFE, min_size=8, max_size=8)), max_size=12),
    st.integers(0, 2),
    st.booleans(),
)
def test_random_subsets_round_trip(labels, rows, how, us_times):
    header = ["cdr", "Talk Time", "Start Time", *labels]
    lines = [",".join(case_variant(h, how) for h in header)]
    expected = []
    legs = 0
    for is_sub, talk, values in rows:
        legs = legs + 1 if is_sub else 0
        start = "9/28/2026 1:02:03 PM" if us_times else "2026-09-28 13:02:03"
        hms = f"{talk // 3600}:{talk // 60 % 60:02}:{talk % 60:02}" if us_times else str(talk)
        lines.append(",".join(["sub_cdr" if is_sub else "main_cdr", hms, start, *values[: len(labels)]]))
        row = {"cdr_kind": "sub" if is_sub else "main", "leg": legs, "billsec": talk}
        row.update({EXPECTED_FIELD[label]: v for label, v in zip(labels, values, strict=False)})
        expected.append(row)
    df = cdrq.read(("\r\n".join(lines) + "\r\n").encode(), format="ucm-webui-csv")
    assert df.height == len(rows)
    for got, want in zip(df.iter_rows(named=True), expected, strict=True):
        assert {k: got[k] for k in want} == want
        assert got["start"] == datetime(2026, 9, 28, 13, 2, 3, tzinfo=UTC)


# Older firmware: the UCM6510 1.0.2.5 manual lists the UI's CDR fields as
# Start Time, Call From ("John Doe"<6012>), Call To, Call Time (0:00:10),
# Talk Time, Status; the UCM6100 1.0.9.25 download adds Context, Source
# Channel, Dest Channel (an FXO call: empty Call From, Call To "s").
OLD_UI = (
    b"Start Time,Call From,Call To,Call Time,Talk Time,Status\n"
    b'2013-03-27 16:47:03,"John Doe"<6012>,6005,0:00:10,0:00:08,ANSWERED\n'
    b'2013-03-27 16:48:00,"""Jane Roe""<6013>",6005,0:00:04,0:00:00,NO ANSWER\n'
    b"2013-03-27 16:49:00,,s,0:00:02,0:00:00,FAILED\n"
)


def test_firmware_1_0_2_5_labels():
    df = cdrq.read(OLD_UI)  # sniffed as ucm-webui-csv by its labels
    assert df.select("start", "clid", "dst", "duration", "billsec", "disposition").rows() == [
        (datetime(2013, 3, 27, 16, 47, 3, tzinfo=UTC), '"John Doe"<6012>', "6005", 10, 8, "ANSWERED"),
        (datetime(2013, 3, 27, 16, 48, tzinfo=UTC), '"Jane Roe"<6013>', "6005", 4, 0, "NO ANSWER"),
        (datetime(2013, 3, 27, 16, 49, tzinfo=UTC), None, "s", 2, 0, "FAILED"),
    ]


def test_call_from_gives_the_caller_number_and_name():
    # Without a Caller Number column the caller ID is the only source of src,
    # so that `caller=6012` matches these downloads too.
    df = cdrq.read(OLD_UI)
    assert df.select("src", "caller_name").rows() == [("6012", "John Doe"), ("6013", None), (None, None)]
    assert cdrq.query(df, "caller=6012")["clid"].to_list() == ['"John Doe"<6012>']
    lf = cdrq.scan(OLD_UI)
    assert cdrq.query(lf, "caller=6013").collect()["src"].to_list() == ["6013"]
    # A download that has Caller Number keeps it as written.
    both = b'Caller Number,Call From\n7000,"John Doe"<6012>\n'
    assert cdrq.read(both).select("src", "caller_name").rows() == [("7000", None)]


def test_firmware_1_0_2_5_labels_collect_counts_every_row():
    data = OLD_UI + b"2013-03-27 16:50:00,6012,6005,ten,0:00:00,ANSWERED\n"
    with pytest.raises(cdrq.ParseError) as e:
        cdrq.read(data)
    assert (e.value.line, e.value.reason) == (5, 'duration is not seconds or H:MM:SS: "ten"')
    df, rejects = cdrq.read(data, on_error="collect")
    assert (df.height, rejects.height) == (3, 1)


def test_older_download_labels():
    header = "Call From,Call To,Context,Source Channel,Dest Channel,Status"
    row = "6012,6005,from-internal,SIP/6012-0001,SIP/6005-0002,BUSY"
    got = cdrq.read(f"{header}\n{row}\n".encode()).row(0, named=True)
    assert {k: got[k] for k in ("clid", "dst", "dcontext", "channel", "dstchannel", "disposition")} == {
        "clid": "6012", "dst": "6005", "dcontext": "from-internal", "channel": "SIP/6012-0001",
        "dstchannel": "SIP/6005-0002", "disposition": "BUSY",
    }  # fmt: skip


def test_gxw_caller_id_label():
    # The GXW450x report (same firmware family) names the caller ID CallerID.
    data = b'Caller Number,CallerID,Callee Number\n6012,"John Doe" <6012>,6005\n'
    assert cdrq.read(data).select("src", "clid", "dst").rows() == [("6012", '"John Doe" <6012>', "6005")]


def test_call_from_and_caller_id_in_one_header_name_one_column_twice():
    with pytest.raises(cdrq.ParseError, match="duplicate column"):
        cdrq.read(b"Call From,Caller ID,Call To\n1,2,3\n", format="ucm-webui-csv")
