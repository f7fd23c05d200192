"""Synthetic UCM CDR archives for benchmarks and the demo.

``write_archive(n, path)`` writes ``n`` records the way UCM firmware 1.0.11+
writes its CDR API CSV (31 fields, no header, `lastdata` quoted, a third of
the caller IDs as ``"Name" <ext>`` written verbatim, each line ending ``, ``)
and, beside it, the RFC 4180-clean twin with a header that
``polars.read_csv`` and DuckDB read without trouble.

    python benches/gen_cdrs.py 1000000 /tmp/cdrs.csv
"""

from __future__ import annotations

import sys
from pathlib import Path

import polars as pl

NAMES = ["GVC Test", "pn01", "Zoë Müller", "Reception", "José Álvarez", "Sales Desk", "李雷", "Night Line"]
DISPOSITIONS = ["ANSWERED", "ANSWERED", "NO ANSWER", "BUSY", "FAILED"]
USERFIELDS = ["Internal", "Inbound", "Outbound"]
# The fw 1.0.11 headerless layout: the 32 JSON keys less `dstchanext`.
FIELDS = [
    "AcctId", "accountcode", "src", "dst", "dcontext", "clid", "channel", "dstchannel", "lastapp",
    "lastdata", "start", "answer", "end", "duration", "billsec", "disposition", "amaflags", "uniqueid",
    "userfield", "channel_ext", "dstchannel_ext", "service", "caller_name", "recordfiles", "dstanswer",
    "chanext", "session", "action_owner", "action_type", "src_trunk_name", "dst_trunk_name",
]  # fmt: skip
EPOCH = 1_700_000_000  # 2023-11-14 22:13:20


def records(n: int, seed: int = 0, first: int = 0) -> pl.DataFrame:
    """``n`` realistic records as strings, in the fw 1.0.11 field order;
    ``first`` numbers them on from an earlier batch (ids and times go on)."""
    i = pl.int_range(first, first + n, dtype=pl.Int64, eager=False)
    h = (i * 2_654_435_761 + seed) % 1_000_003  # a cheap deterministic scramble
    src = (
        pl.when(h % 5 == 0)
        .then("0" + (7_000_000_000 + h * 17).cast(pl.String))
        .otherwise((6000 + h % 400).cast(pl.String))
    )
    dst = (6000 + (h // 7) % 400).cast(pl.String)
    name = pl.lit(pl.Series(NAMES)).get(h % len(NAMES))
    disposition = pl.lit(pl.Series(DISPOSITIONS)).get(h % len(DISPOSITIONS))
    answered = disposition == "ANSWERED"
    start_s = EPOCH + i * 3
    ring = h % 20 + 1
    billsec = pl.when(answered).then(h % 900).otherwise(0)
    duration = ring + billsec
    as_time = lambda s: pl.from_epoch(s, time_unit="s").dt.strftime("%Y-%m-%d %H:%M:%S")  # noqa: E731
    uniq = start_s.cast(pl.String) + "." + (i % 10_000).cast(pl.String)
    columns = {
        "AcctId": (i + 1).cast(pl.String),
        "accountcode": pl.lit(""),
        "src": src,
        "dst": dst,
        "dcontext": pl.when(h % 5 == 0).then(pl.lit("from-trunk")).otherwise(pl.lit("from-internal")),
        "clid": pl.when(h % 3 == 0).then('"' + name + '" <' + src + ">").otherwise(src),
        "channel": "PJSIP/" + src + "-" + (i % 0xFFFFFFF).cast(pl.String).str.zfill(8),
        "dstchannel": "PJSIP/" + dst + "-" + ((i + 1) % 0xFFFFFFF).cast(pl.String).str.zfill(8),
        "lastapp": pl.lit("Dial"),
        "lastdata": "PJSIP/" + dst + "/sip:" + dst + "@192.168.1.20:5060,30",
        "start": as_time(start_s),
        "answer": pl.when(answered).then(as_time(start_s + ring)).otherwise(pl.lit("")),
        "end": as_time(start_s + duration),
        "duration": duration.cast(pl.String),
        "billsec": billsec.cast(pl.String),
        "disposition": disposition,
        "amaflags": pl.lit("DOCUMENTATION"),
        "uniqueid": uniq,
        "userfield": pl.lit(pl.Series(USERFIELDS)).get(h % 3),
        "channel_ext": src,
        "dstchannel_ext": dst,
        "service": pl.lit("s"),
        "caller_name": pl.when(h % 3 == 0).then(name).otherwise(pl.lit("")),
        "recordfiles": pl.when(h % 4 == 0)
        .then("2023-11/auto-" + start_s.cast(pl.String) + "-" + src + "-" + dst + ".wav@")
        .otherwise(pl.lit("")),
        "dstanswer": pl.when(answered).then(dst).otherwise(pl.lit("")),
        "chanext": src,
        "session": (start_s * 1_000_000 + h).cast(pl.String) + "-" + src,
        "action_owner": src,
        "action_type": pl.lit("DIAL"),
        "src_trunk_name": pl.when(h % 5 == 0).then(pl.lit("SIP Trunk 1")).otherwise(pl.lit("")),
        "dst_trunk_name": pl.lit(""),
    }
    return pl.select(**{k: columns[k] for k in FIELDS})


def ucm_lines(df: pl.DataFrame) -> pl.Series:
    """Each record as UCM fw 1.0.11 writes it: `lastdata` quoted, the rest
    raw, and the line's trailing `, `."""
    parts = [
        ('"' + pl.col(c).str.replace_all('"', '""', literal=True) + '"') if c == "lastdata" else pl.col(c)
        for c in FIELDS
    ]
    return df.select(pl.concat_str(parts, separator=",") + " ").to_series()


def write_archive(n: int, path: Path, twin: Path | None = None, seed: int = 0) -> None:
    """Writes the UCM-style archive at ``path`` and, if asked, its clean twin."""
    df = records(n, seed)
    path.write_text("\n".join(ucm_lines(df)) + "\n", encoding="utf-8")
    if twin is not None:
        df.with_columns(pl.all().replace("", None)).write_csv(twin)


def cached_archive(n: int, directory: Path) -> tuple[Path, Path]:
    """The archive and its twin for ``n`` records, generated once."""
    directory.mkdir(parents=True, exist_ok=True)
    path, twin = directory / f"ucm-{n}.csv", directory / f"twin-{n}.csv"
    if not (path.exists() and twin.exists()):
        write_archive(n, path, twin)
    return path, twin


def cached_big_archive(n: int, directory: Path, batch: int = 2_000_000) -> tuple[Path, Path]:
    """Like :func:`cached_archive`, written ``batch`` records at a time so
    that archives larger than memory can be made."""
    directory.mkdir(parents=True, exist_ok=True)
    path, twin = directory / f"ucm-big-{n}.csv", directory / f"twin-big-{n}.csv"
    if path.exists() and twin.exists():
        return path, twin
    partial, partial_twin = path.with_suffix(".partial"), twin.with_suffix(".partial")
    with partial.open("w", encoding="utf-8") as out, partial_twin.open("w", encoding="utf-8") as out_twin:
        for first in range(0, n, batch):
            df = records(min(batch, n - first), first=first)
            out.write("\n".join(ucm_lines(df)) + "\n")
            df.with_columns(pl.all().replace("", None)).write_csv(out_twin, include_header=first == 0)
    partial.rename(path)
    partial_twin.rename(twin)
    return path, twin


def cached_json_archives(n: int, directory: Path) -> tuple[Path, Path]:
    """``n`` records as UCM JSON, old flat shape ``{"cdr": [...]}`` and new
    shape ``{"cdr_root": [{cdr, main_cdr, sub_cdr_1, sub_cdr_2}]}`` (every
    third record starts a call; its legs are the next records)."""
    import orjson

    directory.mkdir(parents=True, exist_ok=True)
    flat, nested = directory / f"ucm-{n}-flat.json", directory / f"ucm-{n}-nested.json"
    if flat.exists() and nested.exists():
        return flat, nested
    rows = records(n).to_dicts()
    flat.write_bytes(orjson.dumps({"cdr": rows}))
    calls = []
    for i in range(0, len(rows), 3):
        legs = rows[i + 1 : i + 3]
        call = {"cdr": rows[i]["session"], "main_cdr": rows[i]}
        call.update({f"sub_cdr_{k}": leg for k, leg in enumerate(legs, 1)})
        calls.append(call)
    nested.write_bytes(orjson.dumps({"cdr_root": calls}))
    return flat, nested


def cached_xml_archive(n: int, directory: Path) -> Path:
    """``n`` records as UCM XML in the ``cdr_root`` shape (main + two legs
    per call, like :func:`cached_json_archives`)."""
    from xml.sax.saxutils import escape

    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"ucm-{n}.xml"
    if path.exists():
        return path
    rows = records(n).to_dicts()
    fields = lambda r: "".join(f"<{k}>{escape(v)}</{k}>" if v else f"<{k}/>" for k, v in r.items())  # noqa: E731
    with path.open("w", encoding="utf-8") as out:
        out.write('<?xml version="1.0" encoding="UTF-8"?>\n<cdr_root>\n')
        for i in range(0, len(rows), 3):
            legs = "".join(f"<sub_cdr_{k}>{fields(leg)}</sub_cdr_{k}>" for k, leg in enumerate(rows[i + 1 : i + 3], 1))
            out.write(f'<cdr session="{rows[i]["session"]}"><main_cdr>{fields(rows[i])}</main_cdr>{legs}</cdr>\n')
        out.write("</cdr_root>\n")
    return path


if __name__ == "__main__":
    count, out = int(sys.argv[1]), Path(sys.argv[2])
    write_archive(count, out, out.with_suffix(".twin.csv"))
