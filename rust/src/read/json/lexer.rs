//! The JSON lexer: whitespace, punctuation, strings, literals and numbers,
//! and skipping whole values. It knows nothing of CDRs: the record mapping
//! in the parent module walks the document with it.

use std::borrow::Cow;

/// A syntax error at byte `at` of the input.
pub struct SyntaxError {
    pub at: usize,
    pub reason: String,
}

pub type Parsed<T> = std::result::Result<T, SyntaxError>;

/// The input's bytes and the position in them.
pub struct Lexer<'a> {
    pub buf: &'a [u8],
    pub pos: usize,
}

impl<'a> Lexer<'a> {
    pub fn new(buf: &'a [u8], pos: usize) -> Self {
        Self { buf, pos }
    }

    pub fn error<T>(&self, reason: impl Into<String>) -> Parsed<T> {
        Err(SyntaxError { at: self.pos, reason: reason.into() })
    }

    #[inline]
    pub fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.buf.get(self.pos) {
            self.pos += 1;
        }
    }

    /// The next byte that is not whitespace, left in place.
    #[inline]
    pub fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.buf.get(self.pos).copied()
    }

    #[inline]
    pub fn eat(&mut self, byte: u8) -> Parsed<()> {
        if self.peek() == Some(byte) {
            self.pos += 1;
            Ok(())
        } else {
            self.error(format!("expected {:?}", byte as char))
        }
    }

    #[inline]
    pub fn literal(&mut self, word: &[u8]) -> Parsed<()> {
        self.ws();
        if self.buf[self.pos..].starts_with(word) {
            self.pos += word.len();
            Ok(())
        } else {
            self.error("invalid literal")
        }
    }

    /// After an item of an object or array: `,` (`false`: more follow) or
    /// the closing byte, consumed (`true`).
    #[inline]
    pub fn next_or_close(&mut self, close: u8) -> Parsed<bool> {
        match self.peek() {
            Some(b',') => {
                self.pos += 1;
                Ok(false)
            }
            Some(b) if b == close => {
                self.pos += 1;
                Ok(true)
            }
            _ => self.error(format!("expected ',' or '{}'", close as char)),
        }
    }

    /// Skips string bytes that are neither `"`, `\\` nor control characters,
    /// sixteen at a time (SSE2, which every x86-64 has), then eight: a raw
    /// control character must be found anyway, so a search for the quote
    /// alone would not save the second look.
    #[inline]
    fn skip_plain(&mut self) {
        #[cfg(target_arch = "x86_64")]
        while self.pos + 16 <= self.buf.len() {
            // SAFETY: the 16 bytes at `pos` are in bounds (checked above),
            // and SSE2 is part of the x86-64 baseline.
            let special = unsafe { special_bytes_16(self.buf.as_ptr().add(self.pos)) };
            if special != 0 {
                self.pos += special.trailing_zeros() as usize;
                return;
            }
            self.pos += 16;
        }
        while let Some(word) = self.buf.get(self.pos..self.pos + 8) {
            let special = special_bytes(u64::from_le_bytes(word.try_into().unwrap_or([0; 8])));
            if special != 0 {
                self.pos += special.trailing_zeros() as usize / 8;
                return;
            }
            self.pos += 8;
        }
    }

    /// A string at `pos`: the span of its inside, and whether it has
    /// escapes (which whoever decodes it validates).
    #[inline]
    pub fn string(&mut self) -> Parsed<(usize, usize, bool)> {
        self.eat(b'"')?;
        self.string_rest()
    }

    /// [`Self::string`] after its opening quote.
    #[inline(always)]
    pub fn string_rest(&mut self) -> Parsed<(usize, usize, bool)> {
        let start = self.pos;
        let mut escaped = false;
        self.skip_plain();
        while let Some(&b) = self.buf.get(self.pos) {
            match b {
                b'"' => {
                    self.pos += 1;
                    return Ok((start, self.pos - 1, escaped));
                }
                b'\\' => {
                    escaped = true;
                    self.pos += 2;
                }
                0..=0x1f => return self.error("control character in string"),
                _ => self.pos += 1,
            }
            self.skip_plain();
        }
        self.error("unterminated string")
    }

    /// An object's key and its `:`: the input's bytes, decoded only if it
    /// has escapes.
    #[inline]
    pub fn key(&mut self) -> Parsed<Cow<'a, [u8]>> {
        if self.peek() != Some(b'"') {
            return self.error("expected a key");
        }
        let buf: &'a [u8] = self.buf;
        let (start, end, escaped) = self.string()?;
        let key = if escaped {
            let mut decoded = Vec::new();
            unescape(buf, start, end, &mut decoded)?;
            Cow::Owned(decoded)
        } else {
            Cow::Borrowed(&buf[start..end])
        };
        self.eat(b':')?;
        Ok(key)
    }

    /// Skips any value (validating its syntax).
    pub fn skip_value(&mut self) -> Parsed<()> {
        // Iterative: nesting costs a byte of heap per level, not a stack
        // frame, so a hostile `[[[[…` cannot overflow the stack.
        let mut closers: Vec<u8> = Vec::new();
        loop {
            match self.peek() {
                Some(open @ (b'{' | b'[')) => {
                    self.pos += 1;
                    let close = if open == b'{' { b'}' } else { b']' };
                    if self.peek() == Some(close) {
                        self.pos += 1;
                    } else {
                        if open == b'{' {
                            self.key()?;
                        }
                        closers.push(close);
                        continue;
                    }
                }
                _ => self.skip_scalar()?,
            }
            // After a value: close what ends here, or go on to the next item.
            loop {
                let Some(&close) = closers.last() else { return Ok(()) };
                if !self.next_or_close(close)? {
                    if close == b'}' {
                        self.key()?;
                    }
                    break;
                }
                closers.pop();
            }
        }
    }

    /// A string, literal or number (validated).
    fn skip_scalar(&mut self) -> Parsed<()> {
        match self.peek() {
            Some(b'"') => {
                let (start, end, escaped) = self.string()?;
                if escaped {
                    unescape(self.buf, start, end, &mut Vec::new())?;
                }
                Ok(())
            }
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'n') => self.literal(b"null"),
            Some(b'-' | b'0'..=b'9') => {
                let start = self.pos;
                while let Some(b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9') = self.buf.get(self.pos) {
                    self.pos += 1;
                }
                let text = std::str::from_utf8(&self.buf[start..self.pos]).unwrap_or("");
                if text.parse::<f64>().is_err() || text.starts_with("-.") || text.ends_with('.') {
                    return Err(SyntaxError { at: start, reason: format!("invalid number {text:?}") });
                }
                Ok(())
            }
            Some(_) => self.error("expected a JSON value"),
            None => self.error("unexpected end of input"),
        }
    }
}
/// Bit `i` set if byte `i` of the 16 at `at` is `"`, `\\` or a control
/// character.
///
/// # Safety
/// `at` must be valid for reading 16 bytes.
#[cfg(target_arch = "x86_64")]
#[inline]
unsafe fn special_bytes_16(at: *const u8) -> u32 {
    use std::arch::x86_64::{
        _mm_cmpeq_epi8, _mm_loadu_si128, _mm_max_epu8, _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8,
    };
    // SAFETY: the caller's promise; unaligned loads are allowed.
    unsafe {
        let bytes = _mm_loadu_si128(at.cast());
        let quote = _mm_cmpeq_epi8(bytes, _mm_set1_epi8(b'"' as i8));
        let backslash = _mm_cmpeq_epi8(bytes, _mm_set1_epi8(b'\\' as i8));
        // Unsigned b <= 0x1f exactly when max(b, 0x1f) is 0x1f.
        let limit = _mm_set1_epi8(0x1f);
        let control = _mm_cmpeq_epi8(_mm_max_epu8(bytes, limit), limit);
        _mm_movemask_epi8(_mm_or_si128(_mm_or_si128(quote, backslash), control)) as u32
    }
}

/// High bit set in each byte of `w` that is `"`, `\\` or a control
/// character (exact for the lowest such byte, which is all that is used).
#[inline]
fn special_bytes(w: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let zero_in = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    let control = w.wrapping_sub(ONES * 0x20) & !w & HIGH;
    control | zero_in(w ^ (ONES * u64::from(b'"'))) | zero_in(w ^ (ONES * u64::from(b'\\')))
}

/// Decodes the inside of a JSON string with escapes into `out`.
pub fn unescape(buf: &[u8], start: usize, end: usize, out: &mut Vec<u8>) -> Parsed<()> {
    let mut i = start;
    let bad = |at: usize, what: &str| SyntaxError { at, reason: format!("invalid escape: {what}") };
    while i < end {
        let Some(k) = memchr::memchr(b'\\', &buf[i..end]) else {
            out.extend_from_slice(&buf[i..end]);
            break;
        };
        out.extend_from_slice(&buf[i..i + k]);
        i += k;
        let code = *buf.get(i + 1).ok_or_else(|| bad(i, "at end of string"))?;
        i += 2;
        let byte = match code {
            b'"' => b'"',
            b'\\' => b'\\',
            b'/' => b'/',
            b'b' => 0x08,
            b'f' => 0x0C,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'u' => {
                let hex = |at: usize| -> Parsed<u32> {
                    let digits = buf.get(at..at + 4).filter(|_| at + 4 <= end).ok_or_else(|| bad(at, "short \\u"))?;
                    u32::from_str_radix(std::str::from_utf8(digits).unwrap_or("x"), 16)
                        .map_err(|_| bad(at, "\\u needs 4 hex digits"))
                };
                let mut c = hex(i)?;
                i += 4;
                if (0xD800..0xDC00).contains(&c) && buf[i..end].starts_with(b"\\u") {
                    let low = hex(i + 2)?;
                    if (0xDC00..0xE000).contains(&low) {
                        c = 0x10000 + ((c - 0xD800) << 10) + (low - 0xDC00);
                        i += 6;
                    }
                }
                let ch = char::from_u32(c).unwrap_or('\u{FFFD}');
                out.extend_from_slice(ch.encode_utf8(&mut [0; 4]).as_bytes());
                continue;
            }
            other => return Err(bad(i - 2, &format!("\\{}", other as char))),
        };
        out.push(byte);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn special_bytes_finds_the_first_quote_backslash_or_control() {
        for (text, first) in [
            (&b"abcdefgh"[..], None),
            (b"abc\"efgh", Some(3)),
            (b"\\bcdefgh", Some(0)),
            (b"abcdefg\n", Some(7)),
            (b"\xc3\xa9\xc3\xa9abcd", None),
            (b"a\x1f\"defgh", Some(1)),
        ] {
            let w = u64::from_le_bytes(text.try_into().unwrap());
            let found = super::special_bytes(w);
            assert_eq!((found != 0).then(|| found.trailing_zeros() as usize / 8), first, "{text:?}");
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn sixteen_at_a_time_finds_what_eight_at_a_time_finds() {
        for special in [b'"', b'\\', 0, 0x1f, b'\n'] {
            for at in 0..=16 {
                let mut bytes = *b"plain \xc3\xa9 text, ok";
                if at < 16 {
                    bytes[at] = special;
                }
                // SAFETY: `bytes` holds more than 16 bytes.
                let found = unsafe { super::special_bytes_16(bytes.as_ptr()) };
                let first = (found != 0).then(|| found.trailing_zeros() as usize);
                assert_eq!(first, (at < 16).then_some(at), "{special} at {at}");
            }
        }
    }
}
