//! Splitting a query string into parameters, decoding values as HTML forms
//! do (`%2B` is `+`, a bare `+` a space), and remembering where each decoded
//! byte stood in the original text so errors can point at it.

use super::QueryError;

/// One `name=value` piece.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Param {
    /// The name, lower-cased (names match without regard to letter case).
    pub key: String,
    /// The name as written.
    pub name: String,
    /// The decoded value.
    pub value: String,
    /// For each byte of `value`, its character offset in the query string.
    pub offsets: Vec<usize>,
    /// Character offset of the name in the query string.
    pub position: usize,
}

impl Param {
    /// Character offset of the value's byte `i` (or of the value's end).
    pub fn offset(&self, i: usize) -> usize {
        self.offsets.get(i).copied().unwrap_or_else(|| self.offsets.last().map_or(self.position, |o| o + 1))
    }

    pub fn error(&self, at: usize, text: impl Into<String>, reason: impl Into<String>) -> QueryError {
        QueryError { param: self.name.clone(), text: text.into(), position: self.offset(at), reason: reason.into() }
    }
}

/// Splits `query` (a whole URL or the part after `?`) into parameters.
pub fn split(query: &str) -> Result<Vec<Param>, QueryError> {
    // Character offsets of the text after `?` in the whole input.
    let (base, text) = match query.find('?') {
        Some(q) => (query[..=q].chars().count(), &query[q + 1..]),
        None => (0, query),
    };
    if text.is_empty() {
        return Ok(Vec::new());
    }
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let char_at = |byte: usize| base + chars.partition_point(|&(b, _)| b < byte);
    let error = |byte: usize, text: &str, reason: &str| QueryError {
        param: String::new(),
        text: text.to_string(),
        position: char_at(byte),
        reason: reason.to_string(),
    };
    if text.ends_with('&') {
        return Err(error(text.len() - 1, "&", "the query string ends with '&'"));
    }
    let mut params = Vec::new();
    let mut start = 0;
    for piece in text.split('&') {
        let Some(eq) = piece.find('=') else {
            return Err(error(start, piece, "expected name=value"));
        };
        let (name, _) = decode(&piece[..eq], start).map_err(|at| error(at, piece, "bad percent-encoding"))?;
        let (value, value_bytes) =
            decode(&piece[eq + 1..], start + eq + 1).map_err(|at| error(at, piece, "bad percent-encoding"))?;
        params.push(Param {
            key: name.to_ascii_lowercase(),
            name,
            value,
            offsets: value_bytes.into_iter().map(char_at).collect(),
            position: char_at(start),
        });
        start += piece.len() + 1;
    }
    Ok(params)
}

/// Percent-decodes `raw` (which starts at byte `at` of the query); returns
/// the text and, per decoded byte, the query byte it came from. On failure,
/// the byte offset of the bad sequence.
fn decode(raw: &str, at: usize) -> Result<(String, Vec<usize>), usize> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut from = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
                let byte = hex.and_then(|h| u8::from_str_radix(h, 16).ok()).ok_or(at + i)?;
                out.push(byte);
                from.push(at + i);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                from.push(at + i);
                i += 1;
            }
            b => {
                out.push(b);
                from.push(at + i);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map(|s| (s, from)).map_err(|e| at + e.utf8_error().valid_up_to())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_and_decodes() {
        let p = split("https://pbx:8443/cdrapi?Caller=5%2B1+2&format=json").unwrap();
        assert_eq!(p[0].key, "caller");
        assert_eq!(p[0].value, "5+1 2");
        assert_eq!(p[0].position, 24);
        assert_eq!(p[0].offset(2), 35); // the 1 after %2B
        assert_eq!(p[1].value, "json");
    }

    #[test]
    fn errors() {
        assert_eq!(split("caller=1&").unwrap_err().position, 8);
        assert_eq!(split("caller=1&offset").unwrap_err().position, 9);
        assert_eq!(split("caller=%G1").unwrap_err().position, 7);
        assert!(split("").unwrap().is_empty());
    }
}
