"""The routes a user would write by hand, for the benchmarks to race."""

from __future__ import annotations

import re

import orjson
import polars as pl
from lxml import etree

LEG = re.compile(r"sub_cdr_(\d+)")


def orjson_flat(path):
    return pl.DataFrame(orjson.loads(path.read_bytes())["cdr"])


def polars_flat(path):
    return pl.read_json(path).explode("cdr").unnest("cdr")


def orjson_nested(path):
    rows = []
    for call in orjson.loads(path.read_bytes())["cdr_root"]:
        if not call:
            continue
        if main := call.get("main_cdr"):
            rows.append({**main, "cdr_kind": "main", "leg": 0})
        legs = sorted((int(m.group(1)), v) for k, v in call.items() if (m := LEG.fullmatch(k)) and v)
        rows.extend({**leg, "cdr_kind": "sub", "leg": n} for n, leg in legs)
    return pl.DataFrame(rows)


def lxml_rows(path):
    rows = []
    for _, call in etree.iterparse(str(path), tag="cdr"):
        for leg in call:
            m = LEG.fullmatch(leg.tag)
            row = {field.tag: field.text for field in leg}
            row["cdr_kind"], row["leg"] = ("sub", int(m.group(1))) if m else ("main", 0)
            rows.append(row)
        call.clear()
    return pl.DataFrame(rows)
