//! Readers: bytes of a PBX export → Arrow record batches in the cdrq schema.

pub mod asterisk;
pub mod builder;
pub mod chunks;
pub mod csv;
pub mod decompress;
pub mod encoding;
pub mod json;
pub mod portsip;
pub mod pushdown;
pub mod records;
pub mod split;
pub mod stream;
pub mod webui;
pub mod xml;

use std::fs::File;
use std::path::Path;
use std::ptr::NonNull;
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_buffer::Buffer;
use arrow_schema::SchemaRef;

use crate::error::{Error, Reject, Result};
pub use decompress::decompress;
pub use encoding::Encoding;
use pushdown::Pushdown;

/// The bytes of one source and the name errors give it.
#[derive(Clone)]
pub struct Input {
    pub name: String,
    pub data: Buffer,
    /// The memory map behind `data`, for a file: a scan tells the kernel
    /// when it is done with a range of it.
    pub map: Option<Arc<memmap2::Mmap>>,
    /// Whether built columns may point into `map` (`memory_map=True`):
    /// otherwise they get a copy of their bytes, so no later change to the
    /// file can alter or crash a frame.
    pub share_map: bool,
    /// Where invalid UTF-8 was replaced (see [`encoding::repair`]): records
    /// holding one of these offsets are rejected.
    pub invalid_utf8: Option<Arc<[usize]>>,
}

impl Input {
    /// Maps a file into memory (`share_map` false: columns copy their bytes).
    pub fn from_path(path: &Path) -> Result<Self> {
        let name = path.display().to_string();
        let io_err = |e: std::io::Error| Error::Input { source: name.clone(), reason: e.to_string() };
        let file = File::open(path).map_err(io_err)?;
        let len = file.metadata().map_err(io_err)?.len();
        if len == 0 {
            return Ok(Self::from_vec(name, Vec::new()));
        }
        // SAFETY: the map is read-only. A file truncated by another process
        // while mapped faults on access: columns copy their bytes unless
        // `share_map` (memory_map=True) accepts that hazard.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io_err)?;
        let map = Arc::new(map);
        Ok(Self {
            data: buffer_from_owner(Arc::clone(&map)),
            name,
            map: Some(map),
            share_map: false,
            invalid_utf8: None,
        })
    }

    pub fn from_vec(name: impl Into<String>, bytes: Vec<u8>) -> Self {
        Self::from_buffer(name, Buffer::from_vec(bytes))
    }

    pub fn from_buffer(name: impl Into<String>, data: Buffer) -> Self {
        Self { name: name.into(), data, map: None, share_map: false, invalid_utf8: None }
    }

    /// The buffer text columns built from bytes `start..start + len` point
    /// into: a slice of the input, or a copy of it for a file mapped
    /// without `share_map`.
    pub fn column_buffer(&self, start: usize, len: usize) -> Buffer {
        let slice = self.data.slice_with_length(start, len);
        if self.map.is_none() || self.share_map {
            return slice;
        }
        let copy = Buffer::from(slice.as_slice().to_vec());
        // The copy is what the frame keeps: the mapped pages can go.
        self.release(start, start + len);
        copy
    }

    /// Tells the kernel that bytes `start..end` are not needed soon, so a
    /// scan's resident memory stays near one window. Arrays still pointing
    /// there read the file's pages again if touched: nothing is lost.
    pub fn release(&self, start: usize, end: usize) {
        #[cfg(unix)]
        if let Some(map) = &self.map
            && start < end
            && end <= map.len()
        {
            // SAFETY: the map is read-only, so dropping its pages discards
            // nothing: the next access reads the file again.
            let _ = unsafe { map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, start, end - start) };
        }
        #[cfg(not(unix))]
        let _ = (start, end);
    }

    pub fn bytes(&self) -> &[u8] {
        self.data.as_slice()
    }
}

/// A `Buffer` over bytes owned by `owner`, without copying them.
pub fn buffer_from_owner<T>(owner: Arc<T>) -> Buffer
where
    T: AsRef<[u8]> + std::panic::RefUnwindSafe + Send + Sync + 'static,
{
    let bytes = (*owner).as_ref();
    let len = bytes.len();
    let ptr = NonNull::new(bytes.as_ptr().cast_mut()).unwrap_or(NonNull::dangling());
    // SAFETY: `owner` keeps the bytes alive and unmoved for the buffer's life.
    unsafe { Buffer::from_custom_allocation(ptr, len, owner) }
}

/// The export formats cdrq reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Auto,
    UcmCsv,
    UcmJson,
    UcmXml,
    UcmWebuiCsv,
    PortsipJson,
    /// Asterisk cdr_csv's `Master.csv`: headerless, every field quoted.
    AsteriskCsv,
    /// Asterisk cdr_custom / cdr_sqlite3_custom: the columns of the site's
    /// template ([`ReadOptions::columns`]).
    AsteriskCustom,
    /// FreePBX's CDR report export: a header of Asterisk's names.
    FreepbxCsv,
}

impl Format {
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "auto" => Self::Auto,
            "ucm-csv" => Self::UcmCsv,
            "ucm-json" => Self::UcmJson,
            "ucm-xml" => Self::UcmXml,
            "ucm-webui-csv" => Self::UcmWebuiCsv,
            "portsip-json" => Self::PortsipJson,
            "asterisk-csv" => Self::AsteriskCsv,
            "asterisk-custom" => Self::AsteriskCustom,
            "freepbx-csv" => Self::FreepbxCsv,
            _ => return None,
        })
    }

    /// Whether both formats are the same syntax (JSON, XML or CSV): what
    /// sniffing can tell apart for certain.
    pub fn same_syntax(self, other: Self) -> bool {
        let syntax = |f: Self| match f {
            Self::UcmJson | Self::PortsipJson => 0,
            Self::UcmXml => 1,
            Self::UcmCsv | Self::UcmWebuiCsv | Self::AsteriskCsv | Self::AsteriskCustom | Self::FreepbxCsv => 2,
            Self::Auto => 3,
        };
        syntax(self) == syntax(other)
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::UcmCsv => "ucm-csv",
            Self::UcmJson => "ucm-json",
            Self::UcmXml => "ucm-xml",
            Self::UcmWebuiCsv => "ucm-webui-csv",
            Self::PortsipJson => "portsip-json",
            Self::AsteriskCsv => "asterisk-csv",
            Self::AsteriskCustom => "asterisk-custom",
            Self::FreepbxCsv => "freepbx-csv",
        }
    }

    /// The CSV dialect of a format read by [`csv`], if it is one.
    pub fn csv_dialect(self) -> Option<csv::Dialect> {
        match self {
            Self::UcmCsv => Some(csv::Dialect::Api),
            Self::UcmWebuiCsv => Some(csv::Dialect::WebUi),
            Self::AsteriskCsv => Some(csv::Dialect::AsteriskCsv),
            Self::AsteriskCustom => Some(csv::Dialect::AsteriskCustom),
            Self::FreepbxCsv => Some(csv::Dialect::FreepbxCsv),
            _ => None,
        }
    }

    /// Whether a file of this format is read a window at a time (and may
    /// be split into byte ranges): the headerless-or-headed CSV dialects
    /// whose records are independent.
    pub fn windowed_csv(self) -> bool {
        matches!(self, Self::UcmCsv | Self::AsteriskCsv | Self::AsteriskCustom | Self::FreepbxCsv)
    }

    /// Tells the format from the first bytes: `{`/`[` JSON (PortSIP if its
    /// keys show), `<` XML, a header of web-UI labels, an Asterisk-family
    /// header or headerless quoted record ([`asterisk::sniff`]), else the CDR API CSV.
    pub fn sniff(bytes: &[u8]) -> Self {
        Self::sniff_why(bytes).0
    }

    /// [`Self::sniff`] and what it saw, for error messages.
    pub fn sniff_why(bytes: &[u8]) -> (Self, String) {
        let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
        let start = bytes.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(bytes.len());
        let head = &bytes[start..bytes.len().min(start + 4096)];
        let shown = String::from_utf8_lossy(&head[..head.len().min(40)]).into_owned();
        match head.first() {
            Some(b'{' | b'[') => {
                // A key is a quoted name followed by `:`; the same word as a
                // value (`"lastdata": "items"`) says nothing. UCM keys first:
                // a UCM export never holds PortSIP's keys, but may hold its words.
                let has_key = |k: &[u8]| {
                    memchr::memmem::find_iter(head, k)
                        .any(|at| head[at + k.len()..].iter().find(|b| !b.is_ascii_whitespace()) == Some(&b':'))
                };
                let ucm = has_key(b"\"cdr_root\"") || has_key(b"\"cdr\"") || has_key(b"\"main_cdr\"");
                if !ucm && (has_key(b"\"items\"") || has_key(b"\"call_id\"") || has_key(b"\"event_type\"")) {
                    (Self::PortsipJson, format!("JSON with PortSIP keys: {shown:?}"))
                } else {
                    (Self::UcmJson, format!("JSON without PortSIP keys: {shown:?}"))
                }
            }
            Some(b'<') => (Self::UcmXml, format!("markup: {shown:?}")),
            _ => {
                let line_end = memchr::memchr(b'\n', head).unwrap_or(head.len());
                let line = String::from_utf8_lossy(&head[..line_end]);
                let labels: Vec<&str> = line.trim_end().split(',').collect();
                if webui::is_webui_header(&labels) {
                    (Self::UcmWebuiCsv, format!("a header of web UI labels: {shown:?}"))
                } else if let Some((format, seen)) = asterisk::sniff(head) {
                    (format, format!("{seen}: {shown:?}"))
                } else {
                    (Self::UcmCsv, format!("neither JSON, XML nor web UI labels: {shown:?}"))
                }
            }
        }
    }
}

/// What to do with a record that cannot be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnError {
    /// Fail the read with the first bad record.
    Raise,
    /// Return it among the rejects and go on.
    Collect,
}

#[derive(Clone, Debug)]
pub struct ReadOptions {
    /// Worker threads; `None` uses the global pool.
    pub threads: Option<usize>,
    pub on_error: OnError,
    /// Time zone label of the timestamp columns, when the wall-clock values
    /// are already instants in it (UTC); `None` leaves them naive.
    pub tz: Option<String>,
    /// Bytes per parallel chunk; `None` picks by input size and threads.
    /// Tests set it small to exercise chunk boundaries on small inputs.
    pub chunk_bytes: Option<usize>,
    /// Columns to build and rows to keep; `None` builds everything.
    pub pushdown: Option<Arc<Pushdown>>,
    pub encoding: Encoding,
    /// The wall-clock times the archive zone skips (DST gaps): a record
    /// holding one is rejected. `None` for UTC, naive times and instants.
    pub gaps: Option<Arc<crate::values::Gaps>>,
    /// `asterisk-custom`: the template's column names in order; `None`
    /// is the template of Asterisk's sample `cdr_custom.conf`.
    pub columns: Option<Arc<[String]>>,
}

impl Default for ReadOptions {
    fn default() -> Self {
        Self {
            threads: None,
            on_error: OnError::Raise,
            tz: Some("UTC".into()),
            chunk_bytes: None,
            pushdown: None,
            encoding: Encoding::Utf8,
            gaps: None,
            columns: None,
        }
    }
}

impl ReadOptions {
    /// For instants (PortSIP): labelled UTC, no wall-clock gaps.
    pub fn for_instants(&self) -> Self {
        Self { tz: Some("UTC".into()), gaps: None, ..self.clone() }
    }
}

/// Receives each window of records a nested-format reader built and the
/// input offset it reached; returns `false` to stop the read.
pub type Emit<'a> = &'a dyn Fn(Result<ReadOutput>, usize) -> bool;

/// The reason of the error a reader returns when its [`Emit`] stopped it.
pub const STOPPED: &str = "stopped by the reader's consumer";

/// Turns byte offsets into 1-based lines and character columns, sweeping
/// forward through the input (restarting only if asked to go back).
pub struct Locator<'a> {
    input: &'a Input,
    line: u64,
    scanned: usize,
    /// Characters from the start of `line` to `scanned`: a single-line document
    /// (the UCM's JSON) with many rejects must not count from the line's
    /// start for each.
    column: u64,
}

impl<'a> Locator<'a> {
    pub fn new(input: &'a Input) -> Self {
        Self { input, line: 1, scanned: 0, column: 0 }
    }

    /// A reject of the record at `start..end`, whose problem is at `at`.
    pub fn reject(&mut self, start: usize, end: usize, at: usize, reason: String) -> Reject {
        let buf = self.input.bytes();
        let at = at.min(buf.len());
        if at < self.scanned {
            (self.line, self.scanned, self.column) = (1, 0, 0);
        }
        let mut from = self.scanned;
        for k in memchr::memchr_iter(b'\n', &buf[self.scanned..at]) {
            self.line += 1;
            (from, self.column) = (self.scanned + k + 1, 0);
        }
        if from == 0 && buf.starts_with(b"\xEF\xBB\xBF") {
            from = 3.min(at);
        }
        self.column += chars(&buf[from.min(at)..at]);
        self.scanned = at;
        Reject {
            source: self.input.name.clone(),
            line: self.line,
            column: self.column + 1,
            reason,
            raw: String::from_utf8_lossy(&buf[start.min(buf.len())..end.min(buf.len())]).into_owned(),
        }
    }
}

/// Characters in `bytes`: the bytes that start one in UTF-8.
fn chars(bytes: &[u8]) -> u64 {
    bytes.iter().filter(|&&b| (b as i8) >= -0x40).count() as u64
}

/// Everything a read produced.
pub struct ReadOutput {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
    pub rejects: Vec<Reject>,
}

impl ReadOutput {
    pub fn num_rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }
}

/// Reads one source in the given format (`Auto` sniffs it); gzip and zstd
/// sources are decompressed and other encodings decoded first.
pub fn read(input: &Input, format: Format, options: &ReadOptions) -> Result<ReadOutput> {
    if let Some(plain) = decompress(input)? {
        return read(&plain, format, options);
    }
    if let Some(text) = encoding::decode(input, options.encoding) {
        return read(&text, format, &ReadOptions { encoding: Encoding::Utf8, ..options.clone() });
    }
    let (format, why) = resolve_format(&input.name, input.bytes(), format)?;
    let sniffed = why.map(|why| (format, why));
    let run = || match format {
        Format::UcmCsv => csv::read_ucm_csv(input, options),
        Format::UcmJson => json::read_ucm_json(input, options),
        Format::UcmWebuiCsv => csv::read_webui_csv(input, options),
        Format::AsteriskCsv => csv::read_csv(input, options, csv::Dialect::AsteriskCsv),
        Format::AsteriskCustom => csv::read_csv(input, options, csv::Dialect::AsteriskCustom),
        Format::FreepbxCsv => csv::read_csv(input, options, csv::Dialect::FreepbxCsv),
        Format::UcmXml => xml::read_ucm_xml(input, options),
        Format::PortsipJson => json::read_portsip_json(input, options),
        Format::Auto => unreachable!("auto is resolved above"),
    };
    let result = match options.threads {
        None => run(),
        Some(n) => rayon::ThreadPoolBuilder::new()
            .num_threads(n.max(1))
            .build()
            .map_err(|e| Error::Input { source: input.name.clone(), reason: e.to_string() })?
            .install(run),
    };
    result.map_err(|e| said_guess(e, sniffed.as_ref()))
}

/// A first record whose shape fails may mean the format sniffed (`sniffed`:
/// what was read, and why) was wrong: the error says what it was. (A bad
/// value in a well-shaped record says nothing.)
pub fn said_guess(error: Error, sniffed: Option<&(Format, String)>) -> Error {
    match (error, sniffed) {
        (Error::Parse(mut reject), Some((format, why)))
            if reject.line == 1 && reject.reason.starts_with("expected") =>
        {
            reject.reason = format!(
                "{} (format auto read this as {} after seeing {why}; pass format= to choose)",
                reject.reason,
                format.name()
            );
            Error::Parse(reject)
        }
        (error, _) => error,
    }
}

/// The format to read `head` (a source's first bytes) as, and for `Auto`
/// what sniffing saw. An explicit format whose syntax (JSON, XML, CSV) the
/// bytes do not have is an error saying what they look like: read as
/// another format they would give nothing, silently.
pub fn resolve_format(name: &str, head: &[u8], format: Format) -> Result<(Format, Option<String>)> {
    let (seen, why) = Format::sniff_why(head);
    if format == Format::Auto {
        return Ok((seen, Some(why)));
    }
    if !seen.same_syntax(format) && !is_blank(head) {
        let line = &head[..memchr::memchr(b'\n', head).unwrap_or(head.len()).min(200)];
        return Err(Error::Parse(Box::new(Reject {
            source: name.to_string(),
            line: 1,
            column: 1,
            reason: format!("format={} but the bytes look like {why}", format.name()),
            raw: String::from_utf8_lossy(line).into_owned(),
        })));
    }
    Ok((format, None))
}

/// Nothing but whitespace (and a BOM): an empty export of any format.
pub fn is_blank(bytes: &[u8]) -> bool {
    bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes).iter().all(u8::is_ascii_whitespace)
}
