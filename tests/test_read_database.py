"""`cdrq.read_database`: the `cdr` table of a CDR database (python/cdrq/database.py).

The tables are SQLite files built here in the layouts Asterisk's and
FreePBX's sources give (SQLite takes their MySQL/PostgreSQL column types):
- FreePBX `asteriskcdrdb.cdr`: Asterisk's MySQL `cdr` table (`calldate`
  first, `linkedid, peeraccount, sequence`) plus the columns FreePBX/cdr
  install.php adds (`did` varchar(50), `recordingfile` varchar(255),
  `cnum, cnam, outbound_cnum, outbound_cnam, dst_cnam` varchar(40)), as in
  the `asteriskcdrdb` dump of IssabelFoundation/firstboot
  compat-dbscripts/01-asteriskcdrdb.sql (amaflags int).
- cdr_pgsql: asterisk contrib/scripts/postgres_cdr.sql (`AcctId BIGSERIAL`,
  `calldate timestamp with time zone`, amaflags integer); cdr_pgsql.c fills
  each column by its name, `calldate` with the start time.
- cdr_adaptive_odbc / cdr_pgsql with Asterisk's own schema:
  contrib/ast-db-manage/cdr/versions/210693f3123d_create_cdr_table.py
  (`start`, `answer`, `end`, amaflags String(45), `linkedid, peeraccount,
  sequence`).
- cdr_sqlite3_custom: configs/samples/cdr_sqlite3_custom.conf.sample's
  columns (`calldate` = `${CDR(start)}`, no src/dst, a custom `test`),
  in the table cdr/cdr_sqlite3_custom.c creates:
  `CREATE TABLE cdr (AcctId INTEGER PRIMARY KEY, <columns>)`, every value
  inserted as quoted text.
"""

from __future__ import annotations

import csv
import io
import sqlite3
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import polars as pl
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

import cdrq

FREEPBX = [
    ("calldate", "datetime NOT NULL DEFAULT '0000-00-00 00:00:00'"), ("clid", "varchar(80)"),
    ("src", "varchar(80)"), ("dst", "varchar(80)"), ("dcontext", "varchar(80)"), ("channel", "varchar(80)"),
    ("dstchannel", "varchar(80)"), ("lastapp", "varchar(80)"), ("lastdata", "varchar(80)"),
    ("duration", "int(11)"), ("billsec", "int(11)"), ("disposition", "varchar(45)"), ("amaflags", "int(11)"),
    ("accountcode", "varchar(20)"), ("uniqueid", "varchar(32)"), ("userfield", "varchar(255)"),
    ("did", "varchar(50)"), ("recordingfile", "varchar(255)"), ("cnum", "varchar(40)"), ("cnam", "varchar(40)"),
    ("outbound_cnum", "varchar(40)"), ("outbound_cnam", "varchar(40)"), ("dst_cnam", "varchar(40)"),
    ("linkedid", "varchar(32)"), ("peeraccount", "varchar(80)"), ("sequence", "int(11)"),
]  # fmt: skip
PGSQL = [
    ("AcctId", "INTEGER PRIMARY KEY"), ("calldate", "TIMESTAMP with time zone"), ("clid", "VARCHAR(80)"),
    ("src", "VARCHAR(80)"), ("dst", "VARCHAR(80)"), ("dcontext", "VARCHAR(80)"), ("channel", "VARCHAR(80)"),
    ("dstchannel", "VARCHAR(80)"), ("lastapp", "VARCHAR(80)"), ("lastdata", "VARCHAR(80)"),
    ("duration", "INTEGER"), ("billsec", "INTEGER"), ("disposition", "VARCHAR(45)"), ("amaflags", "INTEGER"),
    ("accountcode", "VARCHAR(20)"), ("uniqueid", "VARCHAR(32)"), ("userfield", "VARCHAR(255)"),
]  # fmt: skip
ODBC = [
    ("accountcode", "VARCHAR(20)"), ("src", "VARCHAR(80)"), ("dst", "VARCHAR(80)"), ("dcontext", "VARCHAR(80)"),
    ("clid", "VARCHAR(80)"), ("channel", "VARCHAR(80)"), ("dstchannel", "VARCHAR(80)"),
    ("lastapp", "VARCHAR(80)"), ("lastdata", "VARCHAR(80)"), ("start", "DATETIME"), ("answer", "DATETIME"),
    ("end", "DATETIME"), ("duration", "INTEGER"), ("billsec", "INTEGER"), ("disposition", "VARCHAR(45)"),
    ("amaflags", "VARCHAR(45)"), ("userfield", "VARCHAR(256)"), ("uniqueid", "VARCHAR(150)"),
    ("linkedid", "VARCHAR(150)"), ("peeraccount", "VARCHAR(20)"), ("sequence", "INTEGER"),
]  # fmt: skip
SQLITE3_CUSTOM = [("AcctId", "INTEGER PRIMARY KEY")] + [
    (name, "")
    for name in (
        "calldate clid dcontext channel dstchannel lastapp lastdata duration billsec disposition amaflags "
        "accountcode uniqueid userfield test"
    ).split()
]
LAYOUTS = {"freepbx": FREEPBX, "pgsql": PGSQL, "odbc": ODBC, "sqlite3_custom": SQLITE3_CUSTOM}

# One call of two legs, in Asterisk's CDR variables (and FreePBX's columns).
LEG_A = {
    "accountcode": "sales", "src": "1001", "dst": "2000", "dcontext": "from-internal",
    "clid": '"Alice Smith" <1001>', "channel": "PJSIP/1001-00000001", "dstchannel": "PJSIP/2000-00000002",
    "lastapp": "Dial", "lastdata": "PJSIP/2000,30,tT", "start": "2024-01-28 10:18:20",
    "answer": "2024-01-28 10:18:25", "end": "2024-01-28 10:19:00", "duration": 40, "billsec": 35,
    "disposition": "ANSWERED", "amaflags": "DOCUMENTATION", "uniqueid": "pbx1-1706420300.0", "userfield": "vip",
    "peeraccount": "", "linkedid": "pbx1-1706420300.0", "sequence": 7, "did": "5551234",
    "recordingfile": "external-2000-1001-20240128-101820-1706420300.0.wav", "cnum": "1001",
    "cnam": "Alice Smith", "outbound_cnum": "", "outbound_cnam": "", "dst_cnam": "Bob Jones", "test": "x1",
}  # fmt: skip
LEG_B = {
    "accountcode": "", "src": "1001", "dst": "2001", "dcontext": "from-internal", "clid": "1001",
    "channel": "PJSIP/1001-00000003", "dstchannel": "", "lastapp": "Queue", "lastdata": "support,t,,,60",
    "start": "2024-01-28 10:20:00", "answer": None, "end": "2024-01-28 10:20:30", "duration": 30, "billsec": 0,
    "disposition": "NO ANSWER", "amaflags": "BILLING", "uniqueid": "pbx1-1706420400.3", "userfield": "",
    "peeraccount": "peer", "linkedid": "pbx1-1706420300.0", "sequence": 8, "did": "", "recordingfile": "",
    "cnum": "1001", "cnam": "", "outbound_cnum": "", "outbound_cnam": "", "dst_cnam": "", "test": "",
}  # fmt: skip
AMA_NUMBER = {"OMIT": 1, "BILLING": 2, "DOCUMENTATION": 3}


def stored(layout: str, leg: dict, acct_id: int) -> dict:
    """The row a backend stores for ``leg``: each column's value as that
    backend writes it."""
    row = {}
    for name, kind in LAYOUTS[layout]:
        value = acct_id if name == "AcctId" else leg[{"calldate": "start"}.get(name, name)]
        if name == "amaflags" and kind.lower().startswith("int"):
            value = AMA_NUMBER[value]
        if layout == "sqlite3_custom" and name != "AcctId":
            value = "" if value is None else str(value)  # '${CDR(x)}': text, '' when unset
        row[name] = value
    return row


def make_table(path: Path, columns: list[tuple[str, str]], rows: list[dict], table: str = "cdr") -> Path:
    with sqlite3.connect(path) as con:
        con.execute(f"CREATE TABLE {table} ({', '.join(f'{chr(34)}{n}{chr(34)} {t}' for n, t in columns)})")
        names = [n for n, _ in columns]
        quoted = ", ".join(f'"{n}"' for n in names)
        con.executemany(
            f"INSERT INTO {table} ({quoted}) VALUES ({', '.join('?' * len(names))})",
            [tuple(row.get(n) for n in names) for row in rows],
        )
    con.close()
    return path


def null_row(frame: pl.DataFrame) -> dict:
    return {name: None for name in frame.columns} | {"cdr_kind": "record", "leg": 0}


def t(text: str) -> datetime:
    return datetime.fromisoformat(text)


# The data-model values of the call, every layout alike: a layout without
# `end`/`answer` derives them (end = start + duration, answer = end -
# billsec where billsec > 0), which gives the same times here.
MODEL_A = {
    "accountcode": "sales", "src": "1001", "dst": "2000", "dcontext": "from-internal",
    "clid": '"Alice Smith" <1001>', "channel": "PJSIP/1001-00000001", "dstchannel": "PJSIP/2000-00000002",
    "lastapp": "Dial", "lastdata": "PJSIP/2000,30,tT", "start": t("2024-01-28 10:18:20"),
    "answer": t("2024-01-28 10:18:25"), "end": t("2024-01-28 10:19:00"), "duration": 40, "billsec": 35,
    "disposition": "ANSWERED", "amaflags": "DOCUMENTATION", "uniqueid": "pbx1-1706420300.0", "userfield": "vip",
    "caller_name": "Alice Smith",
}  # fmt: skip
MODEL_B = {
    "accountcode": None, "src": "1001", "dst": "2001", "dcontext": "from-internal", "clid": "1001",
    "channel": "PJSIP/1001-00000003", "dstchannel": None, "lastapp": "Queue", "lastdata": "support,t,,,60",
    "start": t("2024-01-28 10:20:00"), "answer": None, "end": t("2024-01-28 10:20:30"), "duration": 30,
    "billsec": 0, "disposition": "NO ANSWER", "amaflags": "BILLING", "uniqueid": "pbx1-1706420400.3",
    "userfield": None, "caller_name": None,
}  # fmt: skip
# What each layout adds: its own columns and what they fill.
LINKED = {"linkedid": "pbx1-1706420300.0", "session": "pbx1-1706420300.0"}
EXTRA = {
    "freepbx": (
        MODEL_A | LINKED | {
            "AcctId": 7, "sequence": "7", "peeraccount": None, "did": "5551234",
            "recordingfile": LEG_A["recordingfile"], "recordfiles": LEG_A["recordingfile"], "cnum": "1001",
            "cnam": "Alice Smith", "outbound_cnum": None, "outbound_cnam": None, "dst_cnam": "Bob Jones",
        },
        MODEL_B | LINKED | {
            "AcctId": 8, "sequence": "8", "peeraccount": "peer", "did": None, "recordingfile": None,
            "cnum": "1001", "cnam": None, "outbound_cnum": None, "outbound_cnam": None, "dst_cnam": None,
        },
    ),
    "pgsql": (MODEL_A | {"AcctId": 1}, MODEL_B | {"AcctId": 2}),
    "odbc": (
        MODEL_A | LINKED | {"AcctId": 7, "sequence": "7", "peeraccount": None},
        MODEL_B | LINKED | {"AcctId": 8, "sequence": "8", "peeraccount": "peer"},
    ),
    "sqlite3_custom": (
        {k: v for k, v in MODEL_A.items() if k not in ("src", "dst")} | {"AcctId": 1, "test": "x1"},
        {k: v for k, v in MODEL_B.items() if k not in ("src", "dst")} | {"AcctId": 2, "test": None},
    ),
}  # fmt: skip


@pytest.fixture(params=sorted(LAYOUTS))
def layout_db(request, tmp_path) -> tuple[str, Path]:
    layout = request.param
    rows = [stored(layout, LEG_A, 1), stored(layout, LEG_B, 2)]
    return layout, make_table(tmp_path / "master.db", LAYOUTS[layout], rows)


def test_golden_every_layout_every_field(layout_db):
    layout, path = layout_db
    by_uri = cdrq.read_database(f"sqlite://{path}", tz=None)
    with sqlite3.connect(path) as con:
        by_connection = cdrq.read_database(con, tz=None)
        by_query = cdrq.read_database(con, query="SELECT * FROM cdr ORDER BY uniqueid", tz=None)
    con.close()
    assert by_uri.equals(by_connection)
    assert by_uri.equals(by_query)
    assert by_uri.height == 2
    # The columns of `read`'s asterisk-custom frame for the same names, in order.
    names = [n for n, _ in LAYOUTS[layout]]
    assert by_uri.schema == cdrq.read(b"", format="asterisk-custom", columns=names, tz=None).schema
    for i, expected in enumerate(EXTRA[layout]):
        assert by_uri.row(i, named=True) == null_row(by_uri) | expected, (layout, i)


def test_times_take_the_zone_of_tz(layout_db):
    _, path = layout_db
    frame = cdrq.read_database(f"sqlite://{path}", tz="Europe/Berlin")
    assert frame.schema["start"] == pl.Datetime("us", "Europe/Berlin")
    assert str(frame["start"][0]) == "2024-01-28 10:18:20+01:00"
    assert cdrq.read_database(f"sqlite://{path}")["start"][0] == datetime(2024, 1, 28, 10, 18, 20, tzinfo=timezone.utc)


def test_the_frame_queries_like_any_other(tmp_path):
    path = make_table(tmp_path / "db", ODBC, [stored("odbc", LEG_A, 1), stored("odbc", LEG_B, 2)])
    frame = cdrq.read_database(f"sqlite://{path}")
    assert cdrq.query(frame, "caller=1001&callee=2000&minDur=10")["uniqueid"].to_list() == ["pbx1-1706420300.0"]


def test_typed_values_as_asterisk_writes_them(tmp_path):
    """Drivers that type their values: datetime objects (sqlite3's
    PARSE_DECLTYPES, a server's timestamp), a zone-aware time, a whole
    number in a float column."""
    path = tmp_path / "typed.db"
    with sqlite3.connect(path) as con:
        con.execute('CREATE TABLE cdr (start timestamp, "end" timestamptz, duration real, billsec real, src)')
        con.execute("INSERT INTO cdr VALUES ('2024-01-28 10:18:20', '2024-01-28 09:19:00+00:00', 40.0, 35.5, 1001)")
    con.close()
    sqlite3.register_converter("timestamptz", lambda b: datetime.fromisoformat(b.decode()))
    with sqlite3.connect(path, detect_types=sqlite3.PARSE_DECLTYPES) as con:
        frame, rejects = cdrq.read_database(con, tz="Europe/Berlin", on_error="collect")
    con.close()
    assert frame.height == 0
    assert rejects["reason"].to_list() == ['billsec is not an integer: "35.5"']
    with sqlite3.connect(path, detect_types=sqlite3.PARSE_DECLTYPES) as con:
        con.execute("UPDATE cdr SET billsec = 35")
        row = cdrq.read_database(con, tz="Europe/Berlin").row(0, named=True)
    con.close()
    # The aware 09:19 UTC is 10:19 in Berlin; the naive times are Berlin's wall clock.
    assert str(row["start"]) == "2024-01-28 10:18:20+01:00"
    assert str(row["end"]) == "2024-01-28 10:19:00+01:00"
    assert (row["duration"], row["billsec"], row["src"]) == (40, 35, "1001")


# --- careless and hostile input -------------------------------------------------


@pytest.fixture
def db(tmp_path) -> Path:
    return make_table(tmp_path / "master.db", ODBC, [stored("odbc", LEG_A, 1), stored("odbc", LEG_B, 2)])


def test_a_table_that_does_not_exist(db):
    with pytest.raises(cdrq.CdrqError, match=rf"sqlite://{db}#cdrs: .*no such table: cdrs"):
        cdrq.read_database(f"sqlite://{db}", "cdrs")


def test_an_empty_table_is_an_empty_frame_of_the_data_model(tmp_path):
    path = make_table(tmp_path / "empty.db", FREEPBX, [])
    frame = cdrq.read_database(f"sqlite://{path}")
    names = [n for n, _ in FREEPBX]
    assert frame.height == 0
    assert frame.schema == cdrq.read(b"", format="asterisk-custom", columns=names).schema
    assert {"AcctId", "start", "session", "cdr_kind", "did"} <= set(frame.columns)


def test_a_result_of_no_cdr_column_is_an_error(db):
    for query in ("SELECT count(*) AS n FROM cdr", "SELECT 1 AS foo, 'x' AS bar", "SELECT 1 AS foo WHERE 0"):
        with pytest.raises(cdrq.CdrqError, match="no CDR column in the result"):
            cdrq.read_database(f"sqlite://{db}", query=query)
    # One CDR column is enough: the others are text columns of their own names.
    frame = cdrq.read_database(f"sqlite://{db}", query="SELECT src, 1 AS foo FROM cdr")
    assert frame.select("src", "foo").rows() == [("1001", "1"), ("1001", "1")]


def test_nulls_everywhere(tmp_path):
    path = make_table(tmp_path / "nulls.db", [(name, "") for name, _ in FREEPBX], [{}, {}])
    frame, rejects = cdrq.read_database(f"sqlite://{path}", on_error="collect")
    assert rejects.height == 0
    assert frame.rows(named=True) == [null_row(frame)] * 2


@pytest.mark.parametrize(
    "table",
    ["cdr; DROP TABLE cdr", "cdr--", 'cdr" OR 1=1 --', "cdr WHERE 1=1", "a.b.c", "", " cdr", "1cdr", "cdr\x00"],
)
def test_table_names_are_plain_names(db, table):
    with pytest.raises(cdrq.CdrqError, match="table= must be a plain table name"):
        cdrq.read_database(f"sqlite://{db}", table)
    assert cdrq.read_database(f"sqlite://{db}").height == 2  # still there


def test_schema_qualified_table(db):
    assert cdrq.read_database(f"sqlite://{db}", "main.cdr").height == 2


def test_table_and_query_together(db):
    with pytest.raises(cdrq.CdrqError, match="not both"):
        cdrq.read_database(f"sqlite://{db}", "cdr", query="SELECT * FROM cdr")
    with pytest.raises(cdrq.CdrqError, match="query= must be SQL text"):
        cdrq.read_database(f"sqlite://{db}", query="  ")


def test_wrong_connection_types(db):
    for wrong in (42, b"sqlite:///x", None, ["sqlite:///x"]):
        with pytest.raises(cdrq.CdrqError, match="connection must be"):
            cdrq.read_database(wrong)
    with pytest.raises(cdrq.CdrqError, match=f"an SQLite file\\? pass 'sqlite://{db}'"):
        cdrq.read_database(db)  # a Path
    with pytest.raises(cdrq.CdrqError, match=f"not a URI .*an SQLite file\\? pass 'sqlite://{db}'"):
        cdrq.read_database(str(db))
    with pytest.raises(cdrq.CdrqError, match="cannot open"):
        cdrq.read_database(f"sqlite://{db}.missing")
    assert not Path(f"{db}.missing").exists()  # read-only: no empty database left behind


def test_sqlite_uri_is_read_only(db):
    with pytest.raises(cdrq.CdrqError, match="readonly"):
        cdrq.read_database(f"sqlite://{db}", query="WITH x AS (SELECT 1) DELETE FROM cdr RETURNING src")
    assert cdrq.read_database(f"sqlite://{db}").height == 2


@pytest.mark.parametrize(
    "uri, shown",
    [
        (
            "postgresql://asterisk:s3cret@127.0.0.1:1/asteriskcdrdb",
            "postgresql://asterisk:***@127.0.0.1:1/asteriskcdrdb",
        ),
        ("mysql://freepbx:p%40s3cret@127.0.0.1:1/asteriskcdrdb", "mysql://freepbx:***@127.0.0.1:1/asteriskcdrdb"),
        ("postgresql://127.0.0.1:1/cdr?user=a&password=s3cret", "postgresql://127.0.0.1:1/cdr?user=a&password=***"),
    ],
)
def test_other_uris_name_what_they_need_and_hide_the_password(uri, shown):
    with pytest.raises(cdrq.CdrqError) as caught:
        cdrq.read_database(uri)
    assert "s3cret" not in str(caught.value)
    assert f"{shown}#cdr: " in str(caught.value)


def test_bad_options(db):
    with pytest.raises(cdrq.CdrqError, match="on_error"):
        cdrq.read_database(f"sqlite://{db}", on_error="skip")
    with pytest.raises(cdrq.CdrqError, match="unknown time zone"):
        cdrq.read_database(f"sqlite://{db}", tz="Mars/Olympus")


# Row 2's caller name in Latin-1, as a site whose phones send it so.
LATIN1_CLID = '"J\xfcrgen" <1002>'.encode("latin-1")


def non_utf8_db(path: Path, column_type: str) -> Path:
    with sqlite3.connect(path) as con:
        con.execute(f"CREATE TABLE cdr (src, clid {column_type}, start, duration INTEGER)")
        con.execute("INSERT INTO cdr VALUES ('1001', 'a\nb', '2024-01-28 10:18:20', 1)")
        con.execute(
            f"INSERT INTO cdr VALUES ('1002', CAST(? AS {column_type or 'TEXT'}), '2024-01-28 10:18:21', 2)",
            (LATIN1_CLID,),
        )
        con.execute("INSERT INTO cdr VALUES ('1003', 'Zoë', '2024-01-28 10:18:22', 'x')")
    con.close()
    return path


@pytest.mark.parametrize("column_type", ["TEXT", "BLOB", ""])
def test_bytes_that_are_not_utf8(tmp_path, column_type):
    path = non_utf8_db(tmp_path / "latin.db", column_type)
    source = f"sqlite://{path}#cdr"
    frame, rejects = cdrq.read_database(f"sqlite://{path}", on_error="collect")
    assert frame["src"].to_list() == ["1001"]
    assert frame["clid"].to_list() == ["a\nb"]
    # Row 2 (its clid, column 2) is not UTF-8; row 3's duration is no number.
    assert rejects.select("source", "line", "column").rows() == [(source, 2, 2), (source, 3, 4)]
    assert rejects["reason"].to_list() == ["invalid UTF-8", 'duration is not an integer: "x"']
    with pytest.raises(cdrq.ParseError) as caught:
        cdrq.read_database(f"sqlite://{path}")
    assert (caught.value.source, caught.value.line, caught.value.column) == (source, 2, 2)
    assert str(caught.value).startswith(f"{source}:2:2: invalid UTF-8")
    lossy = cdrq.read_database(f"sqlite://{path}", on_error="collect", encoding="utf8-lossy")[0]
    assert lossy["clid"].to_list() == ["a\nb", '"J\ufffdrgen" <1002>']
    latin = cdrq.read_database(f"sqlite://{path}", on_error="collect", encoding="latin-1")[0]
    assert latin["clid"].to_list() == ["a\nb", '"Jürgen" <1002>']
    # The connection is left as it was given.
    with sqlite3.connect(path) as con:
        cdrq.read_database(con, on_error="collect")
        assert con.text_factory is str
    con.close()


def test_a_blob_of_utf8_is_text(tmp_path):
    path = tmp_path / "blob.db"
    with sqlite3.connect(path) as con:
        con.execute("CREATE TABLE cdr (src BLOB, duration)")
        con.execute("INSERT INTO cdr VALUES (CAST('Zoë' AS BLOB), 4), (NULL, CAST('5' AS BLOB)), (x'31', 6)")
    con.close()
    frame = cdrq.read_database(f"sqlite://{path}")
    assert frame.select("src", "duration").rows() == [("Zoë", 4), (None, 5), ("1", 6)]


def test_reject_rows_count_records_not_lines(tmp_path):
    rows = [{"src": "1\n2\r\n3", "duration": 1}, {"src": 'say "hi",\nbye', "duration": 2}, {"duration": "x"}]
    path = make_table(tmp_path / "lines.db", [("src", "TEXT"), ("duration", "INTEGER")], rows)
    frame, rejects = cdrq.read_database(f"sqlite://{path}", on_error="collect")
    assert frame["src"].to_list() == ["1\n2\r\n3", 'say "hi",\nbye']
    assert rejects.select("line", "column").rows() == [(3, 2)]


def test_a_one_column_result_keeps_blank_rows(tmp_path):
    path = make_table(tmp_path / "one.db", [("src", "BLOB")], [{"src": " "}, {}, {"src": "1001"}, {"src": b"\xff"}])
    frame, rejects = cdrq.read_database(f"sqlite://{path}", on_error="collect")
    assert frame["src"].to_list() == [" ", None, "1001"]
    assert rejects.select("line", "column").rows() == [(4, 1)]
    frame = cdrq.read_database(f"sqlite://{path}", query="SELECT src FROM cdr WHERE rowid < 4")
    assert frame["src"].to_list() == [" ", None, "1001"]


def test_a_cursor_and_sqlite_memory(db):
    with sqlite3.connect(db) as con:
        assert cdrq.read_database(con.cursor()).height == 2
    con.close()
    memory = sqlite3.connect(":memory:")
    memory.execute("CREATE TABLE cdr (src, duration)")
    memory.execute("INSERT INTO cdr VALUES ('1001', 'x')")
    _, rejects = cdrq.read_database(memory, on_error="collect")
    assert rejects["source"].to_list() == ["sqlite://:memory:#cdr"]
    memory.close()


def test_a_long_query_is_named_short(db):
    query = "SELECT src,\n  duration FROM cdr WHERE duration > 0 AND src IS NOT NULL AND dst IS NOT NULL ORDER BY 1"
    with sqlite3.connect(db) as con:
        con.execute("UPDATE cdr SET duration = 'x' WHERE sequence = 8")
    con.close()
    _, rejects = cdrq.read_database(f"sqlite://{db}", query=query, on_error="collect")
    assert rejects["source"][0] == f"sqlite://{db}#(SELECT src, duration FROM cdr WHERE duration > 0 AND src IS…)"


def test_runs_without_pyarrow(db):
    """Run time needs Polars alone: SQLite through the standard library."""
    code = (
        "import sys; sys.modules['pyarrow'] = None; sys.modules['pandas'] = None\n"
        "import sqlite3, cdrq\n"
        f"print(cdrq.read_database({f'sqlite://{db}'!r}).height,"
        f" cdrq.read_database(sqlite3.connect({str(db)!r}), query='SELECT src FROM cdr').height)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["2", "2"]


# --- property: the table and the files it mirrors read alike --------------------

TEXT_COLUMNS = ["accountcode", "src", "dst", "dcontext", "clid", "channel", "dstchannel", "lastapp", "lastdata",
                "disposition", "uniqueid", "userfield", "peeraccount", "linkedid", "did", "cnum", "cnam",
                "recordingfile", "test"]  # fmt: skip
# FreePBX's and a site's own columns: text columns of their names.
OWN_COLUMNS = {"did", "cnum", "cnam", "recordingfile", "test"}
TIME_COLUMNS = ["start", "answer", "end"]
INT_COLUMNS = ["duration", "billsec", "sequence"]
CDR_CSV = ["accountcode", "src", "dst", "dcontext", "clid", "channel", "dstchannel", "lastapp", "lastdata",
           "start", "answer", "end", "duration", "billsec", "disposition", "amaflags", "uniqueid", "userfield",
           "peeraccount", "linkedid", "sequence"]  # fmt: skip

texts = st.one_of(
    st.none(),
    st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12),
    st.sampled_from(['"Doe, John" <1001>', "a,b", 'x""y', " ", "\n", "2024-01-28 10:18:20", "0"]),
)
times = st.one_of(
    st.none(),
    st.datetimes(datetime(2000, 1, 1), datetime(2037, 12, 31)).map(lambda d: d.strftime("%Y-%m-%d %H:%M:%S")),
)
# Mostly numbers; now and then text the reader rejects, in the same row either way.
ints = st.one_of(st.none(), st.integers(0, 10**6), st.sampled_from(["12", "x", "1.5"]))
amaflags = st.sampled_from([None, 0, 1, 2, 3, "DOCUMENTATION", "OMIT", ""])


def value_of(name: str):
    if name in TIME_COLUMNS:
        return times
    if name in INT_COLUMNS:
        return ints
    if name == "amaflags":
        return amaflags
    return texts


def sql_type(name: str) -> str:
    return "INTEGER" if name in INT_COLUMNS else "TEXT" if name != "amaflags" else ""


@st.composite
def tables(draw, columns=None):
    if columns is None:
        pool = TEXT_COLUMNS + TIME_COLUMNS + INT_COLUMNS + ["amaflags"]
        columns = draw(st.lists(st.sampled_from(pool), min_size=1, max_size=12, unique=True))
        if set(columns) <= OWN_COLUMNS:
            columns.append("src")  # a table needs one column of the data model
    rows = draw(st.lists(st.fixed_dictionaries({n: value_of(n) for n in columns}), max_size=8))
    return columns, rows


def csv_of(columns: list[str], rows: list[dict], quote_all: bool = False) -> bytes:
    out = io.StringIO()
    # CRLF lines: the csv module then quotes a value holding a bare CR (with
    # "\n" it leaves one unquoted, and a CR before the newline is line end).
    writer = csv.writer(out, lineterminator="\r\n", quoting=csv.QUOTE_ALL if quote_all else csv.QUOTE_MINIMAL)
    for row in rows:
        writer.writerow(["" if row[n] is None else row[n] for n in columns])
    return out.getvalue().encode()


def check_alike(path: Path, rows: list[dict], data: bytes, **read_options) -> None:
    from_table, table_rejects = cdrq.read_database(f"sqlite://{path}", tz=None, on_error="collect")
    from_file, file_rejects = cdrq.read(data, tz=None, on_error="collect", **read_options)
    assert from_table.equals(from_file)
    assert table_rejects["reason"].to_list() == file_rejects["reason"].to_list()
    # Each reject names its row: the rows the file kept are the others.
    kept = [i for i in range(1, len(rows) + 1) if i not in table_rejects["line"].to_list()]
    assert len(kept) == from_table.height
    assert table_rejects["column"].is_not_null().all()


@given(tables())
@example((["cnam", "src"], [{"cnam": None, "src": None}, {"cnam": None, "src": "x\r"}, {"cnam": None, "src": "y"}]))
def test_table_reads_as_the_custom_csv_of_its_rows(tmp_path_factory, table):
    columns, rows = table
    path = make_table(tmp_path_factory.mktemp("prop") / "master.db", [(n, sql_type(n)) for n in columns], rows)
    # One column quoted, as a CSV_QUOTE template writes it: a blank line is no record.
    data = csv_of(columns, rows, quote_all=len(columns) == 1)
    check_alike(path, rows, data, format="asterisk-custom", columns=columns)


@given(tables(CDR_CSV))
# A first value that begins like XML or JSON: the CSV is still CSV.
@example((CDR_CSV, [dict.fromkeys(CDR_CSV) | {"accountcode": "<"}]))
@example((CDR_CSV, [dict.fromkeys(CDR_CSV) | {"accountcode": " [1"}]))
def test_table_reads_as_the_master_csv_of_its_rows(tmp_path_factory, table):
    columns, rows = table
    path = make_table(tmp_path_factory.mktemp("prop") / "master.db", [(n, sql_type(n)) for n in columns], rows)
    # cdr_csv quotes every value (an empty one too).
    check_alike(path, rows, csv_of(columns, rows, quote_all=True), format="asterisk-csv")


def test_reads_what_the_reject_names(tmp_path):
    """A reject's row and column point at the value in the table."""
    rows = [{"src": "a\nb", "duration": 1}, {"src": "c", "billsec": "y", "duration": 2}]
    path = make_table(tmp_path / "p.db", [("src", "TEXT"), ("duration", "INTEGER"), ("billsec", "INTEGER")], rows)
    _, rejects = cdrq.read_database(f"sqlite://{path}", on_error="collect")
    line, column = rejects.row(0)[1:3]
    with sqlite3.connect(path) as con:
        names = [d[0] for d in con.execute("SELECT * FROM cdr").description]
        value = con.execute(f"SELECT {names[column - 1]} FROM cdr WHERE rowid = ?", (line,)).fetchone()[0]
    con.close()
    assert (names[column - 1], value) == ("billsec", "y")


def test_calldate_layout_derives_end_and_answer(tmp_path):
    """calldate layouts: end = start + duration on the wall clock."""
    rows = [{"calldate": "2024-03-31 01:59:50", "duration": 20, "billsec": 5}]
    path = make_table(tmp_path / "d.db", [("calldate", ""), ("duration", ""), ("billsec", "")], rows)
    row = cdrq.read_database(f"sqlite://{path}", tz=None).row(0, named=True)
    start = datetime(2024, 3, 31, 1, 59, 50)
    assert (row["start"], row["end"], row["answer"]) == (
        start,
        start + timedelta(seconds=20),
        start + timedelta(seconds=15),
    )


def test_numeric_time_columns_are_epoch_seconds(tmp_path):
    # cdr_pgsql writes a time as epoch seconds into a column the table
    # declares int or float (cdr/cdr_pgsql.c); 0 is an answer that never was.
    con = sqlite3.connect(tmp_path / "pg.db")
    con.execute(
        'CREATE TABLE cdr (start INTEGER, answer REAL, "end" INTEGER, src TEXT, duration INTEGER, billsec INTEGER)'
    )
    con.executemany(
        "INSERT INTO cdr VALUES (?, ?, ?, ?, ?, ?)",
        [(1706437100, 1706437105.5, 1706437140, "1001", 40, 35), (1706437100, 0, 1706437140, "1002", 40, 0)],
    )
    con.commit()
    berlin = cdrq.read_database(con, tz="Europe/Berlin")
    utc = datetime(2024, 1, 28, 10, 18, 20, tzinfo=timezone.utc)
    assert berlin["start"].dt.convert_time_zone("UTC").to_list() == [utc, utc]
    assert berlin["answer"].dt.convert_time_zone("UTC").to_list() == [utc + timedelta(seconds=5), None]
    naive = cdrq.read_database(con, tz=None)
    assert naive["end"].to_list() == [datetime(2024, 1, 28, 10, 19)] * 2
    assert naive["duration"].to_list() == [40, 40]  # other numbers stay numbers


def test_sqlalchemys_four_slash_absolute_uri(db):
    # sqlite:////abs/path is SQLAlchemy's spelling of an absolute path.
    assert cdrq.read_database(f"sqlite:///{db}").equals(cdrq.read_database(f"sqlite://{db}"))
