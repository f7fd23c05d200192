//! The quote-aware record splitter for UCM CSV: finds the fields of one
//! record without allocating or copying.
//!
//! The UCM writes CSV that is almost, but not quite, RFC 4180:
//! - a field wholly inside quotes is RFC 4180 (`""` is a quote; commas and
//!   line breaks inside are data): `"PJSIP/6011/sip:6011@,30"`;
//! - a quoted token followed by more text is *not* a quoted field but the
//!   verbatim value, quotes included: `"pn01" <5300>` (a caller ID). Commas
//!   inside its quoted part still do not end the field;
//! - a quote in the middle of an unquoted field is an ordinary character;
//! - a record ends at LF or CRLF, or at the end of the input.

use memchr::{memchr, memchr2, memchr3};

/// How the bytes of a field's span become its value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldKind {
    /// The span is the value and the field's whole text (verbatim tokens
    /// like `"pn01" <5300>` included).
    Plain,
    /// The span is the inside of an RFC 4180 quoted field, no `""` in it.
    Quoted,
    /// The inside of a quoted field holding `""`, which must become `"`.
    Escaped,
}

/// One field of a record: a byte range of the input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FieldSpan {
    pub start: usize,
    pub end: usize,
    pub kind: FieldKind,
}

/// A record's extent in the input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordSpan {
    pub start: usize,
    /// End of the record's text, line terminator excluded.
    pub end: usize,
    /// Where the next record starts.
    pub next: usize,
}

/// A quote that never closes, or that closes only on a later line inside a
/// verbatim token (a stray quote, not a multi-line field).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnterminatedQuote {
    /// Offset of the opening quote.
    pub quote_at: usize,
}

/// Skips blank (empty or whitespace-only) lines from `pos`; returns the
/// start of the next line that holds something, or `buf.len()`.
pub fn skip_blank_lines(buf: &[u8], mut pos: usize) -> usize {
    'lines: while pos < buf.len() {
        let mut i = pos;
        while i < buf.len() {
            match buf[i] {
                b' ' | b'\t' | b'\r' => i += 1,
                b'\n' => {
                    pos = i + 1;
                    continue 'lines;
                }
                _ => return pos,
            }
        }
        return buf.len();
    }
    pos
}

/// End of a field ending at a line feed at `lf`: a CR before it belongs to
/// the line terminator.
#[inline]
fn strip_cr(buf: &[u8], start: usize, lf: usize) -> usize {
    if lf > start && buf[lf - 1] == b'\r' { lf - 1 } else { lf }
}

/// Splits the record starting at `start` into `fields` (cleared first).
pub fn split_record(buf: &[u8], start: usize, fields: &mut Vec<FieldSpan>) -> Result<RecordSpan, UnterminatedQuote> {
    fields.clear();
    let len = buf.len();
    let mut p = start;
    loop {
        // `p` is the start of a field.
        let stop; // position of the ',' / '\n' that ends the field, or len
        if p < len && buf[p] == b'"' {
            let (close, escaped) = closing_quote(buf, p)?;
            let after = close + 1;
            let ends_here = after == len
                || buf[after] == b','
                || buf[after] == b'\n'
                || (buf[after] == b'\r' && (after + 1 == len || buf[after + 1] == b'\n'));
            if ends_here {
                let kind = if escaped { FieldKind::Escaped } else { FieldKind::Quoted };
                fields.push(FieldSpan { start: p + 1, end: close, kind });
                stop = if after < len && buf[after] == b'\r' { after + 1 } else { after };
            } else {
                // `"pn01" <5300>`: the raw text is the value. Its quoted part
                // never spans lines; one that does is a stray quote that
                // paired with a quote of a later record.
                if memchr(b'\n', &buf[p..close]).is_some() {
                    return Err(UnterminatedQuote { quote_at: p });
                }
                stop = verbatim_end(buf, after)?;
                let end = if stop < len && buf[stop] == b'\n' { strip_cr(buf, p, stop) } else { stop };
                fields.push(FieldSpan { start: p, end, kind: FieldKind::Plain });
            }
        } else {
            stop = field_stop(buf, p);
            let end = if stop < len && buf[stop] == b'\n' { strip_cr(buf, p, stop) } else { stop };
            let end = if stop == len { strip_trailing_cr(buf, p, end) } else { end };
            fields.push(FieldSpan { start: p, end, kind: FieldKind::Plain });
        }
        if stop == len {
            let end = record_end(buf, start, len);
            return Ok(RecordSpan { start, end, next: len });
        }
        if buf[stop] == b'\n' {
            return Ok(RecordSpan { start, end: strip_cr(buf, start, stop), next: stop + 1 });
        }
        p = stop + 1; // past the ','
    }
}

/// The next `,` or `\n` from `p`, or the end. Fields are short (a dozen
/// bytes on average), so a plain loop over the first bytes beats setting
/// up a SIMD search; long fields fall back to `memchr2`.
#[inline]
fn field_stop(buf: &[u8], p: usize) -> usize {
    let short = &buf[p..buf.len().min(p + 24)];
    if let Some(k) = short.iter().position(|&b| b == b',' || b == b'\n') {
        return p + k;
    }
    let from = p + short.len();
    memchr2(b',', b'\n', &buf[from..]).map_or(buf.len(), |k| from + k)
}

/// A CR at the very end of the input is a line terminator too.
#[inline]
fn strip_trailing_cr(buf: &[u8], start: usize, end: usize) -> usize {
    if end > start && end == buf.len() && buf[end - 1] == b'\r' { end - 1 } else { end }
}

#[inline]
fn record_end(buf: &[u8], start: usize, len: usize) -> usize {
    strip_trailing_cr(buf, start, len)
}

/// Finds the quote closing the one at `open`; reports whether `""` occurs.
#[inline]
fn closing_quote(buf: &[u8], open: usize) -> Result<(usize, bool), UnterminatedQuote> {
    let mut i = open + 1;
    let mut escaped = false;
    loop {
        match memchr(b'"', &buf[i..]) {
            None => return Err(UnterminatedQuote { quote_at: open }),
            Some(k) => {
                let q = i + k;
                if q + 1 < buf.len() && buf[q + 1] == b'"' {
                    escaped = true;
                    i = q + 2;
                } else {
                    return Ok((q, escaped));
                }
            }
        }
    }
}

/// End of a verbatim field from `p`: the next ',' or '\n' outside quotes.
fn verbatim_end(buf: &[u8], mut p: usize) -> Result<usize, UnterminatedQuote> {
    loop {
        match memchr3(b',', b'\n', b'"', &buf[p..]) {
            None => return Ok(buf.len()),
            Some(k) if buf[p + k] == b'"' => {
                let open = p + k;
                let close = closing_quote(buf, open)?.0;
                if memchr(b'\n', &buf[open..close]).is_some() {
                    return Err(UnterminatedQuote { quote_at: open });
                }
                p = close + 1;
            }
            Some(k) => return Ok(p + k),
        }
    }
}

/// Appends the value of an [`FieldKind::Escaped`] span to `out`.
pub fn unescape_into(raw: &[u8], out: &mut Vec<u8>) {
    let mut rest = raw;
    while let Some(k) = memchr(b'"', rest) {
        // Inside an escaped span every quote is doubled.
        out.extend_from_slice(&rest[..=k]);
        rest = rest.get(k + 2..).unwrap_or(&[]);
    }
    out.extend_from_slice(rest);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(input: &str) -> (Vec<String>, usize) {
        let mut fields = Vec::new();
        let rec = split_record(input.as_bytes(), 0, &mut fields).unwrap();
        let values = fields
            .iter()
            .map(|f| {
                let raw = &input.as_bytes()[f.start..f.end];
                let mut out = Vec::new();
                match f.kind {
                    FieldKind::Plain | FieldKind::Quoted => out.extend_from_slice(raw),
                    FieldKind::Escaped => unescape_into(raw, &mut out),
                }
                String::from_utf8(out).unwrap()
            })
            .collect();
        (values, rec.next)
    }

    macro_rules! splits_to {
        ($name:ident, $input:expr, [$($field:expr),*], $next:expr) => {
            #[test]
            fn $name() {
                let (fields, next) = split($input);
                assert_eq!(fields, vec![$($field.to_string()),*]);
                assert_eq!(next, $next);
            }
        };
    }

    splits_to!(plain, "a,b,c\nx", ["a", "b", "c"], 6);
    splits_to!(crlf, "a,b\r\nx", ["a", "b"], 5);
    splits_to!(no_newline, "a,,b", ["a", "", "b"], 4);
    splits_to!(trailing_cr_at_eof, "a,b\r", ["a", "b"], 4);
    splits_to!(quoted, "\"x,y\",z\n", ["x,y", "z"], 8);
    splits_to!(escaped, "\"say \"\"hi\"\"\",z", ["say \"hi\"", "z"], 14);
    splits_to!(newline_inside, "\"a\nb\",c\nd", ["a\nb", "c"], 8);
    splits_to!(clid_token, "1,\"pn01\" <5300>,x", ["1", "\"pn01\" <5300>", "x"], 17);
    splits_to!(clid_with_comma, "\"Doe, J\" <1>,x", ["\"Doe, J\" <1>", "x"], 14);
    splits_to!(clid_at_line_end, "\"a\" <1>\r\nz", ["\"a\" <1>"], 9);
    splits_to!(quote_mid_field, "ab\"c,d", ["ab\"c", "d"], 6);
    splits_to!(quoted_then_crlf, "\"a\"\r\nb", ["a"], 5);
    splits_to!(empty_quoted, "\"\",x", ["", "x"], 4);
    splits_to!(trailing_comma_space, "a, \n", ["a", " "], 4);

    #[test]
    fn stray_quote_does_not_swallow_the_next_line() {
        let mut fields = Vec::new();
        let err = split_record(b"1,\"a,b\n2,\"x\" <1>,3\n", 0, &mut fields).unwrap_err();
        assert_eq!(err.quote_at, 2);
    }

    #[test]
    fn unterminated() {
        let mut fields = Vec::new();
        let err = split_record(b"a,\"bc,d\nx", 0, &mut fields).unwrap_err();
        assert_eq!(err.quote_at, 2);
    }

    #[test]
    fn blank_lines() {
        assert_eq!(skip_blank_lines(b"\n\r\n  \nx", 0), 6);
        assert_eq!(skip_blank_lines(b"\n \t", 0), 3);
        assert_eq!(skip_blank_lines(b"x\n", 0), 0);
    }
}
