"""The `cdrq` command line.

One handler per subcommand (``query_command``, ``convert_command``, …),
dispatched by :func:`main` through :func:`report`, which turns every
failure into one line on stderr and the exit status: 0 ok, 1 a runtime
failure (unreadable input, a file, port or host that fails), 2 a usage
error or a rejected query. ``--debug`` lets the traceback through instead.
"""

from __future__ import annotations

import argparse
import errno
import ipaddress
import json
import os
import socket
import sys
import warnings
from collections.abc import Callable
from datetime import date, datetime, timezone
from typing import Any, NoReturn

import polars as pl

from cdrq import _core
from cdrq.convert import convert
from cdrq.dataset import is_dataset, zone_for
from cdrq.query import compile_query, query
from cdrq.read import custom_columns, read
from cdrq.render import FIRMWARES, cdrapi, rejected, render, requested_format
from cdrq.scan import scan, scan_errors
from cdrq.services.server import CACHE_MIB, CACHE_MONTHS
from cdrq.sources import expand
from cdrq.zones import DEFAULT_TZ, localise

EXAMPLES = """examples:
  cdrq query archive/ 'format=json&caller=5300,6300-6399&callee=5@&minDur=8'
  cdrq query cdrs-2024-*.csv.gz 'startTime=2024-05-01&endTime=2024-05-31T23:59:59' --tz Europe/Berlin
  cdrq query --library cdrs.json 'callerNumber=3XXX&status=answered&order=desc'
  zcat cdrs.csv.gz | cdrq query - 'caller=5300'          # - reads the archive from stdin
  cdrq convert archive/ --to dataset/ --tz Europe/Berlin
  cdrq query --library dataset/ 'caller=5300&startTime=2024-05-01'
  cdrq report dataset/ --by trunk --every 1d --html report.html
"""

NOTES = """passwords (serve, pull): --password-file PATH (its first line; - for stdin),
  --password-env NAME, or the environment variable CDRQ_PASSWORD; --password
  works too but shows the password to anyone who can run ps.

errors: one line on stderr, "cdrq: what: why" (--debug shows the traceback).
exit status: 0 ok; 1 unreadable input or a runtime failure (file, port, network);
  2 usage error or a rejected query (without --library the PBX's empty answer is
  still printed on stdout, as the UCM sends it).
"""

REPORT_EXAMPLES = """examples:
  cdrq report archive/ --by trunk --every 1d
  cdrq report dataset/ --query 'startTime=2024-05-01&endTime=2024-05-31T23:59:59' --by direction --csv
  cdrq report archive/ --every hour_of_day --html report.html --png charts/
  cdrq report archive/ --html report.html --rates rates.csv
"""

#: The environment variable read for the password when no option names one.
PASSWORD_ENV = "CDRQ_PASSWORD"
LISTEN_TOKEN_ENV = "CDRQ_LISTEN_TOKEN"


class Usage(Exception):
    """A usage error found after parsing (conflicting options): exit 2."""


class Parser(argparse.ArgumentParser):
    """argparse with its usage errors on one line, like every other error."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def networks(text: str) -> list[str]:
    """``--permit``'s value: one network or several, comma-separated."""
    items = [t.strip() for t in text.split(",") if t.strip()]
    for item in items:
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a network (CIDR like 10.0.0.0/8): {item!r}") from None
    return items


def instant(text: str) -> datetime:
    """``--now``: ISO 8601, UTC unless it says otherwise."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from None
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def day(text: str) -> date:
    """``--since``: YYYY-MM-DD."""
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a day (YYYY-MM-DD): {text!r}") from None


def template_columns(text: str) -> list[str]:
    """``--columns``: names separated by commas, or a cdr_custom.conf mapping line."""
    names = custom_columns(text) if "${" in text else [name.strip() for name in text.split(",")]
    if not all(names):
        raise argparse.ArgumentTypeError(f"an empty column name in {text!r}")
    return names


#: Options several commands take, by name.
SHARED: dict[str, tuple[tuple[str, ...], dict[str, Any]]] = {
    "tz": (
        ("--tz",),
        {"default": DEFAULT_TZ, "help": "the PBX's time zone (default UTC; a dataset is shown in its own zone)"},
    ),
    "permit": (
        ("--permit",),
        {
            "type": networks,
            "action": "append",
            "default": [],
            "metavar": "CIDR",
            "help": "a network let in (repeatable, or comma-separated; none: everyone, as on the UCM)",
        },
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
    "columns": (
        ("--columns",),
        {
            "type": template_columns,
            "metavar": "NAMES",
            "help": "asterisk-custom: the template's column names, comma-separated, or its cdr_custom.conf "
            "mapping line (implies --format asterisk-custom)",
        },
    ),
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
    "cert": (("--cert",), {"help": "TLS certificate (PEM; with --key)"}),
    "key": (("--key",), {"help": "TLS private key (PEM; with --cert)"}),
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
            # None: not given, so on when stderr is a terminal (and no error where nothing can show).
            "default": None,
            "help": "show progress on stderr (default: when it is a terminal)",
        },
    ),
}


def command(commands: Any, name: str, help: str, description: str, epilog: str, *shared: str) -> Any:
    """A subcommand with the ``shared`` options (and ``password``'s three)."""
    sub = commands.add_parser(
        name, help=help, description=description, epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    for option in shared:
        if option == "password":
            group = sub.add_mutually_exclusive_group()
            group.add_argument("--password", help="the password (visible in ps: prefer the two below)")
            group.add_argument("--password-file", metavar="PATH", help="read the password from PATH (- : stdin)")
            group.add_argument("--password-env", metavar="NAME", help="read the password from variable NAME")
            continue
        flags, kwargs = SHARED[option]
        sub.add_argument(*flags, **kwargs)
    # SUPPRESS: `cdrq --debug query …` and `cdrq query --debug …` both count.
    sub.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
    return sub


def parser() -> Parser:
    top = Parser(
        prog="cdrq",
        description="Telephone CDRs (Grandstream UCM, PortSIP): read, query like the PBX, render.",
        epilog=EXAMPLES + "\n" + NOTES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    top.add_argument("--version", action="version", version=f"cdrq {_core.__version__}")
    top.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors")
    commands = top.add_subparsers(dest="command", required=True)
    q = command(
        commands,
        "query",
        "answer a CDR API query string over archives",
        "Prints the UCM's /cdrapi response to QUERY over the ARCHIVE files (paths, globs, directories; "
        "- reads one archive from stdin).",
        EXAMPLES + "\n" + NOTES,
        "tz",
        "format",
        "columns",
        "encoding",
        "include",
        "firmware",
        "progress",
    )
    q.add_argument("archive", nargs="+", help="files, globs or directories (- : stdin); the last argument is the query")
    q.add_argument("--now", type=instant, help="the instant `now` means (ISO 8601; default: the current time)")
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
        help="library semantics: the web UI filters, every match unless numRecords/offset, nothing on stdout "
        "for a rejected query",
    )
    q.set_defaults(handler=query_command)
    c = command(
        commands,
        "convert",
        "write archives into a month-partitioned Parquet dataset",
        "Reads SOURCE files (paths, globs, directories; - : stdin) into the Parquet dataset DIR "
        "(year=YYYY/month=MM/), appending without duplicating records; rejects go to DIR/_rejects/.",
        EXAMPLES + "\n" + NOTES,
        "to",
        "tz",
        "format",
        "columns",
        "encoding",
        "include",
        "progress",
    )
    c.add_argument("source", nargs="+", help="files, globs or directories (- : stdin)")
    c.set_defaults(handler=convert_command)
    s = command(
        commands,
        "serve",
        "answer the UCM's /cdrapi and /recapi (and the new /api) over HTTPS",
        "Serves ARCHIVE (files, globs, directories or a dataset) as a UCM serves its CDR API: "
        "/cdrapi and /recapi with Digest authentication on --port, the UCM63xx JSON API on --api-port.",
        "example:\n  CDRQ_PASSWORD=s3cret cdrq serve dataset/ --self-signed --user cdrapi "
        "--permit 10.0.0.0/8 --permit 192.168.1.0/24 --recordings /var/spool/asterisk\n\n" + NOTES,
        "user",
        "password",
        "cert",
        "key",
        "tz",
        "permit",
        "firmware",
    )
    s.add_argument("archive", nargs="+", help="files, globs, directories or a dataset directory")
    s.add_argument("--self-signed", action="store_true", help="make a throw-away certificate (not with --cert/--key)")
    s.add_argument("--host", default="0.0.0.0", help="address to listen on (default 0.0.0.0)")
    s.add_argument("--port", type=int, default=8443, help="legacy API port (default 8443)")
    s.add_argument("--api-port", type=int, default=8089, help="new JSON API port (default 8089; 0: off)")
    s.add_argument(
        "--trust-proxy",
        type=networks,
        action="append",
        default=[],
        metavar="CIDR",
        help="believe X-Forwarded-For from these peers (a reverse proxy; default: from none)",
    )
    s.add_argument("--recordings", help="the recordings root /recapi serves")
    s.add_argument("--access-log", metavar="PATH", help="append an access log (Common Log Format; - : stderr)")
    s.add_argument(
        "--max-failures",
        type=int,
        default=5,
        metavar="N",
        help="failed logins from one address before it is locked out (default 5; each costs a growing delay)",
    )
    s.add_argument(
        "--lockout", type=seconds, default=300.0, metavar="SECONDS", help="how long a lockout lasts (default 300)"
    )
    s.add_argument(
        "--max-connections", type=int, default=2000, metavar="N", help="open connections at most (default 2000)"
    )
    s.add_argument(
        "--header-timeout", type=seconds, default=10.0, metavar="SECONDS", help="to receive a request's headers (10)"
    )
    s.add_argument(
        "--request-timeout",
        type=seconds,
        default=60.0,
        metavar="SECONDS",
        help="to receive a whole request, headers and body (60)",
    )
    s.add_argument("--keep-alive", type=int, default=5, metavar="SECONDS", help="idle keep-alive connections (5)")
    s.add_argument(
        "--cache-months",
        type=positive,
        default=CACHE_MONTHS,
        metavar="N",
        help=f"a dataset is served by month: months held in memory at most (default {CACHE_MONTHS})",
    )
    s.add_argument(
        "--cache-mib",
        type=positive,
        default=CACHE_MIB,
        metavar="MIB",
        help=f"...and their size at most (default {CACHE_MIB})",
    )
    s.set_defaults(handler=serve_command)
    p = command(
        commands,
        "pull",
        "fetch every CDR (and recording) from a UCM into a dataset, incrementally",
        "Pulls the UCM at URL (https://host:8443 legacy API, https://host:8089 new API) month by month "
        "into the Parquet dataset --to; resumes where the last pull stopped, and says on stderr which "
        "window it fetches.",
        "example:\n  cdrq pull https://pbx.example:8443 --user cdrapi --password-file ~/.pbx --to ds/ --recordings\n\n"
        + NOTES,
        "user",
        "password",
        "to",
        "tz",
    )
    p.add_argument("url")
    p.add_argument(
        "--since",
        type=day,
        help="first day to pull (YYYY-MM-DD; default: where the last pull stopped, else the PBX's whole history)",
    )
    p.add_argument("--recordings", action="store_true", help="also download the recordings records name")
    p.add_argument("--api", default="auto", choices=["auto", "legacy", "new", "portsip"])
    p.add_argument("--ca", help="CA certificate to verify the PBX with")
    p.add_argument("--insecure", action="store_true", help="do not verify the PBX's certificate (not with --ca)")
    p.add_argument(
        "--max-page-mib", type=seconds, default=64, metavar="MIB", help="the largest page read, in MiB (default 64)"
    )
    p.add_argument(
        "--timeout", type=seconds, default=300, help="seconds one request may take, to its last byte (default 300)"
    )
    p.add_argument(
        "--deadline",
        type=seconds,
        default=6 * 3600,
        help="seconds the whole pull may take (default 21600); the next pull goes on from there",
    )
    p.set_defaults(handler=pull_command)
    li = command(
        commands,
        "listen",
        "receive the UCM's CDR real-time output (or PortSIP's webhook) into a dataset",
        "Accepts CDRs pushed by the PBX over TCP (or HTTP POST with --http), in JSON or XML, "
        "journals each record durably before anything else and folds them into the dataset --to.",
        "example:\n  cdrq listen --port 9000 --to dataset/\n\n" + NOTES,
        "to",
        "cert",
        "key",
        "tz",
        "permit",
        "encoding",
    )
    li.add_argument("--port", type=int, required=True)
    li.add_argument("--host", default="0.0.0.0")
    li.add_argument("--http", action="store_true", help="HTTP POSTs instead of raw TCP (PortSIP's webhook too)")
    li.add_argument("--fold-every", type=seconds, default=5.0, help="seconds between folds into the dataset")
    li.add_argument(
        "--max-unparsed-mib",
        type=positive,
        default=1024,
        metavar="MIB",
        help="the most noise kept in DATASET/_incoming/unparsed/ (past it, only its index lines; default 1024)",
    )
    li.add_argument(
        "--token-file",
        metavar="PATH",
        help=f"HTTP only: senders must give Authorization: Bearer TOKEN, TOKEN the first line of PATH "
        f"(else ${LISTEN_TOKEN_ENV} if set)",
    )
    li.set_defaults(handler=listen_command)
    r = command(
        commands,
        "report",
        "KPIs of the calls (not legs): a table, CSV or JSON, an HTML page with charts",
        "Counts the calls in ARCHIVE (files, globs, directories or a dataset; - : stdin) and their KPIs "
        "(calls, answered, ASR, ACD, talk time, short, missed, busy, failed) per --by group and --every "
        "bucket; prints a table (or --csv/--json), and with --html writes one page with charts that "
        "opens with no network.",
        REPORT_EXAMPLES + "\n" + NOTES,
        "tz",
        "format",
        "columns",
        "encoding",
        "include",
        "progress",
    )
    r.add_argument("archive", nargs="+", help="files, globs, directories or a dataset directory (- : stdin)")
    r.add_argument("--query", metavar="QS", help="a CDR API / web UI query selecting the legs first")
    r.add_argument(
        "--by",
        type=fields,
        action="append",
        default=[],
        metavar="FIELD",
        help="group by FIELD (repeatable, or comma-separated): trunk, direction, disposition, accountcode, "
        "action_type, answered_by, src, dst, src_prefix/dst_prefix (with --digits), or any column",
    )
    r.add_argument(
        "--every",
        type=bucket,
        metavar="BUCKET",
        help="a time bucket per row: 1m, 10m, 1h, 1d, 1w, 1mo (any count of m h d w mo), or the cyclic "
        "hour_of_day, day_of_week",
    )
    r.add_argument("--digits", type=positive, metavar="N", help="the prefix length of src_prefix/dst_prefix")
    r.add_argument(
        "--short", type=int, default=10, metavar="SECONDS", help="answered calls shorter than this are short (10)"
    )
    r.add_argument("--rates", metavar="FILE", help="a rate table (CSV: prefix, rate, …) for the cost chart")
    as_text = r.add_mutually_exclusive_group()
    as_text.add_argument("--csv", action="store_true", help="print the KPIs as CSV")
    as_text.add_argument("--json", action="store_true", help="print the KPIs as JSON (one object per row)")
    r.add_argument("--html", metavar="FILE", help="write the report with its charts as one self-contained page")
    r.add_argument("--png", metavar="DIR", help="write each chart as DIR/NAME.png (DIR made if missing)")
    r.set_defaults(handler=report_command)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    with warnings.catch_warnings():
        warnings.showwarning = show_warning
        return report(args.handler, args)


def show_warning(message: Warning | str, category: type[Warning], *_: object, **__: object) -> None:
    """A warning as one line of ours on stderr, not Python's file:line form."""
    print(f"cdrq: warning: {message}", file=sys.stderr)


def report(handler: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Runs a command's handler; any failure becomes one stderr line and the
    exit status (the traceback only with ``--debug``)."""
    try:
        return handler(args)
    except KeyboardInterrupt:
        return 130
    except Exception as e:
        if args.debug:
            raise
        status, text = describe(e, args)
        print(one_line(text), file=sys.stderr)
        return status


def describe(e: Exception, args: argparse.Namespace) -> tuple[int, str]:
    """The exit status and the line for an error."""
    if isinstance(e, Usage):
        return 2, f"cdrq {args.command}: error: {e} (see cdrq {args.command} --help)"
    if isinstance(e, _core.QueryError):
        return 2, f"cdrq: bad query: {e}"
    if isinstance(e, _core.CdrqError):
        return 1, f"cdrq: {e}"
    if isinstance(e, OSError) and e.filename is not None:
        return 1, f"cdrq: {e.filename}: {e.strerror or e}"
    if isinstance(e, (OSError, pl.exceptions.PolarsError)):
        return 1, f"cdrq: {args.command}: {e}"
    return 1, f"cdrq: {args.command}: {type(e).__name__}: {e} (--debug shows the traceback)"


def one_line(text: str) -> str:
    return " ".join(line.strip() for line in text.strip().splitlines())


def sources(items: list[str]) -> Any:
    """The archive arguments as a source: one, a list, or stdin's bytes for ``-``."""
    if "-" in items:
        if len(items) > 1:
            raise Usage("- (stdin) is the only archive when given")
        return sys.stdin.buffer.read()
    return items if len(items) > 1 else items[0]


def progress_of(args: argparse.Namespace) -> bool:
    return sys.stderr.isatty() if args.progress is None else args.progress


def directory_target(path: str) -> None:
    """``--to`` must be a directory (or not exist yet)."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise _core.CdrqError(f"--to {path}: not a directory")


def tls_pair(args: argparse.Namespace) -> None:
    """``--cert`` and ``--key`` come together, name readable files, and hold
    a certificate and its key: checked before anything is announced."""
    import ssl

    if bool(args.cert) != bool(args.key):
        raise Usage("give --cert and --key together")
    if not args.cert:
        return
    for option, path in (("--cert", args.cert), ("--key", args.key)):
        if not os.path.isfile(path):
            raise _core.CdrqError(f"{option} {path}: {'not a file' if os.path.exists(path) else 'no such file'}")
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(args.cert, args.key)
    except (ssl.SSLError, OSError) as e:
        raise _core.CdrqError(f"--cert {args.cert} / --key {args.key}: not a certificate and its key ({e})") from None


def bind(host: str, port: int, option: str) -> socket.socket:
    """A listening socket, or an error naming the address and the option."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family)
    except OSError as e:
        why = "address already in use" if e.errno == errno.EADDRINUSE else e.strerror or str(e)
        raise _core.CdrqError(f"{option} {port}: cannot listen on {host}:{port}: {why}") from None


def password(args: argparse.Namespace) -> str:
    """The password from the option given, else ``$CDRQ_PASSWORD``."""
    if args.password is not None:
        value, where = args.password, "--password"
    elif args.password_env is not None:
        if args.password_env not in os.environ:
            raise Usage(f"--password-env {args.password_env}: the variable is not set")
        value, where = os.environ[args.password_env], f"${args.password_env}"
    elif args.password_file is not None:
        if args.password_file == "-":
            value = sys.stdin.readline()
        else:
            try:
                with open(os.path.expanduser(args.password_file), encoding="utf-8") as f:
                    value = f.readline()
            except (OSError, UnicodeDecodeError) as e:
                why = e.strerror if isinstance(e, OSError) else "not UTF-8 text"
                raise _core.CdrqError(f"--password-file {args.password_file}: {why}") from None
        value, where = value.rstrip("\r\n"), f"--password-file {args.password_file}"
    elif PASSWORD_ENV in os.environ:
        value, where = os.environ[PASSWORD_ENV], f"${PASSWORD_ENV}"
    else:
        raise Usage(f"give --password-file, --password-env or --password (or set {PASSWORD_ENV})")
    if not value:
        raise Usage(f"{where}: the password is empty")
    return value


def query_command(args: argparse.Namespace) -> int:
    if len(args.archive) < 2:
        raise Usage("give at least one archive and the query")
    *items, qs = args.archive
    source = sources(items)
    if args.progress and args.engine != "polars":
        raise Usage(f"--progress shows nothing with --engine {args.engine}")
    if args.include and isinstance(source, (str, list)) and not is_dataset(source):
        source = expand(source, args.include)
    if args.engine == "duckdb":
        return query_duckdb(source, qs, args)
    if args.engine == "spark":
        return query_spark(source, qs, args)
    show = progress_of(args)
    if args.progress and is_dataset(source):
        warnings.warn("--progress shows nothing for a dataset (its Parquet is read directly)", stacklevel=1)
    with scan_errors():
        if args.library:
            # Streams: only the matching legs (and main rows, for sessions) are kept.
            archive = scan(
                source, format=args.format, tz=args.tz, progress=show, encoding=args.encoding, columns=args.columns
            )
            selected = query(archive, qs, now=args.now).collect()
            mains = archive.filter(pl.col("cdr_kind") == "main").collect()
            sys.stdout.write(render(selected, requested_format(qs), legs_of=mains, firmware=args.firmware))
            return 0
        # The PBX answers a query it rejects with an empty container; so does
        # this, and then says so on stderr (exit 2).
        error = rejection(qs, args.now)
        if show and not is_dataset(source):
            frame = scan(
                source, format=args.format, tz=args.tz, progress=True, encoding=args.encoding, columns=args.columns
            ).collect()
        else:
            frame = read(source, format=args.format, tz=args.tz, encoding=args.encoding, columns=args.columns)
        sys.stdout.write(cdrapi(frame, qs, now=args.now, firmware=args.firmware))
    if error is not None:
        raise error
    return 0


def rejection(qs: str, now: datetime | None) -> _core.QueryError | None:
    """The error the CDR API answers ``qs`` with, if it rejects it."""
    try:
        compile_query(qs, now, library=False)
    except _core.QueryError as e:
        return e
    return None


def query_duckdb(source: Any, qs: str, args: argparse.Namespace) -> int:
    """The query compiled to SQL and run by DuckDB over a dataset directory."""
    import tempfile

    import duckdb

    from cdrq.dataset import scan_dataset
    from cdrq.engines.sql import to_sql

    if not isinstance(source, str) or not is_dataset(source):
        raise _core.CdrqError("--engine duckdb reads a dataset directory (make one with cdrq convert)")
    try:
        sql = to_sql(qs, "duckdb", now=args.now, table="cdrs", cdrapi=not args.library)
    except _core.QueryError as e:
        if not args.library:
            empty = scan_dataset(source, args.tz).head(0).collect()
            sys.stdout.write(rejected(empty, qs, e, firmware=args.firmware))
        raise
    zone = zone_for(source, args.tz)
    files = f"{source}/year=*/month=*/part-*.parquet".replace("'", "''")
    with tempfile.TemporaryDirectory() as tmp, duckdb.connect() as con:
        con.execute("SET TimeZone = ?", [zone or "UTC"])
        con.execute(f"CREATE VIEW cdrs AS SELECT * FROM read_parquet('{files}', union_by_name = true)")

        # Results come over as Parquet, not Polars's Arrow import of a
        # relation: that one leaves DuckDB objects alive at exit, and
        # nanobind floods stderr with "leaked … instances" (duckdb 2.0).
        def fetch(select: str, name: str) -> pl.DataFrame:
            path = os.path.join(tmp, name).replace("'", "''")
            con.execute(f"COPY ({select}) TO '{path}' (FORMAT parquet)")
            return localise(pl.read_parquet(path), zone)

        selected = fetch(sql, "selected.parquet")
        mains = fetch("SELECT * FROM cdrs WHERE cdr_kind = 'main'", "mains.parquet")
    sys.stdout.write(render(selected, requested_format(qs), legs_of=mains, firmware=args.firmware))
    return 0


def query_spark(source: Any, qs: str, args: argparse.Namespace) -> int:
    """The query run by Spark in local mode, read by the cdrq data source."""
    import pathlib
    import tempfile

    from pyspark.sql import SparkSession
    from pyspark.sql import functions as F

    from cdrq.dataset import parts
    from cdrq.engines.spark import register, spark_query

    if isinstance(source, bytes):
        raise Usage("--engine spark reads files, not stdin")
    tz = zone_for(source, args.tz)
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    # The JVM's own chatter (log profile, native-hadoop warning, stage bars)
    # is no concern of a cdrq user: errors only, no console progress.
    logs = tempfile.TemporaryDirectory()
    quiet = pathlib.Path(logs.name) / "log4j2.properties"
    quiet.write_text(
        "rootLogger.level = error\nrootLogger.appenderRef.stderr.ref = console\n"
        "appender.console.type = Console\nappender.console.name = console\nappender.console.target = SYSTEM_ERR\n"
        "appender.console.layout.type = PatternLayout\nappender.console.layout.pattern = spark: %p %c{1}: %m%n\n"
        # Spark's loggers set too, or Spark prints "Setting default log level".
        "logger.spark.name = org.apache.spark\nlogger.spark.level = error\n"
    )
    spark = (
        SparkSession.builder.master("local[*]")
        .config("spark.sql.session.timeZone", tz or "UTC")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.driver.extraJavaOptions", f"-Dlog4j2.configurationFile={quiet.as_uri()}")
        .getOrCreate()
    )
    logs.cleanup()  # read once, at the JVM's start
    try:
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
            selected = spark_query(df, qs, now=args.now, order_by="_order", cdrapi=not args.library).drop("_order")
        except _core.QueryError as e:
            if not args.library:
                empty = localise(pl.from_arrow(df.drop("_order").limit(0).toArrow()), tz)
                sys.stdout.write(rejected(empty, qs, e, firmware=args.firmware))
            raise
        frame = localise(pl.from_arrow(selected.toArrow()), tz)
        mains = localise(pl.from_arrow(df.filter(F.col("cdr_kind") == "main").drop("_order").toArrow()), tz)
        sys.stdout.write(render(frame, requested_format(qs), legs_of=mains, firmware=args.firmware))
    finally:
        spark.stop()
    return 0


def convert_command(args: argparse.Namespace) -> int:
    directory_target(args.to)
    counts = convert(
        sources(args.source),
        args.to,
        format=args.format,
        tz=args.tz,
        include=args.include,
        progress=progress_of(args),
        encoding=args.encoding,
        columns=args.columns,
    )
    print(json.dumps(counts))
    return 0


def serve_command(args: argparse.Namespace) -> int:
    import asyncio
    import tempfile
    from pathlib import Path

    from cdrq.services import server

    if args.self_signed and (args.cert or args.key):
        raise Usage("--self-signed makes its own certificate: give it or --cert/--key, not both")
    if not args.self_signed and not (args.cert or args.key):
        raise Usage("give --cert and --key, or --self-signed")
    permit = [network for given in args.permit for network in given]
    for item in args.archive:
        # `--permit A B archive` meant two networks: say so rather than read "B".
        if not os.path.exists(item) and looks_like_network(item):
            raise Usage(f"{item!r} is a network, not an archive: give --permit once per network (or A,B)")
    secret = password(args)
    tls_pair(args)
    if not permit:
        warnings.warn("no --permit networks: every address may connect, as on the UCM", stacklevel=1)
    if args.access_log:
        import logging

        handler = logging.StreamHandler() if args.access_log == "-" else logging.FileHandler(args.access_log)
        logging.getLogger("cdrq.access").addHandler(handler)
        logging.getLogger("cdrq.access").setLevel(logging.INFO)
    listeners = [bind(args.host, args.port, "--port")]
    if args.api_port:
        listeners.append(bind(args.host, args.api_port, "--api-port"))
    archive = server.open_archive(
        sources(args.archive),
        user=args.user,
        password=secret,
        permit=permit,
        recordings=args.recordings,
        tz=args.tz,
        firmware=args.firmware,
        cache_months=args.cache_months,
        cache_bytes=args.cache_mib << 20,
    )
    with tempfile.TemporaryDirectory() as tmp:
        cert, key = server.self_signed(Path(tmp)) if args.self_signed else (args.cert, args.key)
        servers = server.servers(
            archive,
            cert=str(cert),
            key=str(key),
            host=args.host,
            port=args.port,
            api_port=args.api_port,
            trust_proxy=[network for given in args.trust_proxy for network in given],
            limits=server.Limits(
                header_timeout=args.header_timeout,
                request_timeout=args.request_timeout,
                keep_alive=args.keep_alive,
                connections=args.max_connections,
            ),
            guard=server.Guard(failures=args.max_failures, lockout=args.lockout),
        )
        print(f"cdrq: serving {archive.records} records on https://{args.host}:{args.port}", file=sys.stderr)

        async def serve() -> None:
            # The sockets bound above: a port in use was reported before "serving".
            await asyncio.gather(*(s.serve(sockets=[sock]) for s, sock in zip(servers, listeners, strict=True)))

        asyncio.run(serve())
    return 0


def looks_like_network(text: str) -> bool:
    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        return False
    return True


def positive(text: str) -> int:
    """A whole number, one or more (months, MiB)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more: {text!r}")
    return value


def seconds(text: str) -> float:
    """A finite number, zero or more (seconds, MiB)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 <= value < float("inf"):  # NaN too
        raise argparse.ArgumentTypeError(f"must be a finite number, zero or more: {text!r}")
    return value


def pull_command(args: argparse.Namespace) -> int:
    from cdrq.services.pull import Limits, pull

    if args.ca and args.insecure:
        raise Usage("--insecure verifies nothing: give it or --ca, not both")
    directory_target(args.to)
    counts = pull(
        args.url,
        args.to,
        user=args.user,
        password=password(args),
        since=args.since,
        recordings=args.recordings,
        api=args.api,
        ca=args.ca,
        insecure=args.insecure,
        tz=args.tz,
        limits=Limits(max_page_bytes=int(args.max_page_mib * (1 << 20)), timeout=args.timeout, deadline=args.deadline),
        report=lambda line: print(f"cdrq: pull: {line}", file=sys.stderr, flush=True),
    )
    print(json.dumps(counts))
    return 0


def listen_token(args: argparse.Namespace) -> str | None:
    """The bearer token HTTP senders must give: --token-file's first line,
    else ``$CDRQ_LISTEN_TOKEN``; none for TCP (the UCM's TCP output cannot
    send one: --permit is its defence)."""
    if args.token_file is None:
        return os.environ.get(LISTEN_TOKEN_ENV) or None if args.http else None
    if not args.http:
        raise Usage("--token-file needs --http (the UCM's TCP output sends no token: use --permit)")
    try:
        with open(os.path.expanduser(args.token_file), encoding="utf-8") as f:
            token = f.readline().rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as e:
        why = e.strerror if isinstance(e, OSError) else "not UTF-8 text"
        raise _core.CdrqError(f"--token-file {args.token_file}: {why}") from None
    if not token:
        raise Usage(f"--token-file {args.token_file}: the token is empty")
    return token


def listen_command(args: argparse.Namespace) -> int:
    import asyncio

    from cdrq.services.listen import Listener

    directory_target(args.to)
    tls_pair(args)
    # Listener.serve binds by itself; a port in use is reported here, before
    # "listening", by binding it once first.
    bind(args.host, args.port, "--port").close()
    token = listen_token(args)
    permit = [network for item in args.permit for network in item] or None
    if permit is None:
        print("cdrq: listen: any address may send (give --permit to say which)", file=sys.stderr)
    listener = Listener(
        args.to,
        tz=args.tz,
        fold_every=args.fold_every,
        permit=permit,
        token=token,
        max_unparsed=args.max_unparsed_mib << 20,
        encoding=args.encoding,
    )
    print(f"cdrq: listening on {args.host}:{args.port} ({'http' if args.http else 'tcp'})", file=sys.stderr)
    asyncio.run(listener.serve(args.host, args.port, http=args.http, cert=args.cert, key=args.key))
    return 0


def bucket(text: str) -> str:
    """``--every``'s value, checked as ``cdrq.report`` checks it."""
    from cdrq import analytics

    try:
        analytics.bucket(text)
    except _core.CdrqError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def fields(text: str) -> list[str]:
    """``--by``'s value: one field or several, comma-separated."""
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise argparse.ArgumentTypeError("give a field name")
    return items


def writable_file(option: str, path: str) -> None:
    """An output file's directory exists and the path is no directory:
    checked before the archive is read."""
    directory = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise _core.CdrqError(f"{option} {path}: is a directory")
    if not os.path.isdir(directory):
        raise _core.CdrqError(f"{option} {path}: no such directory: {directory}")


def report_command(args: argparse.Namespace) -> int:
    from cdrq.analytics import PREFIX_GROUPS
    from cdrq.analytics import report as kpis
    from cdrq.reports import text_table

    by = [field for given in args.by for field in given] or None
    prefixes = [field for field in by or () if field in PREFIX_GROUPS]
    if prefixes and args.digits is None:
        raise Usage(f"--by {prefixes[0]} needs --digits N (the leading digits)")
    if args.digits is not None and not prefixes:
        raise Usage("--digits counts only with --by src_prefix or dst_prefix")
    if args.short < 0:
        raise Usage(f"--short {args.short}: seconds, zero or more")
    drawn = args.html is not None or args.png is not None
    if args.rates is not None and not drawn:
        raise Usage("--rates prices the calls for the cost chart: give --html or --png too")
    if args.html is not None:
        writable_file("--html", args.html)
    if args.png is not None and os.path.exists(args.png) and not os.path.isdir(args.png):
        raise _core.CdrqError(f"--png {args.png}: not a directory")
    if drawn:
        from cdrq.reports import require

        require()  # before the archive is read: say what to install first
    rates = load_rates(args.rates) if args.rates is not None else None
    source = sources(args.archive)
    if args.include and isinstance(source, (str, list)) and not is_dataset(source):
        source = expand(source, args.include)
    show = progress_of(args)
    with scan_errors():
        archive = scan(
            source, format=args.format, tz=args.tz, progress=show, encoding=args.encoding, columns=args.columns
        )
        legs = query(archive, args.query) if args.query else archive
        if drawn:
            from cdrq.reports.html import calls_of

            legs = calls_of(legs, by, args.digits)  # grouped once, asked every question
        table = kpis(legs, by=by, every=args.every, short=args.short, digits=args.digits)
        if drawn:
            draw(args, legs, table, rates, show)
    if args.csv:
        sys.stdout.write(table.write_csv())
    elif args.json:
        sys.stdout.write(table.write_json() + "\n")
    else:
        sys.stdout.write(text_table(table))
    return 0


def load_rates(path: str) -> pl.DataFrame:
    """``--rates``: the rate table, checked before the archive is read."""
    from cdrq.analytics import rate_table

    try:
        return rate_table(path)
    except _core.CdrqError as e:
        raise _core.CdrqError(f"--rates {path}: {str(e).removeprefix(f'{path}: ')}") from None


def draw(args: argparse.Namespace, calls: pl.DataFrame, table: pl.DataFrame, rates: Any, show: bool) -> None:
    """``--html`` and ``--png``: the charts of the report."""
    from cdrq.reports import html

    sections, summary = html.sections(calls, rates, progress=show)
    if args.html is not None:
        about = {"archive": " ".join(args.archive)}
        if args.query:
            about["query"] = args.query
        if args.by or args.every:
            about["KPIs"] = " ".join(f"by {f}" for given in args.by for f in given) + (
                f" every {args.every}" if args.every else ""
            )
        text = html.page(sections, table, summary, about, title="cdrq report")
        with open(args.html, "w", encoding="utf-8") as f:
            f.write(text)
        charted = sum(section.chart is not None for section in sections)
        print(f"cdrq: report: wrote {args.html} ({charted} charts)", file=sys.stderr)
    if args.png is not None:
        written = html.write_pngs(args.png, sections)
        print(f"cdrq: report: wrote {len(written)} PNGs into {args.png}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
