//! Reading a source as a stream of windows, for scans over archives larger
//! than memory.
//!
//! A CDR API CSV file is read a window of records at a time (each window
//! parsed in parallel chunks, exactly as a whole-file read would), and the
//! pages of a window already handed over are given back to the kernel, so
//! resident memory follows the window size, not the file size. The nested
//! formats (JSON, XML) and the web UI download are read whole, as one
//! window: their records are only known once their document is parsed.

use super::csv::{CsvPlan, Dialect, read_window};
use super::pushdown::{Pushdown, RowFilter};
use super::{Format, Input, ReadOptions, ReadOutput, decompress};
use crate::error::{Error, Result};

/// Bytes of CSV per window and worker thread.
const WINDOW_BYTES_PER_THREAD: usize = 16 << 20;

pub struct Stream {
    input: Input,
    format: Format,
    options: ReadOptions,
    pool: Option<rayon::ThreadPool>,
    window_bytes: usize,
    state: State,
}

enum State {
    Csv { plan: Box<CsvPlan>, pos: usize, released: usize },
    Whole,
    Done,
}

impl Stream {
    /// Opens `input` (decompressed and sniffed as [`super::read`] does);
    /// reads nothing yet beyond a CSV header. `window_bytes` defaults to
    /// 16 MiB per thread.
    pub fn open(input: Input, format: Format, options: ReadOptions, window_bytes: Option<usize>) -> Result<Self> {
        let input = decompress(&input)?.unwrap_or(input);
        let format = if format == Format::Auto { Format::sniff(input.bytes()) } else { format };
        let pool = match options.threads {
            None => None,
            Some(n) => Some(
                rayon::ThreadPoolBuilder::new()
                    .num_threads(n.max(1))
                    .build()
                    .map_err(|e| Error::Input { source: input.name.clone(), reason: e.to_string() })?,
            ),
        };
        let threads = pool.as_ref().map_or_else(rayon::current_num_threads, |p| p.current_num_threads());
        let window_bytes = window_bytes.unwrap_or(WINDOW_BYTES_PER_THREAD * threads).max(1);
        let state = match format {
            Format::UcmCsv => {
                let plan = Box::new(CsvPlan::new(&input, &options, Dialect::Api)?);
                let pos = plan.data_start;
                State::Csv { plan, pos, released: 0 }
            }
            _ => State::Whole,
        };
        Ok(Self { input, format, options, pool, window_bytes, state })
    }

    /// The format read (never `Auto`).
    pub fn format(&self) -> Format {
        self.format
    }

    /// The next window's batches and rejects; `None` once the input is done.
    pub fn next_window(&mut self) -> Result<Option<ReadOutput>> {
        let result = match &self.pool {
            Some(pool) => {
                pool.install(|| step(&self.input, &self.options, self.format, self.window_bytes, &mut self.state))
            }
            None => step(&self.input, &self.options, self.format, self.window_bytes, &mut self.state),
        };
        if result.is_err() {
            self.state = State::Done;
        }
        result
    }

    /// Bytes of the (decompressed) input read so far, and in all.
    pub fn progress(&self) -> (usize, usize) {
        let total = self.input.bytes().len();
        let done = match &self.state {
            State::Csv { pos, .. } => *pos,
            State::Whole => 0,
            State::Done => total,
        };
        (done, total)
    }
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
        State::Whole => {
            *state = State::Done;
            super::read(input, format, options).map(Some)
        }
        State::Csv { plan, pos, released } => {
            let len = input.bytes().len();
            if *pos >= len {
                *state = State::Done;
                return Ok(None);
            }
            let (output, end) = read_window(input, plan, options, *pos, pos.saturating_add(window).min(len))?;
            // The window before this one has been handed over by now.
            input.release(*released, *pos);
            *released = *pos;
            *pos = if end > *pos { end } else { len };
            Ok(Some(output))
        }
    }
}

/// The names of all the columns `input` holds (before any projection) and
/// its format: a CSV's header, or for the other formats a parse that
/// builds nothing.
pub fn column_names(input: Input, format: Format, options: &ReadOptions) -> Result<(Vec<String>, Format)> {
    let options = ReadOptions {
        pushdown: Some(std::sync::Arc::new(Pushdown { columns: None, filter: Some(RowFilter::nothing()) })),
        ..options.clone()
    };
    let mut stream = Stream::open(input, format, options, None)?;
    let names = match &stream.state {
        State::Csv { plan, .. } => plan.names().to_vec(),
        _ => {
            let output = stream.next_window()?.unwrap_or_else(|| unreachable!("a whole read yields once"));
            output.schema.fields().iter().map(|f| f.name().clone()).collect()
        }
    };
    Ok((names, stream.format))
}
