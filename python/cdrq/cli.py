"""The `cdrq` command line."""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, timezone

from cdrq import _core
from cdrq.query import query
from cdrq.read import read
from cdrq.render import cdrapi, render

EXAMPLES = """examples:
  cdrq query archive/ 'format=json&caller=5300,6300-6399&callee=5@&minDur=8'
  cdrq query cdrs-2024-*.csv.gz 'startTime=2024-05-01&endTime=2024-05-31T23:59:59' --tz Europe/Berlin
  cdrq query --library cdrs.json 'callerNumber=3XXX&status=answered&order=desc'

exit status: 0 ok, 1 unreadable input, 2 bad query
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="cdrq",
        description="Telephone CDRs (Grandstream UCM, PortSIP): read, query like the PBX, render.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    q = commands.add_parser(
        "query",
        help="answer a CDR API query string over archives",
        description="Prints the UCM's /cdrapi response to QUERY over the ARCHIVE files (paths, globs, directories).",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    q.add_argument("archive", nargs="+", help="files, globs or directories; the last argument is the query")
    q.add_argument("--tz", default="UTC", help="the PBX's time zone (default UTC)")
    q.add_argument("--now", help="the instant `now` means (ISO 8601; default: the current time)")
    q.add_argument("--format", default="auto", help="input format (default: auto)")
    q.add_argument(
        "--library",
        action="store_true",
        help="library semantics: the web UI filters, every match unless numRecords/offset, errors reported",
    )
    args = parser.parse_args(argv)
    if len(args.archive) < 2:
        parser.error("give at least one archive and the query")
    *sources, qs = args.archive
    now = None
    if args.now:
        now = datetime.fromisoformat(args.now)
        now = now if now.tzinfo else now.replace(tzinfo=timezone.utc)
    try:
        frame = read(sources if len(sources) > 1 else sources[0], format=args.format, tz=args.tz)
    except _core.CdrqError as e:
        print(f"cdrq: {e}", file=sys.stderr)
        return 1
    try:
        if args.library:
            selected = query(frame, qs, now=now)
            fmt = next((v for k, _, v in (p.partition("=") for p in qs.split("&")) if k.lower() == "format"), "csv")
            sys.stdout.write(
                render(selected, fmt.lower() if fmt.lower() in ("csv", "json", "xml") else "csv", legs_of=frame)
            )
        else:
            sys.stdout.write(cdrapi(frame, qs, now=now))
    except _core.QueryError as e:
        print(f"cdrq: bad query: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
