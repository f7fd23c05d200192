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

use memchr::{memchr, memchr3};

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
    Splitter::default().split(buf, start, fields)
}

/// Splits the records of one buffer in order, remembering where the `,`
/// and `\n` of the current 64 bytes lie: a record's fields are then found
/// a bit at a time (fields average a dozen bytes, so classifying each byte
/// once, 16 at a time, beats a search from every field start).
#[derive(Default)]
pub struct Splitter {
    /// Offset of the classified block; `mask` bit `k` is set where
    /// `buf[block + k]` is a `,` or `\n` at or after `next`.
    block: usize,
    mask: u64,
    /// Just past the last stop found (the block's start after classifying).
    next: usize,
    /// Bytes classified in the block (64, fewer at the end of the input).
    width: usize,
}

impl Splitter {
    /// Splits the record starting at `start` into `fields` (cleared
    /// first). Records may be split in any order; in increasing order
    /// each byte is classified once.
    pub fn split(
        &mut self,
        buf: &[u8],
        start: usize,
        fields: &mut Vec<FieldSpan>,
    ) -> Result<RecordSpan, UnterminatedQuote> {
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
                    // `"pn01" <5300>`: the raw text is the value. Its quoted
                    // part never spans lines; one that does is a stray quote
                    // that paired with a quote of a later record.
                    if memchr(b'\n', &buf[p..close]).is_some() {
                        return Err(UnterminatedQuote { quote_at: p });
                    }
                    stop = verbatim_end(buf, after)?;
                    let end = if stop < len && buf[stop] == b'\n' { strip_cr(buf, p, stop) } else { stop };
                    fields.push(FieldSpan { start: p, end, kind: FieldKind::Plain });
                }
            } else {
                stop = self.next_stop(buf, p);
                if stop < len && buf[stop] == b',' {
                    // Most fields: plain, ended by a comma.
                    fields.push(FieldSpan { start: p, end: stop, kind: FieldKind::Plain });
                    p = stop + 1;
                    continue;
                }
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

    /// The first `,` or `\n` at or after `p`, or `buf.len()`.
    #[inline]
    fn next_stop(&mut self, buf: &[u8], p: usize) -> usize {
        let block_end = self.block + self.width;
        // From just past the last stop (the common case: a field follows
        // a field) the mask is already the rest: a field costs one bit
        // clear, not a shift that waits on the last stop.
        let mut rest = if p == self.next && p < block_end {
            self.mask
        } else {
            if p < self.next || p >= block_end {
                self.classify(buf, p);
            }
            self.mask & (u64::MAX << (p - self.block))
        };
        loop {
            if rest != 0 {
                let stop = self.block + rest.trailing_zeros() as usize;
                self.mask = rest & (rest - 1);
                self.next = stop + 1;
                return stop;
            }
            if self.block + self.width >= buf.len() {
                return buf.len();
            }
            // The next block lies wholly past `p`.
            self.classify(buf, self.block + self.width);
            rest = self.mask;
        }
    }

    /// Classifies the (up to) 64 bytes from `at`.
    #[inline]
    fn classify(&mut self, buf: &[u8], at: usize) {
        self.block = at;
        self.next = at;
        let bytes = &buf[at.min(buf.len())..];
        match bytes.first_chunk::<64>() {
            Some(block) => {
                self.width = 64;
                self.mask = stops_mask(block);
            }
            None => {
                self.width = bytes.len().max(1);
                self.mask = bytes.iter().enumerate().fold(0, |m, (k, &b)| m | (u64::from(is_stop(b)) << k));
            }
        }
    }
}

#[inline(always)]
fn is_stop(b: u8) -> bool {
    b == b',' || b == b'\n'
}

/// Bit `k` set where `block[k]` is `,` or `\n` (SSE2, x86-64's baseline).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn stops_mask(block: &[u8; 64]) -> u64 {
    use std::arch::x86_64::{__m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8};
    // SAFETY: SSE2 is part of x86-64; the loads read 4 × 16 bytes of
    // `block`, unaligned loads being allowed.
    unsafe {
        let (comma, newline) = (_mm_set1_epi8(b',' as i8), _mm_set1_epi8(b'\n' as i8));
        let mut mask = 0u64;
        for k in 0..4 {
            let v = _mm_loadu_si128(block.as_ptr().add(16 * k).cast::<__m128i>());
            let hits = _mm_or_si128(_mm_cmpeq_epi8(v, comma), _mm_cmpeq_epi8(v, newline));
            mask |= u64::from(_mm_movemask_epi8(hits) as u16) << (16 * k);
        }
        mask
    }
}

/// Bit `k` set where `block[k]` is `,` or `\n`, on other targets.
#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
fn stops_mask(block: &[u8; 64]) -> u64 {
    stops_mask_swar(block)
}

/// [`stops_mask`] eight bytes at a time (SWAR: a byte is zero after XOR
/// with the target); the x86-64 one is tested against it.
#[cfg(any(test, not(target_arch = "x86_64")))]
#[inline(always)]
fn stops_mask_swar(block: &[u8; 64]) -> u64 {
    const LOW: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // Exact zero-byte test: the high bit of each byte set iff it was zero.
    let zeros = |x: u64| !(((x & !HIGH) + !HIGH) | x | !HIGH);
    let mut mask = 0u64;
    for (k, word) in block.chunks_exact(8).enumerate() {
        let w = u64::from_le_bytes(word.try_into().unwrap_or_default());
        let hits = zeros(w ^ (LOW * u64::from(b','))) | zeros(w ^ (LOW * u64::from(b'\n')));
        // Gather the eight high bits into one byte.
        let bits = ((hits >> 7) & LOW).wrapping_mul(0x0102_0408_1020_4080) >> 56;
        mask |= bits << (8 * k);
    }
    mask
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
    fn classifiers_agree_with_bytes() {
        // Every byte value at every position, stops and not.
        let bytes: Vec<u8> = (0..64 * 8).map(|i: usize| (i.wrapping_mul(37) % 256) as u8).collect();
        for block in bytes.windows(64).step_by(7).chain([
            &b",\n,\n,\n,\n,\n,\n,\n,\n,\n,\n,\n,\n,\n,\n,\n,\n,\n,\n,\n,\n,\n,\n,\n,\n,\n,\n,\n,\n,\n,\n,\n,\n"[..],
        ]) {
            let block: &[u8; 64] = block.try_into().unwrap();
            let expected = block.iter().enumerate().fold(0u64, |m, (k, &b)| m | (u64::from(is_stop(b)) << k));
            assert_eq!(stops_mask(block), expected);
            assert_eq!(stops_mask_swar(block), expected);
        }
    }

    #[test]
    fn splitter_agrees_across_blocks() {
        // Fields of every length up to 150 bytes, so stops fall on every
        // position of a block and fields span blocks.
        let mut text = Vec::new();
        let mut expected = Vec::new();
        for n in 0..150 {
            let value = "x".repeat(n);
            text.extend_from_slice(format!("{value},\"{value}\",{n}\r\n").as_bytes());
            expected.push(vec![value.clone(), value, n.to_string()]);
        }
        let mut splitter = Splitter::default();
        let mut fields = Vec::new();
        let mut pos = 0;
        for want in expected {
            let record = splitter.split(&text, pos, &mut fields).unwrap();
            let got: Vec<String> =
                fields.iter().map(|f| String::from_utf8(text[f.start..f.end].to_vec()).unwrap()).collect();
            assert_eq!(got, want);
            pos = record.next;
        }
        assert_eq!(pos, text.len());
        // Out of order: the first record again, then a later one.
        splitter.split(&text, 0, &mut fields).unwrap();
        assert_eq!(fields.iter().map(|f| f.end - f.start).collect::<Vec<_>>(), [0, 0, 1]);
        let third = text.iter().position(|&b| b == b'\n').unwrap() + 1;
        splitter.split(&text, third, &mut fields).unwrap();
        assert_eq!(fields.iter().map(|f| f.end - f.start).collect::<Vec<_>>(), [1, 1, 1]);
    }

    #[test]
    fn blank_lines() {
        assert_eq!(skip_blank_lines(b"\n\r\n  \nx", 0), 6);
        assert_eq!(skip_blank_lines(b"\n \t", 0), 3);
        assert_eq!(skip_blank_lines(b"x\n", 0), 0);
    }
}
