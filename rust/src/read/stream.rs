//! Reading a source as a stream of windows, for scans over archives larger
//! than memory.
//!
//! A CDR API CSV file is read a window of records at a time (each window
//! parsed in parallel chunks, exactly as a whole-file read would) on a
//! worker thread that stays one window ahead of the consumer, so parsing
//! goes on while the consumer (Polars) filters the window before; the
//! pages of a window already read are given back to the kernel, so
//! resident memory follows the window size, not the file size. A mapped
//! file's windows are parsed in place, each chunk copying the long values
//! of just the rows it keeps (a selective query keeps few) as it builds
//! them, never the whole window. The nested
//! formats (JSON, XML) are parsed on a worker thread that hands over a
//! group of chunks at a time through a channel of one slot, so it runs at
//! most one window ahead of the consumer. The web UI download (small, and
//! its legs numbered from the last main row) is read whole.

use std::io::Read;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use super::csv::{CsvPlan, Dialect, read_window};
use super::decompress::Decoder;
use super::pushdown::{Pushdown, RowFilter};
use super::{Encoding, Format, Input, ReadOptions, ReadOutput, STOPPED, encoding, json, records, xml};
use crate::error::{Error, Result};

/// Bytes of CSV per window and worker thread. The reader holds up to three
/// windows (one handed over, one in the channel, one being parsed) and a
/// Polars sink a dozen frames of a few chunks each: at 8 MiB a 2-thread
/// scan writing every row of its file stays under 0.4 GB (16 MiB: 0.6 GB),
/// and both cores stay busy.
const WINDOW_BYTES_PER_THREAD: usize = 8 << 20;

pub struct Stream {
    input: Input,
    format: Format,
    options: ReadOptions,
    pool: Option<Arc<rayon::ThreadPool>>,
    window_bytes: usize,
    state: State,
    /// The format `Auto` sniffed, and why: errors of a first record say it.
    sniffed: Option<(Format, String)>,
}

enum State {
    /// Records starting in `pos..end` are still to be read (the worker is
    /// started by the first window asked for).
    Csv {
        plan: Box<CsvPlan>,
        pos: usize,
        end: usize,
    },
    /// A worker reading CSV windows; each message is a window and the
    /// input offset it reached.
    CsvWorker {
        windows: Receiver<Result<(ReadOutput, usize)>>,
        reached: usize,
    },
    /// A worker parsing JSON or XML; each message is a window and the
    /// input offset it reached.
    Worker {
        windows: Receiver<(Result<ReadOutput>, usize)>,
        reached: usize,
        released: usize,
    },
    /// The elements of a JSON record array in a range from
    /// [`json::element_ranges`], read once.
    Elements {
        start: usize,
        end: usize,
    },
    /// A compressed CDR API CSV, decompressed a window at a time.
    Compressed(Box<Unpacking>),
    Whole,
    Done,
}

struct Unpacking {
    decoder: Decoder,
    /// Decompressed bytes not yet read: the next window starts with them.
    carry: Vec<u8>,
    /// From the first window's header (or first record).
    plan: Option<CsvPlan>,
    dialect: Dialect,
    /// Lines before `carry`, so rejects name lines of the whole file.
    lines_before: u64,
    /// A window has been read (the header is behind us).
    started: bool,
    done: bool,
}

impl Stream {
    /// Opens `input` (decompressed and sniffed as [`super::read`] does);
    /// reads nothing yet beyond a CSV header. `window_bytes` defaults to
    /// 8 MiB per thread.
    pub fn open(input: Input, format: Format, options: ReadOptions, window_bytes: Option<usize>) -> Result<Self> {
        Self::open_range(input, format, options, window_bytes, None)
    }

    /// [`Self::open`] for the records of a CDR API CSV that start in bytes
    /// `start..end` (a line start at or after `start`), or of a JSON range
    /// from [`json::element_ranges`]: how a cluster splits one large file
    /// among many readers. Other formats take no range.
    pub fn open_range(
        input: Input,
        format: Format,
        options: ReadOptions,
        window_bytes: Option<usize>,
        range: Option<(usize, usize)>,
    ) -> Result<Self> {
        // Another encoding is decoded whole first (after decompressing).
        let (input, options) = match options.encoding {
            Encoding::Utf8 => (input, options),
            encoding => {
                let plain = super::decompress(&input)?.unwrap_or(input);
                let text = encoding::decode(&plain, encoding).unwrap_or(plain);
                (text, ReadOptions { encoding: Encoding::Utf8, ..options })
            }
        };
        // A compressed CDR API CSV is decompressed a window at a time;
        // anything else compressed is decompressed whole first.
        let mut decoder = None;
        let (input, (format, why)) = match Decoder::new(&input) {
            None => {
                let resolved = super::resolve_format(&input.name, input.bytes(), format)?;
                (input, resolved)
            }
            Some(mut d) => {
                // What sniffing looks at: 4 KiB past any leading whitespace
                // (a document may be padded), as `read` sees it whole.
                let (mut head, mut text_from) = (Vec::new(), None);
                loop {
                    let before = head.len();
                    d.fill(&mut head, 4096)?;
                    text_from = text_from
                        .or_else(|| head[before..].iter().position(|b| !b.is_ascii_whitespace()).map(|k| before + k));
                    let text = text_from.map_or(0, |k| head.len() - k);
                    if text >= 4096 || head.len() < before + 4096 || head.len() >= SNIFF_BYTES {
                        break;
                    }
                }
                let resolved = super::resolve_format(&input.name, &head, format)?;
                if !resolved.0.windowed_csv() || range.is_some() {
                    d.read_to_end(&mut head).map_err(|e| d.error(e))?;
                } else {
                    decoder = Some((d, head.clone()));
                }
                (Input::from_vec(input.name.clone(), head), resolved)
            }
        };
        let sniffed = why.map(|why| (format, why));
        let pool = match options.threads {
            None => None,
            Some(n) => Some(Arc::new(
                rayon::ThreadPoolBuilder::new()
                    .num_threads(n.max(1))
                    .build()
                    .map_err(|e| Error::Input { source: input.name.clone(), reason: e.to_string() })?,
            )),
        };
        let threads = pool.as_ref().map_or_else(rayon::current_num_threads, |p| p.current_num_threads());
        let window_bytes = window_bytes.unwrap_or(WINDOW_BYTES_PER_THREAD * threads).max(1);
        let state = match (format, decoder) {
            (_, Some((decoder, head))) => State::Compressed(Box::new(Unpacking {
                decoder,
                carry: head,
                plan: None,
                dialect: format.csv_dialect().unwrap_or(Dialect::Api),
                lines_before: 0,
                started: false,
                done: false,
            })),
            (format, None) if format.windowed_csv() => {
                let dialect = format.csv_dialect().unwrap_or(Dialect::Api);
                let plan = CsvPlan::new(&input, &options, dialect).map_err(|e| super::said_guess(e, sniffed.as_ref()));
                let plan = Box::new(plan?);
                let buf = input.bytes();
                let (pos, end) = match range {
                    None => (plan.data_start, buf.len()),
                    Some((start, end)) => {
                        let line_start = match start {
                            0 => 0,
                            _ => memchr::memchr(b'\n', &buf[(start - 1).min(buf.len())..])
                                .map_or(buf.len(), |k| start + k),
                        };
                        (line_start.max(plan.data_start), end.min(buf.len()))
                    }
                };
                State::Csv { plan, pos, end }
            }
            (Format::UcmJson | Format::PortsipJson, None) if range.is_some() => {
                let (start, end) = range.unwrap_or_default();
                State::Elements { start, end }
            }
            (_, None) if range.is_some() => {
                return Err(Error::Input {
                    source: input.name.clone(),
                    reason: format!("byte ranges are for CDR API CSV and JSON, not {}", format.name()),
                });
            }
            (Format::UcmJson | Format::PortsipJson | Format::UcmXml, None) => {
                // A window is a group of 4 chunks per thread.
                let chunk_bytes = options.chunk_bytes.or(Some((window_bytes / (4 * threads)).clamp(1, 32 << 20)));
                let options = ReadOptions { chunk_bytes, ..options.clone() };
                let windows = spawn_worker(input.clone(), format, options, pool.clone());
                State::Worker { windows, reached: 0, released: 0 }
            }
            (_, None) => State::Whole,
        };
        Ok(Self { input, format, options, pool, window_bytes, state, sniffed })
    }

    /// The format read (never `Auto`).
    pub fn format(&self) -> Format {
        self.format
    }

    /// A CSV's columns, once its header (or first record) is read: at
    /// open, or a compressed one's after its first window. `None` for
    /// JSON and XML, whose columns are known only once all is read.
    pub fn header_names(&self) -> Option<Vec<String>> {
        match &self.state {
            State::Csv { plan, .. } => Some(plan.names().to_vec()),
            State::Compressed(unpacking) => unpacking.plan.as_ref().map(|plan| plan.names().to_vec()),
            _ => None,
        }
    }

    /// From now on only the columns' names are wanted: JSON and XML rows
    /// are checked, not built (see [`Pushdown::names_only`]).
    pub fn build_names_only(&self) {
        if let Some(pushdown) = &self.options.pushdown {
            pushdown.build_names_only();
        }
    }

    /// The next window's batches and rejects; `None` once the input is done.
    pub fn next_window(&mut self) -> Result<Option<ReadOutput>> {
        if let State::Csv { .. } = self.state {
            let State::Csv { plan, pos, end } = std::mem::replace(&mut self.state, State::Done) else { unreachable!() };
            let job =
                CsvJob { input: self.input.clone(), plan, options: self.options.clone(), window: self.window_bytes };
            let windows = spawn_csv_worker(job, pos, end, self.pool.clone());
            self.state = State::CsvWorker { windows, reached: pos };
        }
        let result = match &self.pool {
            // Waiting for a worker must not happen on a pool thread: one
            // blocked there could hold a join the worker's parse needs.
            Some(pool) if !matches!(self.state, State::Worker { .. } | State::CsvWorker { .. }) => {
                pool.install(|| step(&self.input, &self.options, self.format, self.window_bytes, &mut self.state))
            }
            _ => step(&self.input, &self.options, self.format, self.window_bytes, &mut self.state),
        };
        if result.is_err() {
            self.state = State::Done;
        }
        result.map_err(|e| super::said_guess(e, self.sniffed.as_ref()))
    }

    /// Bytes of the (decompressed) input read so far, and in all.
    pub fn progress(&self) -> (usize, usize) {
        let total = self.input.bytes().len();
        let done = match &self.state {
            State::Csv { pos, .. } => *pos,
            State::Worker { reached, .. } | State::CsvWorker { reached, .. } => *reached,
            State::Compressed(unpacking) => {
                let (done, total) = unpacking.decoder.progress();
                return (done, total);
            }
            State::Whole | State::Elements { .. } => 0,
            State::Done => total,
        };
        (done, total)
    }
}

/// Starts the worker that parses a JSON or XML input and sends its windows.
fn spawn_worker(
    input: Input,
    format: Format,
    options: ReadOptions,
    pool: Option<Arc<rayon::ThreadPool>>,
) -> Receiver<(Result<ReadOutput>, usize)> {
    // One window in the channel, one being built: the worker stays close.
    let (sender, receiver) = sync_channel(1);
    std::thread::spawn(move || {
        let len = input.bytes().len();
        // An error window stops the read: nothing after it is sent.
        let emit = |output: Result<ReadOutput>, end: usize| {
            let ok = output.is_ok();
            sender.send((output, end)).is_ok() && ok
        };
        let work = || match format {
            Format::UcmXml => xml::stream_xml(&input, &options, &emit),
            _ => json::stream_json(&input, &options, format == Format::PortsipJson, &emit),
        };
        let rest = catch_unwind(AssertUnwindSafe(|| match &pool {
            Some(pool) => pool.install(work),
            None => work(),
        }))
        .unwrap_or_else(|panic| Err(internal_error(&input.name, &*panic)));
        let _ = sender.send((rest, len));
    });
    receiver
}

fn step(
    input: &Input,
    options: &ReadOptions,
    format: Format,
    window: usize,
    state: &mut State,
) -> Result<Option<ReadOutput>> {
    match state {
        State::Done => Ok(None),
        State::Worker { windows, reached, released } => match windows.recv() {
            Ok((Ok(output), end)) => {
                // The window before this one has been handed over by now.
                input.release(*released, *reached);
                *released = *reached;
                *reached = end;
                Ok(Some(output))
            }
            Ok((Err(Error::Input { reason, .. }), _)) if reason == STOPPED => {
                *state = State::Done;
                Ok(None)
            }
            Ok((Err(e), _)) => Err(e),
            Err(_) => {
                *state = State::Done;
                Ok(None)
            }
        },
        State::Whole => {
            *state = State::Done;
            super::read(input, format, options).map(Some)
        }
        State::Elements { start, end } => {
            let (start, end) = (*start, *end);
            *state = State::Done;
            json::read_elements(input, options, format == Format::PortsipJson, start, end).map(Some)
        }
        State::Compressed(unpacking) => {
            let output = unpack_window(&input.name, options, window, unpacking)?;
            if output.is_none() {
                *state = State::Done;
            }
            Ok(output)
        }
        State::CsvWorker { windows, reached } => match windows.recv() {
            Ok(Ok((output, end))) => {
                *reached = end;
                Ok(Some(output))
            }
            Ok(Err(e)) => Err(e),
            Err(_) => {
                *state = State::Done;
                Ok(None)
            }
        },
        State::Csv { .. } => unreachable!("next_window starts the CSV worker"),
    }
}

/// What a CSV worker reads with.
struct CsvJob {
    input: Input,
    plan: Box<CsvPlan>,
    options: ReadOptions,
    window: usize,
}

/// Starts the worker that reads the CSV records starting in `pos..end` a
/// window at a time and sends each window and the offset it reached. One
/// window waits in the channel while the next is read: the worker stays
/// one window ahead.
fn spawn_csv_worker(
    job: CsvJob,
    pos: usize,
    end: usize,
    pool: Option<Arc<rayon::ThreadPool>>,
) -> Receiver<Result<(ReadOutput, usize)>> {
    let (sender, receiver) = sync_channel(1);
    std::thread::spawn(move || {
        let name = job.input.name.clone();
        let work = || csv_windows(&job, pos, end, &sender);
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| match &pool {
            Some(pool) => pool.install(work),
            None => work(),
        })) {
            let _ = sender.send(Err(internal_error(&name, &*panic)));
        }
    });
    receiver
}

/// The CSV worker's loop: stops at the end, at an error (sent), or when
/// the consumer is gone. A mapped file's windows copy the long values of
/// the rows they keep as each chunk is parsed (in parallel; see
/// `csv::input_view`), so a selective query copies little and no window
/// is copied whole.
fn csv_windows(job: &CsvJob, mut pos: usize, end: usize, sender: &SyncSender<Result<(ReadOutput, usize)>>) {
    let CsvJob { input, plan, options, window } = job;
    let mut released = pos;
    while pos < end {
        let read = read_window(input, plan, options, pos, pos.saturating_add(*window).min(end));
        let next = match &read {
            Ok((_, reached)) if *reached > pos => *reached,
            _ => end,
        };
        let sent = match read {
            Ok((output, _)) => sender.send(Ok((output, next))).is_ok(),
            Err(e) => {
                let _ = sender.send(Err(e));
                false
            }
        };
        if !sent {
            return;
        }
        // The window before this one has been handed over by now.
        input.release(released, pos);
        released = pos;
        pos = next;
    }
}

/// The error a worker's panic becomes (never crossing into Python).
fn internal_error(name: &str, panic: &(dyn std::any::Any + Send)) -> Error {
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    Error::Input { source: name.to_string(), reason: format!("internal error (please report): {message}") }
}

/// The most of a compressed input read to tell its format: past it, a
/// file of whitespace is sniffed as what it is.
const SNIFF_BYTES: usize = 64 << 20;

/// The next window of a compressed CSV: the carried bytes and `window`
/// more, cut after the last line end outside quotes; the records before it
/// are read, the rest carried over. A record that runs past what is
/// decompressed so far makes the window grow until it ends. Lines of
/// rejects and errors are the file's.
fn unpack_window(name: &str, options: &ReadOptions, window: usize, u: &mut Unpacking) -> Result<Option<ReadOutput>> {
    let mut want = window;
    loop {
        let mut buf = std::mem::take(&mut u.carry);
        if !u.done {
            let before = buf.len();
            u.decoder.fill(&mut buf, want)?;
            u.done = buf.len() < before + want;
        }
        if buf.iter().all(u8::is_ascii_whitespace) {
            if u.done {
                return Ok(None);
            }
            // A window of blank lines (or spaces) only: more records may
            // follow, so read on past its lines, counting them. The spaces
            // after the last line end may begin a record: kept, but not
            // past 1 MiB (a file of spaces must not fill memory).
            u.lines_before += memchr::memchr_iter(b'\n', &buf).count() as u64;
            let line_start = memchr::memrchr(b'\n', &buf).map_or(0, |k| k + 1);
            u.carry = buf[line_start.max(buf.len().saturating_sub(1 << 20))..].to_vec();
            continue;
        }
        let cut = if u.done { buf.len() } else { memchr::memrchr(b'\n', &buf).map_or(0, |k| k + 1) };
        let input = Input::from_vec(name, buf);
        if u.plan.is_none() {
            if cut == 0 {
                u.carry = input_bytes(input);
                want *= 2;
                continue;
            }
            u.plan = Some(CsvPlan::new(&input, options, u.dialect)?);
        }
        let plan = u.plan.as_ref().unwrap_or_else(|| unreachable!("set above"));
        // The header (or leading blank lines) is in the first window only.
        let from = if u.started { 0 } else { plan.data_start.min(cut) };
        let len = input.bytes().len();
        // A line end inside a quoted field is no record's end. Grown to 4
        // windows (1 MiB at least) without one: an unpaired quote, so the
        // last line end, and the reader judges the records, as a read would.
        let cut = match last_record_end(input.bytes(), from, cut) {
            _ if u.done => cut,
            end if end == from && want >= (4 * window).max(1 << 20) => cut,
            end => end,
        };
        if cut <= from && !u.done {
            u.carry = input_bytes(input);
            want *= 2;
            continue;
        }
        let lines_before = u.lines_before;
        let (mut output, reached) = read_window(&input, plan, options, from, cut).map_err(|e| match e {
            Error::Parse(mut reject) => {
                reject.line += lines_before;
                Error::Parse(reject)
            }
            other => other,
        })?;
        if reached > cut && reached >= len && !u.done {
            // A quoted field ran to the end of what is decompressed so far.
            u.carry = input_bytes(input);
            want *= 2;
            continue;
        }
        u.started = true;
        for reject in &mut output.rejects {
            reject.line += u.lines_before;
        }
        let bytes = input.bytes();
        u.lines_before += memchr::memchr_iter(b'\n', &bytes[..reached.min(len)]).count() as u64;
        u.carry = bytes[reached.min(len)..].to_vec();
        return Ok(Some(output));
    }
}

/// The end of the last line of `buf[from..to]` that ends outside quotes
/// (`from` if none), `from` being a record's start: every `"` opens or
/// closes a quoted field (an escaped `""` does both), so their parity
/// tells — at memchr's speed, where following the reader's rules byte by
/// byte made a compressed scan half as fast again. A quote that is text
/// inside a field (no UCM or Asterisk writer leaves one unpaired) flips
/// the count: the cut may then fall inside a later quoted field, where the
/// reader reads on past it (or the window grows) as without this count.
fn last_record_end(buf: &[u8], from: usize, to: usize) -> usize {
    let (mut quoted, mut end) = (false, from);
    for i in memchr::memchr2_iter(b'"', b'\n', &buf[from..to]) {
        match buf[from + i] {
            b'"' => quoted = !quoted,
            _ if !quoted => end = from + i + 1,
            _ => {}
        }
    }
    end
}

fn input_bytes(input: Input) -> Vec<u8> {
    input.bytes().to_vec()
}

/// The names of all the columns `input` holds (before any projection) and
/// its format: a CSV's header (a compressed one's after its first window),
/// or for the other formats a parse that builds nothing.
pub fn column_names(input: Input, format: Format, options: &ReadOptions) -> Result<(Vec<String>, Format)> {
    let options = ReadOptions {
        pushdown: Some(std::sync::Arc::new(Pushdown::new(None, Some(RowFilter::nothing())))),
        ..options.clone()
    };
    let mut stream = Stream::open(input, format, options, None)?;
    // Keys beyond the data model may first appear in any window.
    let mut names: Vec<String> = Vec::new();
    loop {
        if let Some(header) = stream.header_names() {
            return Ok((header, stream.format));
        }
        let Some(output) = stream.next_window()? else { break };
        for field in output.schema.fields() {
            if !names.contains(field.name()) {
                names.push(field.name().clone());
            }
        }
        records::few_enough_columns(&stream.input.name, names.len())?;
    }
    Ok((names, stream.format))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::cast::AsArray;
    use arrow_array::types::Int64Type;

    use super::*;
    use crate::query::compile::{Surface, compile};
    use crate::read::pushdown::COUNTERS;

    fn archive(n: usize) -> Vec<u8> {
        let mut text = String::from("AcctId,src,dst,billsec,lastdata\n");
        for i in 0..n {
            // Every third lastdata is unquoted with commas (the lastdata rule).
            let lastdata = if i % 3 == 0 { format!("SIP/{i},60,") } else { format!("\"SIP/{i},60\"") };
            text.push_str(&format!("{},{},6{:03},{},{lastdata}\n", i + 1, 5300 + i % 50, i % 1000, i % 90));
        }
        text.into_bytes()
    }

    fn ids(stream: &mut Stream) -> Vec<i64> {
        let mut out = Vec::new();
        while let Some(window) = stream.next_window().unwrap() {
            for batch in window.batches {
                let column = batch.column(batch.schema().index_of("AcctId").unwrap());
                out.extend(column.as_primitive::<Int64Type>().iter().flatten());
            }
        }
        out
    }

    #[test]
    fn a_record_ends_at_a_line_end_outside_quotes() {
        let end = |text: &str| last_record_end(text.as_bytes(), 0, text.len());
        assert_eq!(end("a,b\nc,\"d\ne\"\n"), 12);
        assert_eq!(end("a,b\nc,\"d\ne"), 4); // the second record's quoted field goes on
        assert_eq!(end("a,\"x\"\"\ny\"\n"), 10); // `""` is a quote inside
        assert_eq!(end("a,\"N\" <1>,b\nc"), 12); // a caller ID token closes its quotes
        assert_eq!(end("a,b\nc,d\"e\nf"), 4); // a quote that is text: an earlier cut
        assert_eq!(end("\"unterminated\n"), 0);
    }

    #[test]
    fn windows_give_the_records_of_one_read_once_each() {
        let data = archive(500);
        for window in [1, 37, 1000, usize::MAX] {
            let options = ReadOptions { threads: Some(3), chunk_bytes: Some(64), ..ReadOptions::default() };
            let mut stream =
                Stream::open(Input::from_vec("t", data.clone()), Format::Auto, options, Some(window)).unwrap();
            assert_eq!(ids(&mut stream), (1..=500).collect::<Vec<_>>(), "window {window}");
            assert_eq!(stream.progress(), (data.len(), data.len()));
        }
    }

    #[test]
    fn byte_ranges_split_a_file_between_readers_at_line_starts() {
        let data = archive(400);
        let len = data.len();
        for cuts in
            [vec![0, len], vec![0, 1, 2, len], vec![0, 100, 5000, 5001, 9000, len], vec![0, len / 3, 2 * len / 3, len]]
        {
            let mut all = Vec::new();
            for w in cuts.windows(2) {
                let input = Input::from_vec("t", data.clone());
                let mut stream =
                    Stream::open_range(input, Format::UcmCsv, ReadOptions::default(), Some(777), Some((w[0], w[1])))
                        .unwrap();
                all.extend(ids(&mut stream));
            }
            assert_eq!(all, (1..=400).collect::<Vec<_>>(), "cuts {cuts:?}");
        }
    }

    #[test]
    fn json_element_ranges_split_a_document_between_readers() {
        let records: Vec<String> =
            (1..=500).map(|i| format!(r#"{{"AcctId": "{i}", "lastdata": "x}},{{y", "src": "53{i}"}}"#)).collect();
        let data = format!(r#"{{"cdr": [{}]}}"#, records.join(", ")).into_bytes();
        let input = Input::from_vec("t", data.clone());
        let ranges = json::element_ranges(&input, false, 1500).unwrap().expect("one array");
        assert!(ranges.len() > 5);
        let mut all = Vec::new();
        for range in ranges {
            let input = Input::from_vec("t", data.clone());
            let mut stream =
                Stream::open_range(input, Format::UcmJson, ReadOptions::default(), None, Some(range)).unwrap();
            all.extend(ids(&mut stream));
        }
        assert_eq!(all, (1..=500).collect::<Vec<_>>());
        let flat = Input::from_vec("t", br#"{"event_type": "call_cdr", "id": "1"}"#.to_vec());
        assert!(json::element_ranges(&flat, true, 10).unwrap().is_none());
    }

    #[test]
    fn pushdown_builds_only_matching_rows_and_asked_columns() {
        let plan = compile("caller=5300-5304&minDur=45", 0, Surface::Cdrapi, &[]).unwrap();
        let pushdown = Pushdown::new(Some(vec!["AcctId".into(), "src".into()]), Some(RowFilter::from_plan(&plan, 0)));
        let options = ReadOptions { pushdown: Some(Arc::new(pushdown)), ..ReadOptions::default() };
        let mut stream = Stream::open(Input::from_vec("t", archive(500)), Format::UcmCsv, options, Some(4096)).unwrap();
        let got = ids(&mut stream);
        let expected: Vec<i64> = (0..500).filter(|i| i % 50 < 5 && i % 90 >= 45).map(|i| i + 1).collect();
        assert_eq!(got, expected);
        // Other tests run beside this one: the counters only grow.
        assert!(COUNTERS.rows.load(std::sync::atomic::Ordering::Relaxed) >= expected.len() as u64);
    }

    #[test]
    fn json_and_xml_come_a_window_at_a_time_in_order() {
        let records: Vec<String> = (1..=300).map(|i| format!(r#"{{"AcctId": "{i}", "src": "53{i}"}}"#)).collect();
        let json = format!(r#"{{"cdr": [{}]}}"#, records.join(", ")).into_bytes();
        let calls: Vec<String> = (1..=300).map(|i| format!("<cdr><AcctId>{i}</AcctId><src>x</src></cdr>")).collect();
        let xml = format!("<cdr_root>{}</cdr_root>", calls.concat()).into_bytes();
        for data in [json, xml] {
            let options = ReadOptions { threads: Some(2), ..ReadOptions::default() };
            let mut stream = Stream::open(Input::from_vec("t", data), Format::Auto, options, Some(2000)).unwrap();
            let mut windows = 0;
            let mut got = Vec::new();
            while let Some(window) = stream.next_window().unwrap() {
                windows += 1;
                for batch in window.batches {
                    let column = batch.column(batch.schema().index_of("AcctId").unwrap());
                    got.extend(column.as_primitive::<Int64Type>().iter().flatten());
                }
            }
            assert_eq!(got, (1..=300).collect::<Vec<_>>());
            assert!(windows > 3, "{windows} windows");
        }
    }

    #[test]
    fn a_bad_record_stops_a_json_stream_with_its_error() {
        let json = br#"{"cdr": [{"AcctId": "1"}, {"AcctId": "x"}, {"AcctId": "3"}]}"#.to_vec();
        let mut stream =
            Stream::open(Input::from_vec("t", json), Format::Auto, ReadOptions::default(), Some(1)).unwrap();
        let error = loop {
            match stream.next_window() {
                Ok(Some(_)) => continue,
                Ok(None) => panic!("the bad record was not reported"),
                Err(e) => break e.to_string(),
            }
        };
        assert!(error.contains("AcctId is not an integer"), "{error}");
        assert!(stream.next_window().unwrap().is_none());
    }

    #[test]
    fn column_names_of_csv_and_json() {
        let (names, format) =
            column_names(Input::from_vec("t", archive(3)), Format::Auto, &ReadOptions::default()).unwrap();
        assert_eq!((names.len(), format), (34, Format::UcmCsv));
        let json = br#"{"cdr": [{"src": "1", "nat_call": "yes"}]}"#.to_vec();
        let (names, format) = column_names(Input::from_vec("t", json), Format::Auto, &ReadOptions::default()).unwrap();
        assert_eq!((names.last().map(String::as_str), format), (Some("nat_call"), Format::UcmJson));
    }
}

#[cfg(test)]
mod compressed_tests {
    use std::io::Write;

    use super::*;
    use crate::read::OnError;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    fn rows(mut stream: Stream) -> (Vec<usize>, Vec<u64>) {
        let (mut rows, mut lines) = (Vec::new(), Vec::new());
        while let Some(window) = stream.next_window().unwrap() {
            rows.push(window.num_rows());
            lines.extend(window.rejects.iter().map(|r| r.line));
        }
        (rows, lines)
    }

    #[test]
    fn a_gzipped_csv_is_read_a_window_at_a_time_with_whole_file_lines() {
        let mut text = String::from("AcctId,src,lastdata\n");
        for i in 1..=2000 {
            // A quoted field across lines now and then; a bad record at line 1501.
            let lastdata = if i % 97 == 0 { "\"SIP/x,\n60\"".to_string() } else { format!("SIP/{i}") };
            let id = if i == 1500 { "x".to_string() } else { i.to_string() };
            text.push_str(&format!("{id},53{i},{lastdata}\n"));
        }
        let options = ReadOptions { on_error: OnError::Collect, ..ReadOptions::default() };
        let plain =
            super::super::read(&Input::from_vec("t", text.clone().into_bytes()), Format::UcmCsv, &options).unwrap();
        let packed = Input::from_vec("t.gz", gzip(text.as_bytes()));
        let stream = Stream::open(packed, Format::Auto, options.clone(), Some(3000)).unwrap();
        let (windows, reject_lines) = rows(stream);
        assert!(windows.len() > 10, "{} windows", windows.len());
        assert_eq!(windows.iter().sum::<usize>(), plain.num_rows());
        assert_eq!(reject_lines, plain.rejects.iter().map(|r| r.line).collect::<Vec<_>>());
    }
}
