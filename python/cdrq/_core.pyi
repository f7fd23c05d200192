"""The Rust extension. Use the public functions of :mod:`cdrq` instead."""

from typing import Any

__version__: str
BASE_COLUMNS: tuple[str, ...]

class CdrqError(ValueError):
    """Every error cdrq raises."""

class ParseError(CdrqError):
    """A record that cannot be read."""

    source: str
    line: int
    column: int
    reason: str
    raw: str

class QueryError(CdrqError):
    """A query that cannot be compiled."""

    param: str
    text: str
    position: int
    reason: str

class ArrowStream:
    """A one-shot Arrow PyCapsule stream of record batches."""

    def __arrow_c_stream__(self, requested_schema: object | None = None) -> Any: ...
    def __len__(self) -> int: ...

def read(
    source: str | bytes,
    *,
    name: str | None = None,
    format: str = "auto",
    threads: int | None = None,
    on_error: str = "raise",
    tz_label: str | None = None,
    chunk_bytes: int | None = None,
) -> tuple[ArrowStream, list[tuple[str, int, int, str, str]]]:
    """Read one source (a path, or the bytes) into Arrow batches and rejects."""

class Scanner:
    """One source read a window at a time, with projection and a query's row filter pushed down."""

    format: str
    def __init__(
        self,
        source: str | bytes,
        *,
        name: str | None = None,
        format: str = "auto",
        threads: int | None = None,
        on_error: str = "raise",
        tz_label: str | None = None,
        columns: list[str] | None = None,
        query: str | None = None,
        now_us: int = 0,
        library: bool = False,
        margin_us: int = 0,
        window_bytes: int | None = None,
        byte_range: tuple[int, int] | None = None,
    ) -> None: ...
    def next_window(self) -> tuple[ArrowStream, list[tuple[str, int, int, str, str]]] | None: ...
    def progress(self) -> tuple[int, int]: ...

def column_names(source: str | bytes, *, name: str | None = None, format: str = "auto") -> tuple[list[str], str]:
    """Every column a source holds, and its format (auto resolved)."""

def json_ranges(source: str | bytes, *, format: str = "auto", target_bytes: int = ...) -> list[tuple[int, int]] | None:
    """Byte ranges splitting a JSON source's record array at element starts."""

def take_counters() -> tuple[int, int, int]:
    """(records parsed, rows built, values built) since the last call."""

def is_debug_build() -> bool: ...
def _panic_for_test() -> None: ...
def compile_query(query: str, *, now_us: int, library: bool, groups: list[str] = ...) -> dict[str, Any]:
    """Compile a query string into a plan (raises QueryError); ``plan["masks"]``
    holds each pattern list's kernel for its ranges and wildcards."""

class ItemsMask:
    """The kernel for a pattern list's ranges and wildcards."""

    def __call__(self, series: Any) -> ArrowStream:
        """One boolean per value of a text Series (null is empty)."""

def compile_pattern(text: str, dialect: str = "cdrapi") -> tuple[list[tuple[str, Any]], ItemsMask | None]:
    """Compile one pattern list into (kind, value) items and its kernel (raises QueryError)."""

def render(legs: Any, mains: Any, format: str, firmware: str | None = None) -> str:
    """Render text-only frames (legs in order, stored main records) as csv, json or xml,
    in the spec's layout or that of ``firmware`` (``"1.0.2.5"``, ``"1.0.11"``)."""
