"""Sources: what ``read``, ``scan`` and ``convert`` take — a path, bytes, a
file object, or many files (a list, a glob, a directory's CDR files) —
expanded to single sources, opened for the core, and read side by side."""

from __future__ import annotations

import glob
import os
import pathlib
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import IO, TypeVar, Union

from cdrq._core import CdrqError

Source = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview, IO[bytes], Sequence[str]]


T = TypeVar("T")


R = TypeVar("R")


def ordered_map(fn: Callable[[T], R], items: Iterable[T], threads: int | None) -> Iterator[R]:
    """``fn`` over ``items`` on up to ``threads`` (default: all cores)
    threads, results in order, at most two per thread waiting."""
    workers = max(1, threads or os.cpu_count() or 1)
    with ThreadPoolExecutor(workers) as pool:
        pending: deque[Future[R]] = deque()
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


#: Threads a read or scan starts at most: past the cores more only cost
#: memory and start-up (``threads=2**40`` hung the machine).
MAX_THREADS = 1024


def default_threads(threads: int | None) -> int | None:
    """``threads`` (at most :data:`MAX_THREADS`), else
    ``POLARS_MAX_THREADS``, else ``None`` (all cores); anything but a whole
    number of at least 0 is a ``CdrqError`` (the core would meet it as an
    ``OverflowError``)."""
    check_count("threads", threads)
    if threads is None and os.environ.get("POLARS_MAX_THREADS", "").isdigit():
        return min(int(os.environ["POLARS_MAX_THREADS"]), MAX_THREADS)
    return None if threads is None else min(threads, MAX_THREADS)


def check_count(name: str, value: int | None) -> None:
    """Raises ``CdrqError`` for a count argument that is not a whole number
    of at least 0, at the call: the reader would meet it only at
    ``collect`` (a negative one as an ``OverflowError``, a negative
    ``batch_size`` as an empty frame)."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise CdrqError(f"{name} must be a non-negative integer or None, not {value!r}")


class SkippedFileWarning(UserWarning):
    """Files of a directory that were not read: their names do not say CDR
    (and ``include=`` did not name them). ``paths`` lists them."""

    def __init__(self, message: str, paths: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.paths = list(paths)


#: Names of the files a directory is read for (case-insensitive).
CDR_NAMES = tuple(f".{kind}{packed}" for kind in ("csv", "json", "xml", "txt") for packed in ("", ".gz", ".zst"))


#: ``include=``: one glob or many, matched against a file's path in the directory from the right.
Include = str | Sequence[str] | None


def expand(source: Source | Sequence[str | os.PathLike[str]], include: Include = None) -> list[Source]:
    """One source, or each file of a list, a glob or a directory (sorted;
    of a directory only the CDR files, see :func:`directory_files`)."""
    if isinstance(source, (list, tuple)):
        files = [f for item in source for f in expand(item, include)]
    elif isinstance(source, str) and any(c in source for c in "*?["):
        files = sorted(glob.glob(source, recursive=True))
        if not files:
            raise CdrqError(f"no file matches {source!r}")
    elif isinstance(source, (str, os.PathLike)) and os.path.isdir(source):
        files = directory_files(source, include)
    else:
        return [source]
    if not files:
        raise CdrqError("no source given")
    return files


def directory_files(directory: str | os.PathLike[str], include: Include = None) -> list[str]:
    """The files of ``directory`` (recursively, sorted) named as CDR files
    (:data:`CDR_NAMES`) or matching an ``include`` glob. Hidden files and
    directories (a name starting with a dot) are passed over; every other
    file not read is named in one :class:`SkippedFileWarning`."""
    root = pathlib.Path(directory)
    patterns = [include] if isinstance(include, str) else list(include or ())
    taken, skipped = [], []
    for path in sorted(root.rglob("*"), key=str):
        relative = path.relative_to(root)
        if not path.is_file() or any(part.startswith(".") for part in relative.parts):
            continue
        wanted = path.name.lower().endswith(CDR_NAMES) or any(relative.match(p) for p in patterns)
        (taken if wanted else skipped).append(str(path))
    why = "names not .csv, .json, .xml or .txt (optionally .gz or .zst); include= reads others"
    if not taken:
        listed = f": {len(skipped)} skipped ({', '.join(skipped)}; {why})" if skipped else ""
        raise CdrqError(f"no {'CDR ' if skipped else ''}file in directory {os.fspath(directory)!r}{listed}")
    if skipped:
        message = f"{os.fspath(directory)}: skipped {len(skipped)} file(s) ({why}): {', '.join(skipped)}"
        # stacklevel: the caller of read/scan/convert.
        warnings.warn(SkippedFileWarning(message, skipped), stacklevel=4)
    return taken


def open_source(source: Source) -> tuple[str | bytes, str | None]:
    """The path or bytes the core reads, and the name errors give them."""
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source), None
    if isinstance(source, bytes):
        return source, None
    if isinstance(source, (bytearray, memoryview)):
        return bytes(source), None
    read_method = getattr(source, "read", None)
    if callable(read_method):
        data = read_method()
        if not isinstance(data, bytes):
            raise CdrqError("file objects must be opened in binary mode")
        return data, str(getattr(source, "name", "<file>"))
    raise CdrqError(f"cannot read a source of type {type(source).__name__}")
