"""The wheel `make wheel` builds installs where no Rust toolchain is, and the
README's examples run against the installed package; one version number."""

from __future__ import annotations

import fnmatch
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import cdrq

ROOT = Path(__file__).resolve().parent.parent
WHEELS = ROOT / "target" / "wheels"
WHEELHOUSE = ROOT / ".venv" / "wheelhouse"
VERSION = re.search(r'^version = "(.+)"$', (ROOT / "rust" / "Cargo.toml").read_text(), flags=re.M).group(1)
# What goes into the wheel: a file newer than it means it is rebuilt here.
INPUTS = ["rust/src", "python/cdrq", "Cargo.toml", "rust/Cargo.toml", "Cargo.lock", "pyproject.toml", "README.md"]

# Run by the installed interpreter, isolated (-I: no PYTHON* variables, no
# user site, not even the script's folder on sys.path), from a folder holding
# only a copy of tests/samples: the source tree's python/ cannot be imported.
CHILD = r"""
import contextlib, importlib.metadata, io, json, re, shutil, sys
import cdrq

assert shutil.which("cargo") is None and shutil.which("rustc") is None, "a Rust toolchain is on PATH"
blocks = re.findall(r"```python\n(.*?)```", open(sys.argv[1], encoding="utf-8").read(), flags=re.S)
outputs = []
for code in blocks:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md", "exec"), {})
    outputs.append(out.getvalue())
print(json.dumps({
    "file": cdrq.__file__,
    "core": cdrq._core.__file__,
    "version": cdrq.__version__,
    "dist_version": importlib.metadata.version("cdrq"),
    "blocks": blocks,
    "outputs": outputs,
}))
"""


def newest_input() -> float:
    times = []
    for name in INPUTS:
        path = ROOT / name
        files = path.rglob("*") if path.is_dir() else [path]
        times += [f.stat().st_mtime for f in files if f.is_file() and "__pycache__" not in f.parts]
    return max(times)


def wheel() -> Path:
    """`make wheel`'s wheel for this version, rebuilt (only packaging, once
    `make build` is current) when a source is newer than it."""
    found = sorted(WHEELS.glob(f"cdrq-{VERSION}-cp310-abi3-*.whl"))
    if not found or found[-1].stat().st_mtime < newest_input():
        for old in found:
            old.unlink()
        subprocess.run(
            [sys.executable, "-m", "maturin", "build", "--release", "--quiet", "--out", str(WHEELS)],
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
        found = sorted(WHEELS.glob(f"cdrq-{VERSION}-cp310-abi3-*.whl"))
    assert len(found) == 1, found
    return found[0]


def without_rust(path: str) -> str:
    """PATH less every folder holding cargo or rustc."""
    keep = [d for d in path.split(os.pathsep) if d and not any((Path(d) / t).exists() for t in ("cargo", "rustc"))]
    return os.pathsep.join(keep)


def test_wheel_installs_without_rust_and_runs_the_readme(tmp_path):
    built = wheel()
    assert (WHEELHOUSE / ".downloaded").exists(), "run `make wheel`: it downloads the dependencies' wheels"
    env_dir = tmp_path / "env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], check=True)
    python = env_dir / "bin" / "python"
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PYTHON", "CARGO", "RUSTUP", "VIRTUAL_ENV", "MATURIN", "PYO3"))
    }
    env["PATH"] = os.pathsep.join([str(env_dir / "bin"), without_rust(os.environ.get("PATH", ""))])
    env["VIRTUAL_ENV"] = str(env_dir)
    # pip of the test's own environment, installing into the fresh one, from
    # local wheels only.
    pip = [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run(
        [*pip, "--no-index", "--only-binary=:all:", "--find-links", str(WHEELHOUSE), f"{built}[sql]"],
        env=env,
        check=True,
    )
    work = tmp_path / "work"
    shutil.copytree(ROOT / "tests" / "samples", work / "tests" / "samples")
    shutil.copy(ROOT / "README.md", work / "README.md")
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    run = subprocess.run(
        [str(python), "-I", str(script), "README.md"], cwd=work, env=env, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)

    site = env_dir.resolve()
    assert Path(result["file"]).resolve().is_relative_to(site), result["file"]
    assert Path(result["core"]).name == "_core.abi3.so" and Path(result["core"]).resolve().is_relative_to(site)
    assert result["version"] == result["dist_version"] == VERSION
    assert result["blocks"], "the README has no Python example"
    for code, out in zip(result["blocks"], result["outputs"], strict=True):
        assert out.strip(), code
        for expected in re.findall(r"# (\d+ \d+ .+)$", code, flags=re.M):
            assert expected in out

    # The console script too.
    cli = subprocess.run(
        [str(env_dir / "bin" / "cdrq"), "query", "tests/samples/ucm6510-fw1.0.2.5-cdrapi.csv", "caller=5300"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
    )
    assert cli.returncode == 0, cli.stderr
    assert cli.stdout.startswith("AcctId,")


def test_readme_install_leads_with_the_wheel():
    """The README's install section starts with `pip install` of the file
    `make wheel` builds."""
    section = (ROOT / "README.md").read_text().split("\n## Install\n", 1)[1]
    first = re.search(r"```sh\n(.*?)\n", section).group(1)
    pattern = re.match(r"pip install (\S+\.whl)\s", first).group(1)
    assert fnmatch.fnmatch(wheel().relative_to(ROOT).as_posix(), pattern)


def test_one_version_number():
    """pyproject takes the version from Cargo; the module and the installed
    distribution say the crate's."""
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert re.search(r'^dynamic = \["version"\]$', pyproject, flags=re.M)
    assert not re.search(r"^version\s*=", pyproject, flags=re.M)
    assert cdrq.__version__ == importlib.metadata.version("cdrq") == VERSION
