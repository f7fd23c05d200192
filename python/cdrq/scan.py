"""`cdrq.scan`: any source as a streaming Polars LazyFrame.

The scan is a Polars IO source (``register_io_source``) fed by the Rust
reader a window at a time. Polars tells it which columns the query needs
(only those are built) and the filter it can apply; ``cdrq.query`` on a
scan goes further and hands the compiled query to the reader itself, which
drops non-matching records before building any column of them.

Errors: Polars re-raises what the IO source's generator raises, so a
record's :class:`cdrq.ParseError` reaches the caller of ``collect`` as
itself; an error raised while Polars asks for the schema (before any
record) comes wrapped in Polars's ``ComputeError``, which
:func:`scan_errors` turns back into the cdrq error.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Literal, overload

import polars as pl
from polars.io.plugins import register_io_source

from cdrq import _core, _expr, dataset
from cdrq._core import CdrqError
from cdrq._core import QueryPlan as Plan
from cdrq.read import REJECT_SCHEMA, OnError, check_columns, check_encoding, layout_of, source_label
from cdrq.sources import Include, Source, check_count, default_threads, expand, open_source, ordered_map
from cdrq.zones import DEFAULT_TZ, check_tz, localise, wall_clock_gaps

#: How far a UCM wall clock can be from UTC (the core's `ZONE_MARGIN_US`):
#: the reader's time bounds are widened by this unless the archive zone is
#: UTC, and the exact bounds applied afterwards.
ZONE_MARGIN_US: int = _core.ZONE_MARGIN_US

#: Sources up to this size are read whole, several at once.
EAGER_BYTES = 8 << 20

#: The frames a scan may hold between learning its columns and handing
#: them over (see :meth:`ScanSpec.learn`).
PREFETCH_BYTES = 64 << 20


def dtype_of(name: str, tz: str | None) -> pl.DataType:
    """The type cdrq gives a column, by its name (the core's data model)."""
    kind = _core.COLUMN_TYPES.get(name, "text")
    if kind == "int":
        return pl.Int64()
    if kind == "time":
        return pl.Datetime("us", tz)
    return pl.String()


class ScanRejects:
    """The records a scan with ``on_error="collect"`` could not read, in
    source order, filled as the scan runs. Every run of the scan (each
    ``collect``, ``sink_*`` or ``collect_batches`` of it, or of a frame built
    on it such as ``cdrq.query(scan, qs)``) starts it afresh: it holds the
    rejects of the latest run, up to where that run has read."""

    def __init__(self) -> None:
        self.rows: list[tuple] = []

    def start(self) -> list[tuple]:
        """A new run's list, from now on the one shown."""
        self.rows = []
        return self.rows

    def frame(self) -> pl.DataFrame:
        """The rejects as a frame of the columns of ``cdrq.read``'s rejects."""
        return pl.DataFrame(list(self.rows), schema=REJECT_SCHEMA, orient="row")

    def __len__(self) -> int:
        return len(self.rows)

    def __repr__(self) -> str:
        return f"<cdrq.ScanRejects: {len(self.rows)} reject(s)>"


#: The cdrq errors of schema callables, by the text Polars wraps them in
#: (the latest few; see :func:`scan_errors`).
WRAPPED: OrderedDict[str, CdrqError] = OrderedDict()


@contextlib.contextmanager
def scan_errors() -> Iterator[None]:
    """Inside, a cdrq error that Polars wrapped in its ``ComputeError`` (one
    raised while Polars asked a scan for its schema: a file that cannot be
    opened, decompressed or whose JSON/XML is broken before the first
    record) is raised as the cdrq error itself. Errors of records need no
    help: Polars re-raises them as they are."""
    try:
        yield
    except pl.exceptions.ComputeError as e:
        original = next((error for text, error in WRAPPED.items() if text in str(e)), None)
        if original is None:
            raise
        raise original from e


def window_frame(stream: Any, tz: str | None, columns: Mapping[str, pl.DataType]) -> pl.DataFrame:
    """A window the core read (an Arrow stream) as the frame a scan hands
    on: times in zone ``tz``, exactly ``columns`` in their order, those the
    window lacks null. The one path from the reader to Polars of ``scan``
    and of the Spark data source."""
    return fit(localise(pl.DataFrame(stream), tz), columns)


def fit(frame: pl.DataFrame, columns: Mapping[str, pl.DataType]) -> pl.DataFrame:
    """``frame`` with exactly ``columns`` in their order, those it lacks null."""
    missing = [pl.lit(None, dtype).alias(name) for name, dtype in columns.items() if name not in frame.schema]
    return frame.with_columns(missing).select(list(columns))


def stamp_of(source: str | bytes) -> tuple[int, int, int] | None:
    """What tells a file rewritten since it was read (bytes never are)."""
    if isinstance(source, bytes):
        return None
    try:
        st = os.stat(source)
    except OSError:
        return (-1, -1, -1)
    return (st.st_ino, st.st_size, st.st_mtime_ns)


@dataclasses.dataclass
class Prefetch:
    """A source's windows read to learn its columns: localised frames of
    every column, with their rejects, and what the file was then."""

    stamp: tuple[int, int, int] | None
    windows: list[tuple[pl.DataFrame, list]]


@dataclasses.dataclass(frozen=True)
class ScanSpec:
    """Everything a scan reads; a query pushed into it makes a new one."""

    sources: tuple[str | bytes, ...]
    names: tuple[str | None, ...]
    format: str
    tz: str | None
    threads: int | None
    window_bytes: int | None
    progress: bool
    batch_size: int | None = None
    plan: Plan | None = None
    on_error: OnError = "raise"
    encoding: str = "utf8"
    memory_map: bool = False
    #: ``asterisk-custom``'s template columns (``read``'s ``columns``).
    layout: tuple[str, ...] | None = None
    rejects: ScanRejects | None = dataclasses.field(default=None, compare=False)
    schema_cache: dict[str, pl.Schema] = dataclasses.field(default_factory=dict, compare=False, repr=False)
    #: By source index, what learning the columns read (this spec's own:
    #: not shared with the spec a plan is pushed into).
    prefetched: dict[int, Prefetch] = dataclasses.field(default_factory=dict, init=False, compare=False, repr=False)

    def schema(self) -> pl.Schema:
        """The union of the sources' columns, in order of first appearance."""
        if "schema" not in self.schema_cache:
            names: dict[str, None] = {}
            budget = [0 if self.progress else PREFETCH_BYTES]
            for index, (source, name) in enumerate(zip(self.sources, self.names, strict=True)):
                try:
                    names.update(dict.fromkeys(self.learn(index, source, name, budget)))
                    check_columns(names, source_label(source))
                except CdrqError as e:
                    # Polars keeps only the text of what the schema callable raises.
                    WRAPPED[f"{type(e).__name__}: {e}"] = e
                    while len(WRAPPED) > 64:
                        WRAPPED.popitem(last=False)
                    raise
            self.schema_cache["schema"] = pl.Schema({n: dtype_of(n, self.tz) for n in names})
        return self.schema_cache["schema"]

    def learn(self, index: int, source: str | bytes, name: str | None, budget: list[int]) -> list[str]:
        """A source's columns. A CSV names them in its header (a compressed
        one after its first window); JSON and XML only once all is read.
        That reading is the scan's own, with its query: the frames it makes
        (up to ``budget`` bytes, for all sources) are kept for the run that
        follows, which then does not read the source again. A query that
        keeps more is known by its first window, and the reading goes on
        building nothing. If the reading fails, the columns come from a
        pass that builds nothing, which leaves the error to itself or to
        the run, as without this. (Under ``progress`` the run reads all.)"""
        if budget[0] > 0:
            with contextlib.suppress(CdrqError):
                columns, prefetch = self.prefetch(source, name, budget)
                if prefetch is not None:
                    self.prefetched[index] = prefetch
                return columns
        columns, _ = _core.column_names(
            source, name=name, format=self.format, encoding=self.encoding, layout=self.layout
        )
        return columns

    def prefetch(self, source: str | bytes, name: str | None, budget: list[int]) -> tuple[list[str], Prefetch | None]:
        """A source's columns and, unless its frames would outgrow
        ``budget`` (then none is left), what reading them read."""
        stamp = stamp_of(source)
        scanner = self.open_scanner(source, name, None, self.on_error)
        windows: list[tuple[pl.DataFrame, list]] = []
        seen: dict[str, None] = {}
        held = 0
        header = scanner.header_names
        while header is None:
            window = scanner.next_window()
            if window is None:
                break
            frame = localise(pl.DataFrame(window[0]), self.tz)
            seen.update(dict.fromkeys(frame.columns))
            windows.append((frame, window[1]))
            held += frame.estimated_size()
            header = scanner.header_names
            # What all windows would hold, judged from those so far: a query
            # that keeps much is known by its first window.
            done, total = scanner.progress()
            if header is None and held * total > budget[0] * max(done, 1):
                budget[0] = 0
                scanner.build_names_only()
                for stream, _ in iter(scanner.next_window, None):
                    seen.update(dict.fromkeys(pl.DataFrame(stream).columns))
                return list(seen), None
        if header is not None:
            # A CSV: its scan reads on with the query's columns only.
            return header, None
        budget[0] -= held
        return list(seen), Prefetch(stamp, windows)

    def open_scanner(self, source: str | bytes, name: str | None, columns: list[str] | None, on_error: str) -> Any:
        return _core.Scanner(
            source,
            name=name,
            format=self.format,
            threads=self.threads,
            on_error=on_error,
            tz_label="UTC" if self.tz == "UTC" else None,
            columns=columns,
            plan=self.plan,
            margin_us=0 if self.tz in (None, "UTC") else ZONE_MARGIN_US,
            window_bytes=self.window_bytes,
            encoding=self.encoding,
            gaps=wall_clock_gaps(self.tz),
            memory_map=self.memory_map,
            layout=self.layout,
        )

    def windows(self, columns: Sequence[str] | None, on_error: str = "raise") -> Iterator[tuple[pl.DataFrame, list]]:
        """Each window of each source as a frame of ``columns`` (all when
        ``None``; absent ones null), and its rejects."""
        schema = self.schema()
        wanted = list(schema) if columns is None else list(columns)
        fields = {c: schema[c] for c in wanted}

        def load(item: tuple[int, tuple[str | bytes, str | None]]) -> tuple[Any, list | None]:
            """A source's scanner, and its windows as frames if read already
            (else ``None``: they stream). The windows read to learn its
            columns are taken, once; of many sources, a small one is read
            whole, side by side with others."""
            index, (source, name) = item
            prefetch = self.prefetched.pop(index, None)
            if prefetch is not None and on_error == self.on_error and prefetch.stamp == stamp_of(source):
                return None, prefetch.windows
            scanner = self.open_scanner(source, name, wanted, on_error)
            size = len(source) if isinstance(source, bytes) else os.path.getsize(source)
            if len(self.sources) > 1 and size <= EAGER_BYTES:
                return scanner, list(frames(scanner))
            return scanner, None

        def frames(scanner: Any) -> Iterator[tuple[pl.DataFrame, list]]:
            for stream, rejects in iter(scanner.next_window, None):
                yield localise(pl.DataFrame(stream), self.tz), rejects

        sources = enumerate(zip(self.sources, self.names, strict=True))
        with Progress(self) as progress:
            for scanner, read in ordered_map(load, sources, self.threads):
                for frame, rejects in frames(scanner) if read is None else read:
                    frame = fit(frame, fields)
                    progress.advance(scanner, frame.height)
                    yield frame, rejects


@overload
def scan(
    source: Source,
    format: str = ...,
    tz: str | None = ...,
    *,
    on_error: Literal["raise"] = ...,
    include: Include = ...,
    batch_size: int | None = ...,
    threads: int | None = ...,
    window_bytes: int | None = ...,
    progress: bool = ...,
    encoding: str = ...,
    memory_map: bool = ...,
    columns: list[str] | None = ...,
) -> pl.LazyFrame: ...
@overload
def scan(
    source: Source,
    format: str = ...,
    tz: str | None = ...,
    *,
    on_error: Literal["collect"],
    include: Include = ...,
    batch_size: int | None = ...,
    threads: int | None = ...,
    window_bytes: int | None = ...,
    progress: bool = ...,
    encoding: str = ...,
    memory_map: bool = ...,
    columns: list[str] | None = ...,
) -> tuple[pl.LazyFrame, ScanRejects]: ...
def scan(
    source: Source,
    format: str = "auto",
    tz: str | None = DEFAULT_TZ,
    *,
    on_error: OnError = "raise",
    include: Include = None,
    batch_size: int | None = None,
    threads: int | None = None,
    window_bytes: int | None = None,
    progress: bool = False,
    encoding: str = "utf8",
    memory_map: bool = False,
    columns: list[str] | None = None,
) -> pl.LazyFrame | tuple[pl.LazyFrame, ScanRejects]:
    """A lazy, streaming read of ``source`` (anything :func:`cdrq.read`
    takes, or a dataset directory written by :func:`cdrq.convert`, shown
    in its own zone unless ``tz`` is given).

    Nothing is read until the frame is collected; then each file is read a
    window at a time (``window_bytes``, default 8 MiB per thread; web UI
    downloads whole), only the columns the query uses are built, and
    ``cdrq.query(scan, qs)`` filters records in the reader before building
    them. A window goes to Polars in frames of a few of the reader's
    chunks (8 192 rows or more each); ``batch_size`` caps their rows
    (default: Polars's hint). ``progress=True`` shows
    bytes, records/s and the time left on stderr. Works with
    ``collect(engine="streaming")`` and ``sink_parquet``. ``encoding`` is
    :func:`cdrq.read`'s (a source in another encoding than UTF-8 is decoded
    whole first). A file is memory-mapped while it is scanned and the
    frames copy their text out of the mapping; ``memory_map=True`` lets
    them point into it instead, with the hazard told at :func:`cdrq.read`.
    ``columns``: an ``asterisk-custom`` file's template, as for
    :func:`cdrq.read`.

    ``on_error="collect"`` returns ``(frame, rejects)``: the scan reads on
    past unreadable records, and ``rejects`` (a :class:`ScanRejects`) fills
    with them as it runs; ``rejects.frame()`` has the columns of
    ``cdrq.read``'s rejects. (A dataset's rejects are those its conversions
    kept in ``DIR/_rejects/``.)
    """
    if on_error not in ("raise", "collect"):
        raise CdrqError(f"on_error must be 'raise' or 'collect', not {on_error!r}")
    check_tz(tz)
    check_encoding(encoding)
    for arg, value in (("window_bytes", window_bytes), ("batch_size", batch_size)):
        check_count(arg, value)
    format, layout = layout_of(format, columns)
    if dataset.is_dataset(source):
        frame = dataset.scan_dataset(source, tz)
        return frame if on_error == "raise" else (frame, ScanRejects())
    sources, names = [], []
    for one in expand(source, include):
        data, name = open_source(one)
        sources.append(data)
        names.append(name)
    spec = ScanSpec(
        sources=tuple(sources),
        names=tuple(names),
        format=format,
        tz=tz,
        threads=default_threads(threads),
        # Beyond what the reader counts in, a window or batch is as good as all.
        window_bytes=None if window_bytes is None else min(window_bytes, sys.maxsize),
        progress=progress,
        batch_size=None if batch_size is None else min(batch_size, sys.maxsize),
        on_error=on_error,
        encoding=encoding,
        memory_map=memory_map,
        layout=None if layout is None else tuple(layout),
        rejects=ScanRejects() if on_error == "collect" else None,
    )
    frame = register(spec)
    return frame if spec.rejects is None else (frame, spec.rejects)


class Scan(pl.LazyFrame):
    """The LazyFrame :func:`scan` returns: it knows what it reads, so
    :func:`cdrq.query` can push a plan into its reader. Frames derived from
    it (``scan.select(…)``) are of this class too but know nothing: they are
    filtered by Polars alone."""

    spec: ScanSpec | None = None

    def with_plan(self, plan: Plan) -> pl.LazyFrame:
        """This scan with ``plan`` filtering its records, if it is a scan of
        cdrq's not already carrying a plan; else the frame itself. The
        reader drops what cannot match before building it (a superset),
        then each window is filtered exactly, so the rows are the plan's
        and nothing after the scan need filter them (a filter of Polars'
        that it cannot stream — the query's digit ranges are a Python
        kernel — would gather every kept row in memory first)."""
        if self.spec is None or self.spec.plan is not None:
            return self
        # What this scan read to learn its columns holds every row: the
        # plan's scan reads its own, so the frames need not wait.
        self.spec.prefetched.clear()
        return register(dataclasses.replace(self.spec, plan=plan, schema_cache=self.spec.schema_cache))


def register(spec: ScanSpec) -> Scan:
    def source(
        with_columns: list[str] | None, predicate: pl.Expr | None, n_rows: int | None, batch_size: int | None
    ) -> Iterator[pl.DataFrame]:
        rows_per_batch = spec.batch_size or batch_size
        wanted = list(spec.schema()) if with_columns is None else list(with_columns)
        exact = _expr.filters(spec.plan, spec.schema()) if spec.plan is not None else None
        needed = wanted + [c for c in dict.fromkeys(_roots(predicate) + _roots(exact)) if c not in wanted]
        rejects = spec.rejects.start() if spec.rejects is not None else []
        for frame, bad in spec.windows(needed, on_error=spec.on_error):
            rejects.extend(bad)
            if exact is not None:
                frame = frame.filter(exact)
            if predicate is not None:
                frame = frame.filter(predicate)
            frame = frame.select(wanted)
            if n_rows is not None:
                frame = frame.head(n_rows)
                n_rows -= frame.height
            yield from pieces(frame, rows_per_batch)
            if n_rows is not None and n_rows <= 0:
                return

    detail = f"{len(spec.sources)} source(s), format={spec.format}" + (f", query={spec.plan.text}" if spec.plan else "")
    lazy = register_io_source(source, schema=spec.schema, explain_name="cdrq", explain_detail=detail)
    frame = Scan._from_pyldf(lazy._ldf)
    frame.spec = spec
    return frame


#: The fewest rows of a frame a scan hands to Polars, where its window has
#: them: a window is handed over in pieces of about this many rows or more.
PIECE_ROWS = 8192


def pieces(frame: pl.DataFrame, most: int | None) -> Iterator[pl.DataFrame]:
    """``frame`` (a window) cut where its chunks meet, a piece holding one
    or more whole chunks (``PIECE_ROWS`` rows or more, but for the last),
    and pieces over ``most`` rows sliced. A chunk is what one task of the
    reader built, with buffers of its own: a piece keeps only its own
    chunks' memory alive, where any slice of the window would keep the
    window's. Polars holds a number of frames in flight (a sink a dozen or
    so): frames of a few chunks, not of whole windows, keep that small."""
    cuts: list[int] = []
    if frame.width:
        start = rows = 0
        for n in frame.to_series(0).chunk_lengths():
            rows += n
            if rows >= PIECE_ROWS:
                cuts.append(start + rows)
                start, rows = start + rows, 0
    if not cuts or cuts[-1] != frame.height:
        cuts.append(frame.height)
    start = 0
    for end in cuts:
        piece = frame.slice(start, end - start)
        yield from piece.iter_slices(most) if most else [piece]
        start = end


def _roots(predicate: pl.Expr | None) -> list[str]:
    return [] if predicate is None else predicate.meta.root_names()


class Progress:
    """Bytes read of all sources, records/s and time left, on stderr (via
    tqdm), when asked for."""

    def __init__(self, spec: ScanSpec) -> None:
        self.enabled = spec.progress
        self.bar: Any = None
        self.records = 0
        if self.enabled:
            from tqdm import tqdm

            total = sum(os.path.getsize(s) if isinstance(s, str) else len(s) for s in spec.sources)
            self.bar = tqdm(total=total, unit="B", unit_scale=True, desc="cdrq", file=sys.stderr, leave=True)
        self.done: dict[int, int] = {}

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.close()

    def advance(self, scanner: Any, records: int) -> None:
        if self.bar is None or scanner is None:
            return
        done, _ = scanner.progress()
        self.records += records
        step = done - self.done.get(id(scanner), 0)
        self.done[id(scanner)] = done
        # A compressed source has more bytes to read than it has on disk.
        if self.bar.n + step > self.bar.total:
            self.bar.total = self.bar.n + step
        rate = self.records / max(self.bar.format_dict["elapsed"], 1e-9)
        # As text: tqdm writes numbers in 3 significant digits (records=4e+4).
        self.bar.set_postfix(records=f"{self.records:,}", rec_s=f"{rate:,.0f}", refresh=False)
        self.bar.update(step)
