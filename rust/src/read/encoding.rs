//! Text encodings of a source. The readers parse UTF-8; a source in another
//! encoding (real PBXs write Latin-1 caller names) is decoded to UTF-8
//! first, and UTF-8 with invalid bytes is either repaired (U+FFFD) with the
//! repaired places marked, so that only the records holding them are
//! rejected, or kept repaired (`utf8-lossy`).
//!
//! encoding_rs (Firefox's) does the decoding: its labels follow the WHATWG
//! Encoding Standard, where `latin-1` and `iso-8859-1` mean windows-1252 —
//! what files labelled Latin-1 hold in practice (0x80–0x9F as `€`, `ž`, …
//! rather than unprintable C1 controls).

use std::sync::Arc;

use super::Input;

/// How a source's bytes become text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Encoding {
    /// UTF-8; a record with an invalid byte is rejected.
    #[default]
    Utf8,
    /// UTF-8; invalid bytes become U+FFFD and the record is kept.
    Utf8Lossy,
    /// Any other encoding encoding_rs knows (`latin-1`, `windows-1252`, …).
    Other(&'static encoding_rs::Encoding),
}

impl Encoding {
    /// `utf8`, `utf8-lossy` (Polars' names) or a WHATWG label.
    pub fn parse(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "utf8" | "utf-8" => Some(Self::Utf8),
            "utf8-lossy" => Some(Self::Utf8Lossy),
            // Python's and Polars' spelling; WHATWG has `latin1`.
            "latin-1" => Some(Self::Other(encoding_rs::WINDOWS_1252)),
            label => match encoding_rs::Encoding::for_label(label.as_bytes())? {
                e if e == encoding_rs::UTF_8 => Some(Self::Utf8),
                e => Some(Self::Other(e)),
            },
        }
    }
}

/// The UTF-8 text of `input` when it must be decoded first (`None`: the
/// bytes are read as they are). A BOM is kept: the readers skip it.
pub fn decode(input: &Input, encoding: Encoding) -> Option<Input> {
    let bytes = input.bytes();
    let text = match encoding {
        Encoding::Utf8 => return None,
        Encoding::Utf8Lossy => encoding_rs::UTF_8.decode_without_bom_handling(bytes).0,
        Encoding::Other(e) => e.decode_without_bom_handling(bytes).0,
    };
    match text {
        std::borrow::Cow::Borrowed(_) => None,
        std::borrow::Cow::Owned(text) => Some(Input::from_vec(input.name.clone(), text.into_bytes())),
    }
}

/// `input` with each invalid UTF-8 sequence replaced by U+FFFD, and the
/// offsets of those replacements in the new text; `None` if it is valid.
/// Lines and character columns are those of the original bytes.
pub fn repair(input: &Input) -> Option<Input> {
    let bytes = input.bytes();
    std::str::from_utf8(bytes).err()?;
    let mut text = Vec::with_capacity(bytes.len() + 16);
    let mut marks = Vec::new();
    let mut rest = bytes;
    while let Err(e) = std::str::from_utf8(rest) {
        let (good, bad) = rest.split_at(e.valid_up_to());
        text.extend_from_slice(good);
        marks.push(text.len());
        text.extend_from_slice("\u{FFFD}".as_bytes());
        // `None`: a sequence cut short by the end of the input.
        rest = &bad[e.error_len().unwrap_or(bad.len())..];
    }
    text.extend_from_slice(rest);
    let mut repaired = Input::from_vec(input.name.clone(), text);
    repaired.invalid_utf8 = Some(Arc::from(marks));
    Some(repaired)
}

/// The first repaired place in `start..end`, if any.
pub fn invalid_in(marks: Option<&[usize]>, start: usize, end: usize) -> Option<usize> {
    let marks = marks?;
    let i = marks.partition_point(|&m| m < start);
    marks.get(i).copied().filter(|&m| m < end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repair_marks_each_invalid_sequence() {
        let input = Input::from_vec("t", b"a\xffb\xc3\xa9\xe2\x82z\xfc".to_vec());
        let repaired = repair(&input).unwrap();
        assert_eq!(std::str::from_utf8(repaired.bytes()).unwrap(), "a\u{FFFD}b\u{e9}\u{FFFD}z\u{FFFD}");
        assert_eq!(repaired.invalid_utf8.as_deref(), Some(&[1, 7, 11][..]));
        assert!(repair(&Input::from_vec("t", "ok é".as_bytes().to_vec())).is_none());
        assert_eq!(invalid_in(repaired.invalid_utf8.as_deref(), 2, 8), Some(7));
        assert_eq!(invalid_in(repaired.invalid_utf8.as_deref(), 2, 7), None);
    }

    #[test]
    fn latin1_is_windows_1252() {
        let input = Input::from_vec("t", b"M\xfcller \x80".to_vec());
        let decoded = decode(&input, Encoding::parse("latin-1").unwrap()).unwrap();
        assert_eq!(std::str::from_utf8(decoded.bytes()).unwrap(), "Müller €");
        assert!(decode(&Input::from_vec("t", b"ascii".to_vec()), Encoding::parse("cp1252").unwrap()).is_none());
        assert_eq!(Encoding::parse("nope"), None);
        assert_eq!(Encoding::parse("UTF-8"), Some(Encoding::Utf8));
    }
}
