"""The `cdrq` command line."""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from datetime import datetime, timezone
from typing import Any

import polars as pl

from cdrq import _core
from cdrq._zone import DEFAULT_TZ
from cdrq.dataset import convert, is_dataset, zone_for
from cdrq.query import query
from cdrq.read import expand, localise, read
from cdrq.render import FIRMWARES, cdrapi, rejected, render, requested_format
from cdrq.scan import scan

EXAMPLES = """examples:
  cdrq query archive/ 'format=json&caller=5300,6300-6399&callee=5@&minDur=8'
  cdrq query cdrs-2024-*.csv.gz 'startTime=2024-05-01&endTime=2024-05-31T23:59:59' --tz Europe/Berlin
  cdrq query --library cdrs.json 'callerNumber=3XXX&status=answered&order=desc'
  cdrq convert archive/ --to dataset/ --tz Europe/Berlin
  cdrq query --library dataset/ 'caller=5300&startTime=2024-05-01'

exit status: 0 ok, 1 unreadable input, 2 bad query
"""


#: Options several commands take, by name.
SHARED: dict[str, tuple[tuple[str, ...], dict[str, Any]]] = {
    "tz": (
        ("--tz",),
        {"default": DEFAULT_TZ, "help": "the PBX's time zone (default UTC; a dataset is shown in its own zone)"},
    ),
    "include": (
        ("--include",),
        {
            "action": "append",
            "metavar": "GLOB",
            "help": "of a directory, also read the files matching GLOB (repeatable); by default only "
            "*.csv, *.json, *.xml, *.txt (optionally .gz/.zst) are read and the others named in a warning",
        },
    ),
    "format": (("--format",), {"default": "auto", "help": "input format (default: auto)"}),
    "encoding": (
        ("--encoding",),
        {
            "default": "utf8",
            "help": "the files' text encoding: utf8 (default; records with invalid bytes are rejected), "
            "utf8-lossy, latin-1, windows-1252, …",
        },
    ),
    "to": (("--to",), {"required": True, "metavar": "DIR", "help": "the dataset directory"}),
    "user": (("--user",), {"required": True}),
    "password": (("--password",), {"required": True}),
    "cert": (("--cert",), {"help": "TLS certificate (PEM)"}),
    "key": (("--key",), {"help": "TLS private key (PEM)"}),
    "firmware": (
        ("--firmware",),
        {
            "choices": FIRMWARES,
            "help": "answer in the layout this UCM firmware writes (default: the spec's, with a CSV header)",
        },
    ),
    "progress": (
        ("--progress",),
        {
            "action": argparse.BooleanOptionalAction,
            "default": sys.stderr.isatty(),
            "help": "show progress on stderr (default: when it is a terminal)",
        },
    ),
}


def command(commands: Any, name: str, help: str, description: str, epilog: str, *shared: str) -> Any:
    """A subcommand with the ``shared`` options."""
    sub = commands.add_parser(
        name, help=help, description=description, epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    for option in shared:
        flags, kwargs = SHARED[option]
        sub.add_argument(*flags, **kwargs)
    return sub


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="cdrq",
        description="Telephone CDRs (Grandstream UCM, PortSIP): read, query like the PBX, render.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    q = command(
        commands,
        "query",
        "answer a CDR API query string over archives",
        "Prints the UCM's /cdrapi response to QUERY over the ARCHIVE files (paths, globs, directories).",
        EXAMPLES,
        "tz",
        "format",
        "encoding",
        "include",
        "firmware",
        "progress",
    )
    q.add_argument("archive", nargs="+", help="files, globs or directories; the last argument is the query")
    q.add_argument("--now", help="the instant `now` means (ISO 8601; default: the current time)")
    q.add_argument(
        "--engine",
        default="polars",
        choices=["polars", "duckdb", "spark"],
        help="polars (default); duckdb over a dataset directory (the query compiled to SQL); "
        "spark (local mode: the cdrq data source, or the dataset's Parquet)",
    )
    q.add_argument(
        "--library",
        action="store_true",
        help="library semantics: the web UI filters, every match unless numRecords/offset, errors reported",
    )
    c = command(
        commands,
        "convert",
        "write archives into a month-partitioned Parquet dataset",
        "Reads SOURCE files (paths, globs, directories) into the Parquet dataset DIR "
        "(year=YYYY/month=MM/), appending without duplicating records; rejects go to DIR/_rejects/.",
        EXAMPLES,
        "to",
        "tz",
        "format",
        "encoding",
        "include",
        "progress",
    )
    c.add_argument("source", nargs="+", help="files, globs or directories")
    s = command(
        commands,
        "serve",
        "answer the UCM's /cdrapi and /recapi (and the new /api) over HTTPS",
        "Serves ARCHIVE (files, globs, directories or a dataset) as a UCM serves its CDR API: "
        "/cdrapi and /recapi with Digest authentication on --port, the UCM63xx JSON API on --api-port.",
        "example:\n  cdrq serve dataset/ --self-signed --user cdrapi --password s3cret "
        "--permit 10.0.0.0/8 --recordings /var/spool/asterisk",
        "user",
        "password",
        "cert",
        "key",
        "tz",
        "firmware",
    )
    s.add_argument("archive", nargs="+", help="files, globs, directories or a dataset directory")
    s.add_argument("--self-signed", action="store_true", help="make a throw-away certificate instead")
    s.add_argument("--host", default="0.0.0.0", help="address to listen on (default 0.0.0.0)")
    s.add_argument("--port", type=int, default=8443, help="legacy API port (default 8443)")
    s.add_argument("--api-port", type=int, default=8089, help="new JSON API port (default 8089; 0: off)")
    s.add_argument("--permit", nargs="*", default=[], metavar="CIDR", help="networks allowed in (none: nobody)")
    s.add_argument("--recordings", help="the recordings root /recapi serves")
    p = command(
        commands,
        "pull",
        "fetch every CDR (and recording) from a UCM into a dataset, incrementally",
        "Pulls the UCM at URL (https://host:8443 legacy API, https://host:8089 new API) month by month "
        "into the Parquet dataset --to; resumes where the last pull stopped.",
        "example:\n  cdrq pull https://pbx.example:8443 --user cdrapi --password s3cret --to ds/ --recordings",
        "user",
        "password",
        "to",
        "tz",
    )
    p.add_argument("url")
    p.add_argument("--since", help="first day to pull (YYYY-MM-DD; default: where the last pull stopped)")
    p.add_argument("--recordings", action="store_true", help="also download the recordings records name")
    p.add_argument("--api", default="auto", choices=["auto", "legacy", "new", "portsip"])
    p.add_argument("--ca", help="CA certificate to verify the PBX with")
    p.add_argument("--insecure", action="store_true", help="do not verify the PBX's certificate")
    li = command(
        commands,
        "listen",
        "receive the UCM's CDR real-time output (or PortSIP's webhook) into a dataset",
        "Accepts CDRs pushed by the PBX over TCP (or HTTP POST with --http), in JSON or XML, "
        "journals each record durably before anything else and folds them into the dataset --to.",
        "example:\n  cdrq listen --port 9000 --to dataset/",
        "to",
        "cert",
        "key",
        "tz",
    )
    li.add_argument("--port", type=int, required=True)
    li.add_argument("--host", default="0.0.0.0")
    li.add_argument("--http", action="store_true", help="HTTP POSTs instead of raw TCP (PortSIP's webhook too)")
    li.add_argument("--fold-every", type=float, default=5.0, help="seconds between folds into the dataset")
    args = parser.parse_args(argv)
    with warnings.catch_warnings():
        warnings.showwarning = show_warning
        return run(parser, args)


def show_warning(message: Warning | str, category: type[Warning], *_: object, **__: object) -> None:
    """A warning as one line of ours on stderr, not Python's file:line form."""
    print(f"cdrq: warning: {message}", file=sys.stderr)


def run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    if args.command == "serve":
        return serve_command(parser, args)
    if args.command == "listen":
        import asyncio

        from cdrq.listen import Listener

        listener = Listener(args.to, tz=args.tz, fold_every=args.fold_every)
        print(f"cdrq: listening on {args.host}:{args.port} ({'http' if args.http else 'tcp'})", file=sys.stderr)
        asyncio.run(listener.serve(args.host, args.port, http=args.http, cert=args.cert, key=args.key))
        return 0
    if args.command == "pull":
        from cdrq.pull import pull

        try:
            counts = pull(
                args.url,
                args.to,
                user=args.user,
                password=args.password,
                since=args.since,
                recordings=args.recordings,
                api=args.api,
                ca=args.ca,
                insecure=args.insecure,
                tz=args.tz,
            )
        except _core.CdrqError as e:
            print(f"cdrq: {e}", file=sys.stderr)
            return 1
        print(json.dumps(counts))
        return 0
    if args.command == "convert":
        try:
            source = args.source if len(args.source) > 1 else args.source[0]
            counts = convert(
                source,
                args.to,
                format=args.format,
                tz=args.tz,
                include=args.include,
                progress=args.progress,
                encoding=args.encoding,
            )
        except _core.CdrqError as e:
            print(f"cdrq: {e}", file=sys.stderr)
            return 1
        print(json.dumps(counts))
        return 0
    if len(args.archive) < 2:
        parser.error("give at least one archive and the query")
    *sources, qs = args.archive
    now = None
    if args.now:
        now = datetime.fromisoformat(args.now)
        now = now if now.tzinfo else now.replace(tzinfo=timezone.utc)
    source = sources if len(sources) > 1 else sources[0]
    if args.include and not is_dataset(source):
        try:
            source = expand(source, args.include)
        except _core.CdrqError as e:
            print(f"cdrq: {e}", file=sys.stderr)
            return 1
    if args.engine == "duckdb":
        return query_duckdb(source, qs, args, now)
    if args.engine == "spark":
        return query_spark(source, qs, args, now)
    try:
        if args.library:
            # Streams: only the matching legs (and main rows, for sessions) are kept.
            archive = scan(source, format=args.format, tz=args.tz, progress=args.progress, encoding=args.encoding)
            selected = query(archive, qs, now=now).collect()
            mains = archive.filter(pl.col("cdr_kind") == "main").collect()
            sys.stdout.write(render(selected, requested_format(qs), legs_of=mains, firmware=args.firmware))
        else:
            frame = read(source, format=args.format, tz=args.tz, encoding=args.encoding)
            sys.stdout.write(cdrapi(frame, qs, now=now, firmware=args.firmware))
    except _core.QueryError as e:
        print(f"cdrq: bad query: {e}", file=sys.stderr)
        return 2
    except _core.CdrqError as e:
        print(f"cdrq: {e}", file=sys.stderr)
        return 1
    return 0


def query_duckdb(source, qs: str, args: argparse.Namespace, now) -> int:
    """The query compiled to SQL and run by DuckDB over a dataset directory."""
    import duckdb

    from cdrq.dataset import scan_dataset
    from cdrq.sql import to_sql

    if not isinstance(source, str) or not is_dataset(source):
        print("cdrq: --engine duckdb reads a dataset directory (make one with cdrq convert)", file=sys.stderr)
        return 1
    try:
        sql = to_sql(qs, "duckdb", now=now, table="cdrs", cdrapi=not args.library)
    except _core.QueryError as e:
        if args.library:
            print(f"cdrq: bad query: {e}", file=sys.stderr)
            return 2
        sys.stdout.write(rejected(scan_dataset(source, args.tz).head(0).collect(), qs, e, firmware=args.firmware))
        return 0
    con = duckdb.connect()
    con.execute("SET TimeZone = ?", [zone_for(source, args.tz) or "UTC"])
    files = f"{source}/year=*/month=*/part-*.parquet"
    con.execute(f"CREATE VIEW cdrs AS SELECT * FROM read_parquet('{files}', union_by_name = true)")
    selected = pl.DataFrame(con.sql(sql))
    mains = pl.DataFrame(con.sql("SELECT * FROM cdrs WHERE cdr_kind = 'main'"))
    sys.stdout.write(render(selected, requested_format(qs), legs_of=mains, firmware=args.firmware))
    return 0


def query_spark(source, qs: str, args: argparse.Namespace, now) -> int:
    """The query run by Spark in local mode, read by the cdrq data source."""
    import os
    import pathlib

    from pyspark.sql import SparkSession
    from pyspark.sql import functions as F

    from cdrq.dataset import parts
    from cdrq.spark import register, spark_query

    tz = zone_for(source, args.tz)
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    spark = (
        SparkSession.builder.master("local[*]")
        .config("spark.sql.session.timeZone", tz or "UTC")
        .config("spark.ui.enabled", "false")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    register(spark)
    if isinstance(source, str) and is_dataset(source):
        df = spark.read.option("mergeSchema", "true").parquet(*parts(pathlib.Path(source)))
    else:
        path = source if isinstance(source, str) else ",".join(source)
        df = spark.read.format("cdrq").option("format", args.format).option("tz", tz).load(path)
    # Archive order: files by name (months, then runs), rows as read.
    df = df.withColumn("_order", F.struct(F.input_file_name(), F.monotonically_increasing_id()))
    try:
        selected = spark_query(df, qs, now=now, order_by="_order", cdrapi=not args.library).drop("_order")
    except _core.QueryError as e:
        if args.library:
            print(f"cdrq: bad query: {e}", file=sys.stderr)
            return 2
        empty = localise(pl.from_arrow(df.drop("_order").limit(0).toArrow()), tz)
        sys.stdout.write(rejected(empty, qs, e, firmware=args.firmware))
        return 0
    frame = localise(pl.from_arrow(selected.toArrow()), tz)
    mains = localise(pl.from_arrow(df.filter(F.col("cdr_kind") == "main").drop("_order").toArrow()), tz)
    sys.stdout.write(render(frame, requested_format(qs), legs_of=mains, firmware=args.firmware))
    spark.stop()
    return 0


def serve_command(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    import asyncio
    import tempfile
    from pathlib import Path

    from cdrq import server

    if args.self_signed == bool(args.cert and args.key):
        parser.error("give --cert and --key, or --self-signed")
    if not args.permit:
        print("cdrq: no --permit networks: every request will be refused (403), as on the UCM", file=sys.stderr)
    try:
        source = args.archive if len(args.archive) > 1 else args.archive[0]
        archive = server.open_archive(
            source,
            user=args.user,
            password=args.password,
            permit=args.permit,
            recordings=args.recordings,
            tz=args.tz,
            firmware=args.firmware,
        )
    except _core.CdrqError as e:
        print(f"cdrq: {e}", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        cert, key = server.self_signed(Path(tmp)) if args.self_signed else (args.cert, args.key)
        servers = server.servers(
            archive, cert=str(cert), key=str(key), host=args.host, port=args.port, api_port=args.api_port
        )
        print(f"cdrq: serving {archive.frame.height} records on https://{args.host}:{args.port}", file=sys.stderr)
        asyncio.run(server.serve_forever(servers))
    return 0


if __name__ == "__main__":
    sys.exit(main())
