"""The README's Python examples run as written (from the repository root),
and so do the doctests: the ``>>>`` examples in python/cdrq's docstrings and
the ``pycon`` blocks of docs/ and the README."""

from __future__ import annotations

import doctest
import importlib
import os
import pkgutil
import re
from pathlib import Path

import pytest

import cdrq

ROOT = Path(__file__).resolve().parent.parent
BLOCKS = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)
# Every module of the package (the optional dependencies of cdrq.services.server and
# cdrq.engines.spark are in the dev environment); __main__ would run the CLI.
MODULES = ["cdrq"] + [m.name for m in pkgutil.walk_packages(cdrq.__path__, "cdrq.") if m.name != "cdrq.__main__"]
PAGES = ["README.md", *sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "docs").glob("*.md"))]
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def run_doctests(tests: list[doctest.DocTest]) -> doctest.TestResults:
    """Runs the examples from the repository root; a failure's report is the
    assertion message."""
    report: list[str] = []
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        for test in tests:
            runner.run(test, out=report.append)
    finally:
        os.chdir(cwd)
    results = runner.summarize(verbose=False)
    assert results.failed == 0, "".join(report)
    return results


@pytest.mark.parametrize("code", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_readme_example_runs(code, capsys):
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        exec(compile(code, "README.md", "exec"), {})
    finally:
        os.chdir(cwd)
    out = capsys.readouterr().out
    assert out.strip()
    for expected in re.findall(r"# (\d+ \d+ .+)$", code, flags=re.M):
        assert expected in out


@pytest.mark.parametrize("name", MODULES)
def test_module_doctests(name):
    module = importlib.import_module(name)
    run_doctests(doctest.DocTestFinder().find(module, name))


@pytest.mark.parametrize("page", PAGES)
def test_page_doctests(page):
    """A page's ``pycon`` blocks run as one doctest, in order, sharing names."""
    text = (ROOT / page).read_text()
    blocks = re.findall(r"```pycon\n(.*?)```", text, flags=re.S)
    test = doctest.DocTestParser().get_doctest("\n".join(blocks), {}, page, str(ROOT / page), 0)
    run_doctests([test])


def test_docs_stand_alone():
    """The README and docs/ point at nothing outside the repository, and the
    relative links they hold lead to files that are here."""
    for page in PAGES:
        text = (ROOT / page).read_text()
        assert not re.search(r"\.\./(shared|spec|samples)\b|shared/spec", text), page
        for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text):
            if not re.match(r"[a-z]+:", target):
                path = ((ROOT / page).parent / target).resolve()
                assert path.is_relative_to(ROOT) and path.exists(), (page, target)


def test_there_are_doctests():
    examples = 0
    for name in MODULES:
        examples += sum(len(t.examples) for t in doctest.DocTestFinder().find(importlib.import_module(name), name))
    assert examples >= 5
