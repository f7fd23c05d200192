"""The UCM's `/recapi` over a recordings root: listings, one WAV, or a tar
of several — and never a byte from outside the root.

Decisions where the vendor is silent: listings are CSV without a header,
one entry per line (directories: ``name``; files: ``filedir,name``, a file
in a month folder as ``filedir,2024-05/name``); a name is looked up in
``filedir`` and then in its month folders (``YYYY-MM``), newest first.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

MONTH = re.compile(r"^\d{4}-\d{2}$")


class NotFound(Exception):
    """Answered 404 (legacy API) or -25 (new API)."""


class TooLarge(Exception):
    """A tar past the caps: answered 413."""


def safe_name(name: str) -> bool:
    """A single path component the API may name: no separator, no space,
    no ``..``, no NUL, not hidden, at most 255 bytes."""
    return (
        0 < len(name.encode("utf-8", "surrogateescape")) <= 255
        and not any(c in name for c in "/\\\0 ")
        and ".." not in name
        and not name.startswith(".")
    )


class Recordings:
    def __init__(self, root: str | os.PathLike[str], max_files: int = 256, max_bytes: int = 2 << 30) -> None:
        self.root = Path(root).resolve()
        self.max_files, self.max_bytes = max_files, max_bytes

    def inside(self, path: Path) -> Path | None:
        """``path`` with links resolved, if it stays inside the root."""
        real = path.resolve()
        return real if real == self.root or self.root in real.parents else None

    def directories(self) -> str:
        names = sorted(p.name for p in self.root.iterdir() if p.is_dir() and safe_name(p.name) and self.inside(p))
        return "".join(f"{n}\n" for n in names)

    def files(self, filedirs: list[str]) -> str:
        lines = []
        for filedir in filedirs:
            directory = self.directory(filedir)
            for entry in sorted(directory.iterdir()):
                if entry.is_dir() and MONTH.match(entry.name) and self.inside(entry):
                    lines.extend(
                        f"{filedir},{entry.name}/{f.name}\n" for f in sorted(entry.iterdir()) if self.usable(f)
                    )
                elif self.usable(entry):
                    lines.append(f"{filedir},{entry.name}\n")
        return "".join(lines)

    def directory(self, filedir: str) -> Path:
        if not safe_name(filedir):
            raise NotFound(filedir)
        real = self.inside(self.root / filedir)
        if real is None or not real.is_dir():
            raise NotFound(filedir)
        return real

    def usable(self, path: Path) -> bool:
        return path.is_file() and safe_name(path.name) and self.inside(path) is not None

    def find(self, filedir: str, name: str) -> Path | None:
        """The file ``name`` in ``filedir`` or one of its month folders."""
        if not safe_name(name):
            return None
        directory = self.directory(filedir)
        months = sorted((p for p in directory.iterdir() if p.is_dir() and MONTH.match(p.name)), reverse=True)
        for folder in [directory, *months]:
            candidate = folder / name
            if self.usable(candidate):
                return self.inside(candidate)
        return None

    def fetch(self, filedir: str, names: list[str]) -> tuple[str, Path | list[Path]]:
        """One file (its path) or the files of a tar (a list, in the order
        asked, each once); names with a space or ``..`` are skipped; none
        found → NotFound; past the caps → TooLarge."""
        unique = list(dict.fromkeys(names))
        if len(unique) > self.max_files:
            raise TooLarge(f"at most {self.max_files} files in one tar")
        found = list(dict.fromkeys(p for p in (self.find(filedir, n) for n in unique) if p is not None))
        if not found:
            raise NotFound(filedir)
        if len(found) == 1:
            return found[0].name, found[0]
        if sum(p.stat().st_size for p in found) > self.max_bytes:
            raise TooLarge(f"at most {self.max_bytes} bytes in one tar")
        return time.strftime("%Y%m%d%H%M%S") + ".tar", found
