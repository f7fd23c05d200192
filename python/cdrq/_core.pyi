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
    columns: list[str] | None = None,
) -> tuple[ArrowStream, list[tuple[str, int, int, str, str]]]:
    """Read one source (a path, or the bytes) into Arrow batches and rejects."""

class Scanner:
    """One source read a window at a time, with projection and a query's row filter pushed down."""

    format: str
    header_names: list[str] | None
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
        plan: QueryPlan | None = None,
        margin_us: int = 0,
        window_bytes: int | None = None,
        byte_range: tuple[int, int] | None = None,
        encoding: str = "utf8",
        gaps: tuple[str, list[tuple[int, int]]] | None = None,
        memory_map: bool = False,
        layout: list[str] | tuple[str, ...] | None = None,
    ) -> None: ...
    def next_window(self) -> tuple[ArrowStream, list[tuple[str, int, int, str, str]]] | None: ...
    def build_names_only(self) -> None: ...
    def progress(self) -> tuple[int, int]: ...

def column_names(
    source: str | bytes,
    *,
    name: str | None = None,
    format: str = "auto",
    encoding: str = "utf8",
    layout: list[str] | tuple[str, ...] | None = None,
) -> tuple[list[str], str]:
    """Every column a source holds, and its format (auto resolved)."""

def json_ranges(source: str | bytes, *, format: str = "auto", target_bytes: int = ...) -> list[tuple[int, int]] | None:
    """Byte ranges splitting a JSON source's record array at element starts."""

def take_counters() -> tuple[int, int, int]:
    """(records parsed, rows built, values built) since the last call."""

def is_debug_build() -> bool: ...
def _panic_for_test() -> None: ...
def compile_query(query: str, *, now_us: int, library: bool, groups: list[tuple[str, list[str]]] = ...) -> QueryPlan:
    """Compile a query string once (raises QueryError)."""

Item = tuple[str, Any]

class QueryPlan:
    """A compiled query: what every consumer of a query takes."""

    @property
    def text(self) -> str: ...
    @property
    def now_us(self) -> int: ...
    @property
    def library(self) -> bool: ...
    @property
    def format(self) -> str | None: ...
    @property
    def num_records(self) -> int | None: ...
    @property
    def offset(self) -> int | None: ...
    @property
    def caller(self) -> list[Item] | None: ...
    @property
    def callee(self) -> list[Item] | None: ...
    @property
    def caller_number(self) -> list[Item] | None: ...
    @property
    def callee_number(self) -> list[Item] | None: ...
    @property
    def start_time(self) -> int | None: ...
    @property
    def end_time(self) -> int | None: ...
    @property
    def min_dur(self) -> int | None: ...
    @property
    def max_dur(self) -> int | None: ...
    @property
    def caller_name(self) -> list[str] | None: ...
    @property
    def status(self) -> list[str] | None: ...
    @property
    def dispositions(self) -> list[str] | None: ...
    @property
    def call_type(self) -> list[str] | None: ...
    @property
    def src_trunk(self) -> list[str] | None: ...
    @property
    def dst_trunk(self) -> list[str] | None: ...
    @property
    def action_type(self) -> list[str] | None: ...
    @property
    def account_code(self) -> list[str] | None: ...
    @property
    def ext_group(self) -> list[str] | None: ...
    @property
    def ext_members(self) -> list[str] | None: ...
    @property
    def descending(self) -> bool: ...
    @property
    def groups(self) -> list[tuple[str, list[str]]]: ...
    def mask(self, key: str) -> ItemsMask | None:
        """The kernel of an item list's ranges and wildcards, if it has any."""

class ItemsMask:
    """The kernel for a pattern list's ranges and wildcards."""

    def __call__(self, series: Any) -> ArrowStream:
        """One boolean per value of a text Series (null is empty)."""
    def matches(self, value: str | None) -> bool:
        """Whether one value (None is empty) matches."""

def compile_pattern(text: str, dialect: str = "cdrapi") -> tuple[list[tuple[str, Any]], ItemsMask | None, ItemsMask]:
    """Compile one pattern list into (kind, value) items, the kernel of its ranges and
    wildcards, and the kernel of all its items (raises QueryError)."""

def decode(data: bytes, encoding: str) -> bytes:
    """``data`` in ``encoding`` (``utf8``, ``utf8-lossy`` or a WHATWG label, as ``read``
    takes it) as UTF-8; an unknown encoding is a ``CdrqError``."""

def render(legs: Any, mains: Any | None, format: str, firmware: str | None = None) -> bytes:
    """Render text-only frames (legs in order, stored main records or None) as csv, json
    or xml in UTF-8, in the spec's layout or that of ``firmware`` (``"1.0.2.5"``, ``"1.0.11"``)."""

#: Each known column's type: "int", "time" or "text" (other names are text).
COLUMN_TYPES: dict[str, str]
#: How far a wall clock can be from UTC, in microseconds.
ZONE_MARGIN_US: int
MAX_COLUMNS: int

# Analytics kernels (rust/src/analytics/, used by cdrq.analytics).
def concurrency_sweep(starts: Any, ends: Any, groups: Any | None = None, group_count: int = 0) -> ArrowStream:
    """The step function of calls in progress over [starts, ends) (Int64 µs Series): group, time, calls."""

class PrefixTable:
    """A rate table's prefixes (sorted, with parent links), matched longest first."""

    def __init__(self, prefixes: list[str], bands: list[tuple[int, int] | None]) -> None: ...
    def __call__(self, numbers: Any, minutes: Any | None = None) -> ArrowStream:
        """The table row of each number (column `row`, UInt32, null: no match)."""
