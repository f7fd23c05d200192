//! gzip and zstd, told by their magic bytes: decompressed whole for the
//! readers that need a whole document, or a piece at a time for scans.

use std::io::Read;

use arrow_buffer::Buffer;

use super::Input;
use crate::error::{Error, Result};

const GZIP: &[u8] = &[0x1f, 0x8b];
const ZSTD: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];

/// Whether `bytes` start like gzip or zstd.
pub fn is_compressed(bytes: &[u8]) -> bool {
    bytes.starts_with(GZIP) || bytes.starts_with(ZSTD)
}

/// The decompressed input of a gzip or zstd source, or `None` for plain bytes.
pub fn decompress(input: &Input) -> Result<Option<Input>> {
    let Some(mut decoder) = Decoder::new(input) else { return Ok(None) };
    let mut out = Vec::new();
    decoder.read_to_end(&mut out).map_err(|e| decoder.error(e))?;
    Ok(Some(Input::from_vec(input.name.clone(), out)))
}

/// The compressed bytes as a reader that owns them.
struct Compressed {
    data: Buffer,
    pos: usize,
}

impl Read for Compressed {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let rest = &self.data.as_slice()[self.pos..];
        let n = rest.len().min(out.len());
        out[..n].copy_from_slice(&rest[..n]);
        self.pos += n;
        Ok(n)
    }
}

enum Kind {
    Gzip(Box<flate2::read::MultiGzDecoder<Compressed>>),
    /// zstd, a frame at a time (`None` between frames).
    Zstd(
        Option<Box<ruzstd::decoding::StreamingDecoder<Compressed, ruzstd::decoding::FrameDecoder>>>,
        Option<Compressed>,
    ),
}

/// A streaming decompressor over a source's bytes.
pub struct Decoder {
    name: String,
    kind: Kind,
    total: usize,
}

impl Decoder {
    /// A decoder for `input`, or `None` if it is not compressed.
    pub fn new(input: &Input) -> Option<Self> {
        let bytes = input.bytes();
        let compressed = Compressed { data: input.data.clone(), pos: 0 };
        let kind = if bytes.starts_with(GZIP) {
            Kind::Gzip(Box::new(flate2::read::MultiGzDecoder::new(compressed)))
        } else if bytes.starts_with(ZSTD) {
            Kind::Zstd(None, Some(compressed))
        } else {
            return None;
        };
        Some(Self { name: input.name.clone(), kind, total: bytes.len() })
    }

    pub fn error(&self, e: std::io::Error) -> Error {
        let what = if matches!(self.kind, Kind::Gzip(_)) { "gzip" } else { "zstd" };
        Error::Input { source: self.name.clone(), reason: format!("cannot decompress {what}: {e}") }
    }

    /// (compressed bytes consumed, compressed bytes in all).
    pub fn progress(&self) -> (usize, usize) {
        let pos = match &self.kind {
            Kind::Gzip(d) => d.get_ref().pos,
            Kind::Zstd(Some(d), _) => d.get_ref().pos,
            Kind::Zstd(None, Some(c)) => c.pos,
            Kind::Zstd(None, None) => self.total,
        };
        (pos, self.total)
    }

    /// Fills `out` up to `want` more bytes (fewer only at the end).
    pub fn fill(&mut self, out: &mut Vec<u8>, want: usize) -> Result<()> {
        let target = out.len() + want;
        let mut piece = vec![0u8; 1 << 16];
        while out.len() < target {
            let room = piece.len().min(target - out.len());
            let n = self.read(&mut piece[..room]).map_err(|e| self.error(e))?;
            if n == 0 {
                break;
            }
            out.extend_from_slice(&piece[..n]);
        }
        Ok(())
    }
}

impl Read for Decoder {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        match &mut self.kind {
            Kind::Gzip(d) => d.read(out),
            Kind::Zstd(frame, rest) => loop {
                if let Some(d) = frame {
                    let n = d.read(out)?;
                    if n > 0 {
                        return Ok(n);
                    }
                    *rest = frame.take().map(|d| d.into_inner());
                    continue;
                }
                let Some(compressed) = rest.take() else { return Ok(0) };
                if compressed.pos >= compressed.data.len() {
                    return Ok(0);
                }
                let d = ruzstd::decoding::StreamingDecoder::new(compressed)
                    .map_err(|e| std::io::Error::other(e.to_string()))?;
                *frame = Some(Box::new(d));
            },
        }
    }
}
