"""Reading UCM XML (`cdr_root`, a main record and two legs per call):
``cdrq.read`` (typed) vs ``lxml.etree.iterparse`` + ``polars.DataFrame``
(strings), side by side in group "xml"; ``test_side_by_side_xml`` alternates
them round by round and checks they return the same rows."""

from __future__ import annotations

import polars as pl
import pytest

import cdrq

from .byhand import lxml_rows
from .measure import peak_memory, ratio_table, run, same_rows, side_by_side
from .test_bench_read_json import CHECKED, as_text_times


@pytest.mark.benchmark(group="xml")
def test_cdrq_read_xml(benchmark, xml_archive):
    df = run(benchmark, cdrq.read, xml_archive)
    assert df.schema["start"] == pl.Datetime("us", "UTC")


@pytest.mark.benchmark(group="xml")
def test_lxml_iterparse_dataframe(benchmark, xml_archive):
    df = run(benchmark, lxml_rows, xml_archive)
    assert df.height > 0


def test_side_by_side_xml(xml_archive):
    routes = {
        "cdrq.read": lambda: cdrq.read(xml_archive),
        "lxml.iterparse + polars.DataFrame": lambda: lxml_rows(xml_archive),
    }
    results: dict[str, pl.DataFrame] = {}

    def keep(name, frame):
        results[name] = as_text_times(frame) if name.startswith("cdrq") else frame

    times = side_by_side(routes, rounds=3, same=keep)
    same_rows(results, [*CHECKED, "leg"])  # not `cdr_kind`: see test_side_by_side_json
    mb = xml_archive.stat().st_size / 1e6
    print(f"\n{xml_archive.name}, {mb:.0f} MB, 3 alternating rounds:")
    print(ratio_table(times, mb, "cdrq.read"))


@pytest.mark.benchmark(group="memory")
def test_peak_memory_xml(benchmark, xml_archive):
    report = peak_memory(
        {
            "cdrq-xml": ("cdrq.read(path)", xml_archive),
            "lxml-xml": ("__import__('byhand').lxml_rows(path)", xml_archive),
        }
    )
    benchmark.extra_info.update(report)
    benchmark.pedantic(lambda: None, rounds=1)
