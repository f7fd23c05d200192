//! Pattern lists (docs/query-language.md): the CDR API's `caller`/`callee` (§2) and the web UI's
//! number patterns (§6), each item compiled to the cheapest test that
//! decides it.

use super::QueryError;

/// One compiled item. Matching is on the whole value; a null value is the
/// empty string.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Item {
    /// Byte-for-byte equality.
    Exact(String),
    /// `5@`: starts with.
    Prefix(String),
    /// `@5`: ends with.
    Suffix(String),
    /// `@5@`: contains.
    Contains(String),
    /// `@`: everything, the empty value included.
    Any,
    /// Any other wildcard item, matched against the whole value.
    Wildcard(Vec<Token>),
    /// `LO-HI` over the digits of the value, as unbounded integers; `lo` and
    /// `hi` are digit strings without leading zeros (`"0"` for none).
    Range { lo: String, hi: String },
}

/// One step of a wildcard item; every token but `Run` matches exactly one
/// character.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Token {
    Char(char),
    /// `_`: any one character.
    One,
    /// `@`: any run of characters, possibly empty.
    Run,
    /// The web UI's `X`: one digit `0-9`.
    Digit,
}

/// Whether `value` matches the whole token list: the usual greedy
/// wildcard walk that backtracks only to the last `Run` (linear for
/// single-`Run` items, O(n·m) at worst, never exponential).
pub fn wildcard_matches(tokens: &[Token], value: &str) -> bool {
    let one = |t: Token, c: char| match t {
        Token::Char(x) => x == c,
        Token::One => true,
        Token::Digit => c.is_ascii_digit(),
        Token::Run => false,
    };
    if value.is_ascii() {
        walk(tokens, value.as_bytes(), |t, b| one(t, char::from(b)))
    } else {
        walk(tokens, &value.chars().collect::<Vec<_>>(), one)
    }
}

fn walk<T: Copy>(tokens: &[Token], value: &[T], one: impl Fn(Token, T) -> bool) -> bool {
    let (mut t, mut v) = (0, 0);
    let mut last_run: Option<(usize, usize)> = None;
    while v < value.len() {
        match tokens.get(t) {
            Some(Token::Run) => {
                last_run = Some((t, v));
                t += 1;
            }
            Some(&token) if one(token, value[v]) => {
                t += 1;
                v += 1;
            }
            _ => match last_run {
                // Let the last run take one more character and retry.
                Some((run, from)) => {
                    last_run = Some((run, from + 1));
                    t = run + 1;
                    v = from + 1;
                }
                None => return false,
            },
        }
    }
    tokens[t..].iter().all(|&token| token == Token::Run)
}

/// The anchored regular expression of a token list (for Polars and SQL).
pub fn wildcard_regex(tokens: &[Token]) -> String {
    let mut re = String::from("(?s)^");
    let mut i = 0;
    while i < tokens.len() {
        match tokens[i] {
            Token::Char(c) => {
                if !c.is_ascii_alphanumeric() {
                    re.push('\\');
                }
                re.push(c);
            }
            Token::One => re.push('.'),
            Token::Run => re.push_str(".*"),
            Token::Digit => {
                let n = tokens[i..].iter().take_while(|&&t| t == Token::Digit).count();
                re.push_str(&format!("[0-9]{{{n}}}"));
                i += n - 1;
            }
        }
        i += 1;
    }
    re.push('$');
    re
}

/// Characters a CDR API pattern list may hold.
pub fn allowed(c: char) -> bool {
    c.is_ascii_alphanumeric() || "@_-,*#+.".contains(c)
}

/// Compiles a CDR API pattern list; `err(i, text, reason)` makes the error
/// for byte `i` of `list`.
pub fn cdrapi_list(list: &str, err: &dyn Fn(usize, &str, &str) -> QueryError) -> Result<Vec<Item>, QueryError> {
    if let Some((i, c)) = list.char_indices().find(|&(_, c)| !allowed(c)) {
        return Err(err(i, &c.to_string(), "disallowed character"));
    }
    items(list, err)?.into_iter().map(|(at, item)| cdrapi_item(item, at, err)).collect()
}

/// Splits a comma list, rejecting empty items; yields (byte offset, item).
pub fn items<'a>(
    list: &'a str,
    err: &dyn Fn(usize, &str, &str) -> QueryError,
) -> Result<Vec<(usize, &'a str)>, QueryError> {
    let mut out = Vec::new();
    let mut at = 0;
    for item in list.split(',') {
        if item.is_empty() {
            let reason = if at == 0 {
                "the list starts with ','"
            } else if at == list.len() {
                "the list ends with ','"
            } else {
                "empty item (',,')"
            };
            return Err(err(at.min(list.len().saturating_sub(1)), ",", reason));
        }
        out.push((at, item));
        at += item.len() + 1;
    }
    Ok(out)
}

fn cdrapi_item(item: &str, at: usize, err: &dyn Fn(usize, &str, &str) -> QueryError) -> Result<Item, QueryError> {
    if item.contains(['@', '_']) {
        return Ok(wildcard(item));
    }
    match item.matches('-').count() {
        0 => Ok(Item::Exact(item.to_string())),
        1 => {
            let (lo, hi) = item.split_once('-').unwrap_or((item, ""));
            Ok(Item::Range { lo: digits(lo), hi: digits(hi) })
        }
        _ => Err(err(at, item, "an item with two or more '-' and no wildcard")),
    }
}

/// The digits of `s` as an unbounded integer: no leading zeros, `0` if none.
pub fn digits(s: &str) -> String {
    let d: String = s.chars().filter(char::is_ascii_digit).collect();
    let d = d.trim_start_matches('0');
    if d.is_empty() { "0".into() } else { d.into() }
}

/// `@` any run (possibly empty), `_` exactly one character, the rest literal.
fn wildcard(item: &str) -> Item {
    let literal = |s: &str| !s.contains(['@', '_']) && !s.is_empty();
    let inner = item.trim_matches('@');
    if inner.is_empty() {
        return Item::Any;
    }
    let (starts, ends) = (item.starts_with('@'), item.ends_with('@'));
    if literal(inner) && !item.contains('_') {
        let single_run = |s: &str| !s.contains('@');
        let core = item.trim_start_matches('@').trim_end_matches('@');
        if single_run(core) {
            return match (starts, ends) {
                (false, true) => Item::Prefix(core.into()),
                (true, false) => Item::Suffix(core.into()),
                (true, true) => Item::Contains(core.into()),
                (false, false) => Item::Exact(core.into()),
            };
        }
    }
    let tokens = item
        .chars()
        .map(|c| match c {
            '@' => Token::Run,
            '_' => Token::One,
            c => Token::Char(c),
        })
        .collect();
    Item::Wildcard(tokens)
}

/// Compiles one web UI number pattern (§6): a literal prefix, optionally a
/// run of `X` (one digit each), optionally one final `.` (anything).
pub fn webui_item(item: &str, at: usize, err: &dyn Fn(usize, &str, &str) -> QueryError) -> Result<Item, QueryError> {
    if let Some((i, c)) = item.char_indices().find(|&(_, c)| !allowed(c)) {
        return Err(err(at + i, &c.to_string(), "disallowed character"));
    }
    let prefix_len = item.find(['X', 'x', '.']).unwrap_or(item.len());
    let (prefix, rest) = item.split_at(prefix_len);
    let xs = rest.chars().take_while(|c| matches!(c, 'X' | 'x')).count();
    let tail = &rest[xs..];
    if !(tail.is_empty() || tail == ".") {
        let bad = prefix_len + xs + usize::from(tail.starts_with('.'));
        return Err(err(at + bad, item, "'X' or '.' out of place (a prefix, then X…, then one final '.')"));
    }
    Ok(match (xs, tail == ".") {
        (0, true) if prefix.is_empty() => Item::Any, // `.`: anything, the empty value included
        (0, false) => Item::Exact(prefix.into()),
        (0, true) => Item::Prefix(prefix.into()),
        (n, any_tail) => {
            let mut tokens: Vec<Token> = prefix.chars().map(Token::Char).collect();
            tokens.extend(std::iter::repeat_n(Token::Digit, n));
            if any_tail {
                tokens.push(Token::Run);
            }
            Item::Wildcard(tokens)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(i: usize, text: &str, reason: &str) -> QueryError {
        QueryError { param: "caller".into(), text: text.into(), position: i, reason: reason.into() }
    }

    fn compile(list: &str) -> Result<Vec<Item>, QueryError> {
        cdrapi_list(list, &err)
    }

    fn regex(item: &Item) -> String {
        match item {
            Item::Wildcard(tokens) => wildcard_regex(tokens),
            other => panic!("not a wildcard: {other:?}"),
        }
    }

    #[test]
    fn wildcards_match_whole_values() {
        let m = |list: &str, value: &str| match &compile(list).unwrap()[0] {
            Item::Wildcard(tokens) => wildcard_matches(tokens, value),
            other => panic!("not a wildcard: {other:?}"),
        };
        assert!(m("_1@5", "615") && m("_1@5", "6125") && !m("_1@5", "6126") && !m("_1@5", "15"));
        assert!(m("@5@5", "5x5") && m("@5@5", "55") && !m("@5@5", "5"));
        assert!(m("a@b@c", "aXbYbZc") && !m("a@b@c", "acb"));
        let accented = [Token::One, Token::Char('é'), Token::Run];
        assert!(wildcard_matches(&accented, "xé!") && !m("__", "é"), "characters, not bytes");
        assert!(m("5@-_", "5a-b") && !m("5@-_", "5a-"));
        assert!(m("_@", "\n") && m("@_", "x\ny"), "'_' and '@' take line breaks too");
        let digits = &webui_item("3XX.", 0, &err).unwrap();
        let Item::Wildcard(tokens) = digits else { panic!() };
        assert!(
            wildcard_matches(tokens, "312") && wildcard_matches(tokens, "312x") && !wildcard_matches(tokens, "3a2")
        );
    }

    #[test]
    fn classifies_items() {
        use Item::*;
        let got = compile("5300,5@,@5,@53@,@,6300-6399,_4@,5-,a#*+.").unwrap();
        assert_eq!(
            got,
            vec![
                Exact("5300".into()),
                Prefix("5".into()),
                Suffix("5".into()),
                Contains("53".into()),
                Any,
                Range { lo: "6300".into(), hi: "6399".into() },
                Wildcard(vec![Token::One, Token::Char('4'), Token::Run]),
                Range { lo: "5".into(), hi: "0".into() },
                Exact("a#*+.".into()),
            ]
        );
        assert_eq!(regex(&compile("5@3").unwrap()[0]), "(?s)^5.*3$");
        assert_eq!(compile("0-0").unwrap(), vec![Range { lo: "0".into(), hi: "0".into() }]);
        assert_eq!(compile("a-0012b").unwrap(), vec![Range { lo: "0".into(), hi: "12".into() }]);
        assert_eq!(regex(&compile("1+_").unwrap()[0]), "(?s)^1\\+.$");
    }

    #[test]
    fn list_errors() {
        assert_eq!(compile(",5").unwrap_err().reason, "the list starts with ','");
        assert_eq!(compile("5,").unwrap_err().reason, "the list ends with ','");
        assert_eq!(compile("5,,6").unwrap_err().position, 2);
        assert_eq!(compile("5300-5301-").unwrap_err().reason, "an item with two or more '-' and no wildcard");
        assert_eq!(compile("53 00").unwrap_err().position, 2);
        assert!(compile("5-3-@").is_ok());
    }

    #[test]
    fn webui() {
        let w = |s: &str| webui_item(s, 0, &err);
        assert_eq!(regex(&w("3XXX").unwrap()), "(?s)^3[0-9]{3}$");
        assert_eq!(w("3.").unwrap(), Item::Prefix("3".into()));
        assert_eq!(regex(&w("3x.").unwrap()), "(?s)^3[0-9]{1}.*$");
        assert_eq!(w("300").unwrap(), Item::Exact("300".into()));
        assert!(w("3X1").is_err());
        assert!(w("3..").is_err());
        assert!(w(".3").is_err());
        assert_eq!(w(".").unwrap(), Item::Any);
    }
}
