"""Reading UCM XML (`cdr_root`, a main record and two legs per call):
``cdrq.read`` (typed) vs ``lxml.etree.iterparse`` + ``polars.DataFrame``
(strings), side by side in group "xml"."""

from __future__ import annotations

import polars as pl
import pytest

import cdrq

from .byhand import lxml_rows
from .measure import peak_memory, run


@pytest.mark.benchmark(group="xml")
def test_cdrq_read_xml(benchmark, xml_archive):
    df = run(benchmark, cdrq.read, xml_archive)
    assert df.schema["start"] == pl.Datetime("us", "UTC")


@pytest.mark.benchmark(group="xml")
def test_lxml_iterparse_dataframe(benchmark, xml_archive):
    df = run(benchmark, lxml_rows, xml_archive)
    assert df.height > 0


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
