"""The reference evaluator: the Lark grammar (cdrapi.lark) and the plain
words of docs/query-language.md, in slow, obvious Python. Tests only: it is the
yardstick the Rust compiler and the Polars evaluation are held to."""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from lark import Lark, Token, Tree
from lark.exceptions import LarkError

GRAMMAR = (Path(__file__).parent / "cdrapi.lark").read_text()
PARSER = Lark(GRAMMAR, start=["query", "digits", "pattern_list", "time", "webui_list"], parser="earley")

CDRAPI = {"format", "numrecords", "offset", "caller", "callee", "starttime", "endtime", "mindur", "maxdur"}
WEBUI = {
    "callernumber", "calleenumber", "callername", "status", "calltype", "srctrunk", "dsttrunk",
    "actiontype", "accountcode", "extgroup", "order",
}  # fmt: skip
ALLOWED_TIME = set("0123456789-:T.Z+now")


class Rejected(Exception):
    """The reference rejects the query."""


@dataclass
class Plan:
    format: str | None = None
    num_records: int | None = None
    offset: int | None = None
    patterns: dict[str, list[Tree]] = field(default_factory=dict)  # column -> items
    webui: dict[str, list[Tree]] = field(default_factory=dict)
    start_time: int | None = None
    end_time: int | None = None
    min_dur: int | None = None
    max_dur: int | None = None
    words: dict[str, list[str]] = field(default_factory=dict)
    descending: bool = False
    ext_members: set[str] | None = None


def parse(text: str, start: str) -> Tree:
    try:
        return PARSER.parse(text, start=start)
    except LarkError as e:
        raise Rejected(f"{start}: {e}") from None


def decode(raw: str) -> str:
    """Percent-decoding as HTML forms do; a malformed %-sequence is an error."""
    out = bytearray()
    i = 0
    while i < len(raw):
        c = raw[i]
        if c == "%":
            h = raw[i + 1 : i + 3]
            if len(h) != 2 or not all(x in "0123456789abcdefABCDEF" for x in h):
                raise Rejected("bad percent-encoding")
            out.append(int(h, 16))
            i += 3
        else:
            out.extend(b" " if c == "+" else c.encode())
            i += 1
    try:
        return out.decode()
    except UnicodeDecodeError:
        raise Rejected("not UTF-8") from None


def compile(qs: str, now_us: int, library: bool = True, groups: dict | None = None) -> Plan:
    qs = qs.split("?", 1)[1] if "?" in qs else qs
    plan = Plan()
    seen: set[str] = set()
    lists: dict[str, list[str]] = {}
    for piece in parse(qs, "query").children:
        name_tok = piece.children[0]
        value_tok = piece.children[1] if len(piece.children) > 1 else None
        name = decode(str(name_tok))
        key = name.lower()
        if key not in CDRAPI and not (library and key in WEBUI):
            raise Rejected("unknown parameter")
        if key in seen and key not in ("caller", "callee"):
            raise Rejected("twice")
        seen.add(key)
        value = decode(str(value_tok)) if value_tok is not None else ""
        if value == "":
            if key in ("starttime", "endtime"):
                continue
            raise Rejected("empty value")
        if key == "format":
            if value.lower() not in ("csv", "json", "xml"):
                raise Rejected("format")
            plan.format = value.lower()
        elif key in ("numrecords", "offset", "mindur", "maxdur"):
            number = int(str(parse(value, "digits").children[0]))
            setattr(plan, {"numrecords": "num_records", "mindur": "min_dur", "maxdur": "max_dur"}.get(key, key),
                    min(number, 2**64 - 1) if key in ("numrecords", "offset") else min(number, 2**63 - 1))  # fmt: skip
        elif key in ("caller", "callee"):
            parse(value, "pattern_list")  # each repeat on its own, then joined
            lists.setdefault(key, []).append(value)
        elif key in ("starttime", "endtime"):
            if set(value) - ALLOWED_TIME:
                raise Rejected("disallowed character")
            setattr(plan, "start_time" if key == "starttime" else "end_time", time_us(value, now_us))
        elif key in ("callernumber", "calleenumber"):
            plan.webui["src" if key == "callernumber" else "dst"] = parse(value, "webui_list").children
        else:
            items = value.split(",")
            if "" in items:
                raise Rejected("empty item")
            if key == "order":
                if value.lower() not in ("asc", "desc"):
                    raise Rejected("order")
                plan.descending = value.lower() == "desc"
            elif key == "status":
                if any(i.lower() not in ("answered", "noanswer", "no answer", "busy", "failed") for i in items):
                    raise Rejected("status")
                plan.words[key] = [i.lower().replace(" ", "") for i in items]
            elif key == "extgroup":
                if any(i not in (groups or {}) for i in items):
                    raise Rejected("group")
                plan.words[key] = items
                plan.ext_members = {m for i in items for m in (groups or {})[i]}
            elif key == "calltype":
                if any(i.lower() not in ("inbound", "outbound", "external", "internal", "remote") for i in items):
                    raise Rejected("calltype")
                plan.words[key] = [i.lower() for i in items]
            else:
                plan.words[key] = items
    for key, values in lists.items():
        plan.patterns["src" if key == "caller" else "dst"] = parse(",".join(values), "pattern_list").children
    return plan


def time_us(text: str, now_us: int) -> int:
    tree = parse(text, "time")
    first = tree.children[0]
    if isinstance(first, Token) and first.type == "NOW":
        return now_us
    if isinstance(first, Token) and first.type == "UNIX":
        return int(first) * 1_000_000
    date, clock = (2000, 1, 1), None
    for child in tree.children:
        if child.data == "date":
            y, m, d = (int(t) for t in child.children)
            if not (1 <= m <= 12 and 1 <= d <= calendar.monthrange(y, m)[1]):
                raise Rejected("calendar")
            date = (y, m, d)
        else:
            clock = child
    hour = minute = second = micro = offset = 0
    if clock is not None:
        nums = [t for t in clock.children if isinstance(t, Token)]
        hour, minute = int(nums[0]), int(nums[1])
        if len(nums) > 2:
            second = int(nums[2])
        if len(nums) > 3:
            micro = int(nums[3].ljust(6, "0"))
        zone = [c for c in clock.children if isinstance(c, Tree)]
        if zone and zone[0].children[0].type == "SIGN":
            sign, zh, zm = zone[0].children
            if int(zh) > 23 or int(zm) > 59:
                raise Rejected("zone")
            offset = (1 if sign == "+" else -1) * (int(zh) * 60 + int(zm))
        if hour > 23 or minute > 59 or second > 59:
            raise Rejected("clock")
    epoch = calendar.timegm((*date, hour, minute, second))
    return (epoch - offset * 60) * 1_000_000 + micro


def item_matches(item: Tree, value: str) -> bool:
    text = "".join(str(t) for t in item.scan_values(lambda _: True))
    if item.data == "wildcard":
        regex = "".join(".*" if c == "@" else "." if c == "_" else re.escape(c) for c in text)
        return re.fullmatch(regex, value, flags=re.S) is not None
    if item.data == "range":
        lo, hi = ("".join(str(t) for t in side.children) for side in item.children)
        as_int = lambda s: int("".join(c for c in s if c in "0123456789") or "0")  # noqa: E731
        return as_int(lo) <= as_int(value) <= as_int(hi)
    return value == text


def webui_matches(item: Tree, value: str) -> bool:
    regex = ""
    for tok in item.children:
        if tok.type == "PREFIX":
            regex += re.escape(str(tok))
        elif tok.type == "XRUN":
            regex += "[0-9]" * len(tok)
        else:
            regex += ".*"
    return re.fullmatch(regex, value, flags=re.S) is not None


def matches(plan: Plan, row: dict[str, Any]) -> bool:
    """Whether one record (a dict of the frame's row) is selected."""
    if row.get("cdr_kind") == "main":
        return False
    text = lambda c: row.get(c) or ""  # noqa: E731
    for column, items in plan.patterns.items():
        if not any(item_matches(i, text(column)) for i in items):
            return False
    for column, items in plan.webui.items():
        if not any(webui_matches(i, text(column)) for i in items):
            return False
    start = row.get("start")
    if plan.start_time is not None or plan.end_time is not None:
        if start is None:
            return False
        if start.tzinfo is None:
            start = start.replace(tzinfo=timezone.utc)
        us = (start - datetime(1970, 1, 1, tzinfo=timezone.utc)) // _US
        if plan.start_time is not None and us < plan.start_time:
            return False
        if plan.end_time is not None and us > plan.end_time:
            return False
    billsec = row.get("billsec")
    if plan.min_dur is not None and (billsec is None or billsec < plan.min_dur):
        return False
    if plan.max_dur is not None and (billsec is None or billsec > plan.max_dur):
        return False
    words = plan.words
    if "status" in words:
        wanted = {"answered": {"ANSWERED"}, "noanswer": {"NO ANSWER"}, "busy": {"BUSY"},
                  "failed": {"FAILED", "CONGESTION"}}  # fmt: skip
        if text("disposition").upper() not in set().union(*(wanted[w] for w in words["status"])):
            return False
    if "callername" in words and not any(w.lower() in text("caller_name").lower() for w in words["callername"]):
        return False
    for key, column in [
        ("srctrunk", "src_trunk_name"),
        ("dsttrunk", "dst_trunk_name"),
        ("accountcode", "accountcode"),
    ]:
        if key in words and text(column) not in words[key]:
            return False
    if plan.ext_members is not None and not {text("src"), text("dst")} & plan.ext_members:
        return False
    return True


_US = __import__("datetime").timedelta(microseconds=1)


def select(plan: Plan, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The selected rows, ordered and paged as the library API does."""
    out = [r for r in rows if matches(plan, r)]
    if plan.descending:
        out.reverse()
    if plan.offset is not None or plan.num_records is not None:
        start = plan.offset or 0
        out = out[start : None if plan.num_records is None else start + plan.num_records]
    return out
