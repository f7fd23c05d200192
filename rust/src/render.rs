//! Records back into the UCM's csv / json / xml (docs/query-language.md §5).
//!
//! Input is text already: the Python layer selects the columns and formats
//! times and numbers with Polars; this module groups legs into calls and
//! writes the bytes, with the escaping each format needs.

use std::collections::HashMap;
use std::fmt::Write as _;

use arrow_array::cast::AsArray;
use arrow_array::{Array, ArrayRef, LargeStringArray, RecordBatch, StringArray, StringViewArray};
use arrow_schema::DataType;

/// Output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Csv,
    Json,
    Xml,
}

/// Whose layout to write: §5's, or the bytes one firmware is known to write
/// (the vendor samples).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// query-language.md §5: a CSV header line, JSON and XML grouped in calls.
    Spec,
    /// Firmware 1.0.2.5 (UCM6100/6510): §5's CSV; JSON as the flat
    /// `{"cdr": [...]}` of one record per line; XML as §5 (no sample of
    /// that firmware's XML is known).
    Firmware1025,
    /// Firmware 1.0.11: CSV without a header line, an empty last field
    /// written as one space (the guide's trailing `, `); JSON broken into
    /// lines as the guide's transfer example; XML as §5.
    Firmware1011,
}

/// One text column of one batch, downcast once (not per value).
enum TextColumn<'a> {
    View(&'a StringViewArray),
    Utf8(&'a StringArray),
    LargeUtf8(&'a LargeStringArray),
    /// Not text: written empty.
    Other,
}

impl<'a> TextColumn<'a> {
    fn of(array: &'a ArrayRef) -> Self {
        match array.data_type() {
            DataType::Utf8View => Self::View(array.as_string_view()),
            DataType::Utf8 => Self::Utf8(array.as_string::<i32>()),
            DataType::LargeUtf8 => Self::LargeUtf8(array.as_string::<i64>()),
            _ => Self::Other,
        }
    }

    fn value(&self, row: usize) -> &'a str {
        match self {
            Self::View(a) if a.is_valid(row) => a.value(row),
            Self::Utf8(a) if a.is_valid(row) => a.value(row),
            Self::LargeUtf8(a) if a.is_valid(row) => a.value(row),
            _ => "",
        }
    }
}

/// Rows of text columns, across batches: `value(row, column)`.
pub struct Rows<'a> {
    /// Each batch's columns.
    columns: Vec<Vec<TextColumn<'a>>>,
    /// (batch, row) of each row, in order.
    index: Vec<(usize, usize)>,
}

impl<'a> Rows<'a> {
    pub fn new(batches: &'a [RecordBatch]) -> Self {
        let columns = batches.iter().map(|batch| batch.columns().iter().map(TextColumn::of).collect()).collect();
        let index =
            batches.iter().enumerate().flat_map(|(b, batch)| (0..batch.num_rows()).map(move |r| (b, r))).collect();
        Self { columns, index }
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// The text of `column` in `row`; null and non-text are empty.
    pub fn value(&self, row: usize, column: usize) -> &'a str {
        let (b, r) = self.index[row];
        self.columns[b][column].value(r)
    }
}

/// Renders `legs` (in order) with the column `names` in `layout`; `mains`
/// holds stored main records, looked up by session.
pub fn render(format: Format, layout: Layout, names: &[String], legs: &Rows<'_>, mains: &Rows<'_>) -> String {
    let mut out = String::with_capacity(legs.len() * 64 * names.len().max(1));
    match format {
        Format::Csv => {
            if layout != Layout::Firmware1011 {
                out.push_str(&names.join(","));
                out.push('\n');
            }
            // What a reader takes back unquoted: a caller ID token, and
            // firmware 1.0.2.5's `lastdata` (the 22-column layout), commas
            // and all (readers rejoin it: the lastdata rule).
            let clid = names.iter().position(|n| n == "clid");
            let lastdata = names.iter().position(|n| n == "lastdata").filter(|_| names.len() == 22);
            for row in 0..legs.len() {
                for c in 0..names.len() {
                    if c > 0 {
                        out.push(',');
                    }
                    let value = legs.value(row, c);
                    let as_is = Some(c) == clid && caller_id_token(value)
                        || Some(c) == lastdata && !value.contains(['"', '\r', '\n']);
                    csv_field(&mut out, value, as_is);
                }
                // The guide's 1.0.11 row ends `, `: its empty last field is a
                // space (which readers take back as empty).
                if layout == Layout::Firmware1011 && !names.is_empty() && legs.value(row, names.len() - 1).is_empty() {
                    out.push(' ');
                }
                out.push('\n');
            }
        }
        Format::Json if layout == Layout::Firmware1025 => {
            out.push_str("{\n \"cdr\":\n [\n");
            let keys = json_keys(names, &[]);
            for row in 0..legs.len() {
                out.push_str(if row > 0 { ",\n { " } else { " { " });
                json_fields(&mut out, &keys, |c| legs.value(row, c));
                out.push_str(" }");
            }
            out.push_str(if legs.is_empty() { " ]\n}\n" } else { "\n ]\n}\n" });
        }
        Format::Json | Format::Xml => {
            let calls = calls(names, legs, mains);
            if calls.is_empty() {
                return match format {
                    Format::Json => "{\"cdr_root\": []}".into(),
                    _ => "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<cdr_root/>\n".into(),
                };
            }
            if format == Format::Json {
                let style = if layout == Layout::Firmware1011 { &JsonStyle::FIRMWARE_1011 } else { &JsonStyle::SPEC };
                out.push_str(style.open);
                let keys = json_keys(names, style.break_before);
                for (i, call) in calls.iter().enumerate() {
                    if i > 0 {
                        out.push_str(",\n");
                    }
                    out.push_str(style.call_open);
                    json_string(&mut out, call.session);
                    for (key, record) in call.records() {
                        out.push_str(style.between_records);
                        json_string(&mut out, &key);
                        out.push_str(style.record_open);
                        json_fields(&mut out, &keys, |c| record.value(c));
                        out.push_str(style.record_close);
                    }
                    out.push_str(style.call_close);
                }
                out.push_str(style.close);
            } else {
                out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<cdr_root>\n");
                for call in &calls {
                    out.push_str("<cdr session=\"");
                    xml_text(&mut out, call.session, true);
                    out.push_str("\">");
                    for (key, record) in call.records() {
                        let _ = write!(out, "<{key}>");
                        for (c, name) in names.iter().enumerate() {
                            let _ = write!(out, "<{name}>");
                            xml_text(&mut out, record.value(c), false);
                            let _ = write!(out, "</{name}>");
                        }
                        let _ = write!(out, "</{key}>");
                    }
                    out.push_str("</cdr>\n");
                }
                out.push_str("</cdr_root>\n");
            }
        }
    }
    out
}

/// Where a JSON document breaks its lines.
struct JsonStyle {
    open: &'static str,
    call_open: &'static str,
    between_records: &'static str,
    record_open: &'static str,
    /// Fields that start a new line within a record.
    break_before: &'static [&'static str],
    record_close: &'static str,
    call_close: &'static str,
    close: &'static str,
}

impl JsonStyle {
    /// §5: one call per line.
    const SPEC: Self = Self {
        open: "{\"cdr_root\": [\n",
        call_open: "{\"cdr\": ",
        between_records: ", ",
        record_open: ": {",
        break_before: &[],
        record_close: "}",
        call_close: "}",
        close: "\n]}\n",
    };
    /// Firmware 1.0.11 (the guide's transfer example): braces on lines of
    /// their own, a record's fields on four lines.
    const FIRMWARE_1011: Self = Self {
        open: "{\n\"cdr_root\": [\n",
        call_open: "{\n\"cdr\": ",
        between_records: ",\n",
        record_open: ": {\n",
        break_before: &["start", "channel_ext", "session"],
        record_close: "\n}",
        call_close: "\n}",
        close: "\n]\n}\n",
    };
}

/// One record to write: a row of legs or mains, or a computed summary.
enum Record<'a> {
    Row(&'a Rows<'a>, usize),
    Summary(Vec<String>),
}

impl Record<'_> {
    fn value(&self, column: usize) -> &str {
        match self {
            Record::Row(rows, row) => rows.value(*row, column),
            Record::Summary(values) => &values[column],
        }
    }
}

/// A call: its session, its main record and its legs.
struct Call<'a> {
    session: &'a str,
    main: Option<Record<'a>>,
    legs: Vec<usize>,
    rows: &'a Rows<'a>,
}

impl<'a> Call<'a> {
    /// `main_cdr` then `sub_cdr_N` — or the one leg as `main_cdr`.
    fn records(&self) -> Vec<(String, Record<'a>)> {
        match &self.main {
            None => vec![("main_cdr".into(), Record::Row(self.rows, self.legs[0]))],
            Some(main) => {
                let main = match main {
                    Record::Row(rows, row) => Record::Row(rows, *row),
                    Record::Summary(values) => Record::Summary(values.clone()),
                };
                let mut out = vec![("main_cdr".to_string(), main)];
                out.extend(
                    self.legs
                        .iter()
                        .enumerate()
                        .map(|(n, &row)| (format!("sub_cdr_{}", n + 1), Record::Row(self.rows, row))),
                );
                out
            }
        }
    }
}

/// Legs grouped by session in order of first appearance; a leg without a
/// session is a call of its own. A call of several legs (or with a stored
/// main record) gets its main record: the stored one, else §5's summary.
fn calls<'a>(names: &[String], legs: &'a Rows<'a>, mains: &'a Rows<'a>) -> Vec<Call<'a>> {
    let session_column = names.iter().position(|n| n == "session");
    let session_of = |rows: &'a Rows<'a>, row: usize| session_column.map_or("", |c| rows.value(row, c));
    let mut stored: HashMap<&str, usize> = HashMap::new();
    for row in 0..mains.len() {
        stored.entry(session_of(mains, row)).or_insert(row);
    }
    let mut calls: Vec<Call<'a>> = Vec::new();
    let mut by_session: HashMap<&str, usize> = HashMap::new();
    for row in 0..legs.len() {
        let session = session_of(legs, row);
        match by_session.get(session) {
            Some(&i) if !session.is_empty() => calls[i].legs.push(row),
            _ => {
                if !session.is_empty() {
                    by_session.insert(session, calls.len());
                }
                calls.push(Call { session, main: None, legs: vec![row], rows: legs });
            }
        }
    }
    for call in &mut calls {
        if let Some(&row) = stored.get(call.session).filter(|_| !call.session.is_empty()) {
            call.main = Some(Record::Row(mains, row));
        } else if call.legs.len() > 1 {
            call.main = Some(Record::Summary(summary(names, legs, &call.legs)));
        }
    }
    calls
}

/// §5: src, dst, start, session and action_type of the first leg, the sums
/// of duration and billsec, the rest empty.
fn summary(names: &[String], legs: &Rows<'_>, rows: &[usize]) -> Vec<String> {
    names
        .iter()
        .enumerate()
        .map(|(c, name)| match name.as_str() {
            "src" | "dst" | "start" | "session" | "action_type" => legs.value(rows[0], c).to_string(),
            "duration" | "billsec" => {
                rows.iter().filter_map(|&r| legs.value(r, c).parse::<i64>().ok()).sum::<i64>().to_string()
            }
            _ => String::new(),
        })
        .collect()
}

/// Whether `value` is a caller ID token as the UCM writes it unquoted,
/// `"Name" <ext>`, in the one shape readers take back verbatim: a quoted
/// part without `"` or a line break, then text without `,`, `"` or a line
/// break. Anything else (`"O"Brien" <1>`, `"A" <1>, x`, `"x"`) is quoted.
fn caller_id_token(value: &str) -> bool {
    let Some(rest) = value.strip_prefix('"') else { return false };
    let Some((name, after)) = rest.split_once('"') else { return false };
    !name.contains(['\r', '\n']) && !after.is_empty() && !after.contains([',', '"', '\r', '\n'])
}

/// RFC 4180 quoting when needed, unless the field is written `as_is`, as
/// the UCM writes it (a caller ID token `"Name" <ext>`; firmware 1.0.2.5's
/// `lastdata`, commas and all).
fn csv_field(out: &mut String, value: &str, as_is: bool) {
    if !as_is && value.bytes().fold(false, |any, b| any | matches!(b, b',' | b'"' | b'\r' | b'\n')) {
        out.push('"');
        escaped(out, value, |b| (b == b'"').then_some("\"\""));
        out.push('"');
    } else {
        out.push_str(value);
    }
}

/// `value` with each byte `escape` names replaced by its escape; runs
/// between them copied whole (pages are mostly plain digits and names).
/// Only ASCII bytes are escaped, so every cut lies on a character boundary.
fn escaped(out: &mut String, value: &str, escape: impl Fn(u8) -> Option<&'static str>) {
    // Most values need no escape: one pass without branches tells.
    if !value.bytes().fold(false, |any, b| any | escape(b).is_some()) {
        out.push_str(value);
        return;
    }
    let mut run = 0;
    for (i, b) in value.bytes().enumerate() {
        if let Some(replacement) = escape(b) {
            out.push_str(&value[run..i]);
            out.push_str(replacement);
            run = i + 1;
        }
    }
    out.push_str(&value[run..]);
}

/// Each column's `"name": `, after the separator that precedes it (`, `,
/// or a line break before the names in `break_before`): written once per
/// page, not escaped again for every record.
fn json_keys(names: &[String], break_before: &[&str]) -> Vec<String> {
    names
        .iter()
        .enumerate()
        .map(|(c, name)| {
            let mut key = match c {
                0 => String::new(),
                _ if break_before.contains(&name.as_str()) => ",\n".to_string(),
                _ => ", ".to_string(),
            };
            json_string(&mut key, name);
            key.push_str(": ");
            key
        })
        .collect()
}

/// A record's fields, each after its key (`json_keys`).
fn json_fields<'a>(out: &mut String, keys: &[String], value: impl Fn(usize) -> &'a str) {
    for (c, key) in keys.iter().enumerate() {
        out.push_str(key);
        json_string(out, value(c));
    }
}

/// A JSON string as Python's `json.dumps(ensure_ascii=False)` writes it.
fn json_string(out: &mut String, value: &str) {
    /// `\u00XX` of each control character without a short escape.
    const CONTROL: [&str; 32] = [
        "\\u0000", "\\u0001", "\\u0002", "\\u0003", "\\u0004", "\\u0005", "\\u0006", "\\u0007", "\\b", "\\t", "\\n",
        "\\u000b", "\\f", "\\r", "\\u000e", "\\u000f", "\\u0010", "\\u0011", "\\u0012", "\\u0013", "\\u0014",
        "\\u0015", "\\u0016", "\\u0017", "\\u0018", "\\u0019", "\\u001a", "\\u001b", "\\u001c", "\\u001d", "\\u001e",
        "\\u001f",
    ];
    out.push('"');
    escaped(out, value, |b| match b {
        b'"' => Some("\\\""),
        b'\\' => Some("\\\\"),
        0..0x20 => Some(CONTROL[b as usize]),
        _ => None,
    });
    out.push('"');
}

/// XML text (and attribute values, where `"` is escaped too).
fn xml_text(out: &mut String, value: &str, attribute: bool) {
    escaped(out, value, |b| match b {
        b'&' => Some("&amp;"),
        b'<' => Some("&lt;"),
        b'>' => Some("&gt;"),
        b'"' if attribute => Some("&quot;"),
        _ => None,
    });
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::StringArray;
    use arrow_schema::{Field, Schema};

    use super::*;

    fn batch(names: &[&str], rows: &[&[Option<&str>]]) -> RecordBatch {
        let schema =
            Arc::new(Schema::new(names.iter().map(|n| Field::new(*n, DataType::Utf8, true)).collect::<Vec<_>>()));
        let columns = (0..names.len())
            .map(|c| Arc::new(rows.iter().map(|r| r[c]).collect::<StringArray>()) as arrow_array::ArrayRef)
            .collect();
        RecordBatch::try_new(schema, columns).unwrap()
    }

    #[test]
    fn csv_quotes_but_keeps_caller_id_tokens() {
        let names: Vec<String> = ["clid", "lastdata"].map(String::from).to_vec();
        let legs = [batch(&["clid", "lastdata"], &[&[Some("\"pn01\" <5300>"), Some("SIP/5301,60,")]])];
        let out = render(Format::Csv, Layout::Spec, &names, &Rows::new(&legs), &Rows::new(&[]));
        assert_eq!(out, "clid,lastdata\n\"pn01\" <5300>,\"SIP/5301,60,\"\n");
        // The 22-column layout of firmware 1.0.2.5 writes `lastdata` as it is.
        let old: Vec<String> = (0..22).map(|i| if i == 9 { "lastdata".into() } else { format!("c{i}") }).collect();
        let mut row = vec![Some(""); 22];
        row[9] = Some("SIP/5301,60,");
        let names: Vec<&str> = old.iter().map(String::as_str).collect();
        let legs = [batch(&names, &[&row])];
        let out = render(Format::Csv, Layout::Spec, &old, &Rows::new(&legs), &Rows::new(&[]));
        assert!(out.ends_with("\n,,,,,,,,,SIP/5301,60,,,,,,,,,,,,,\n"), "{out}");
    }

    #[test]
    fn only_a_caller_id_token_readers_take_back_is_written_unquoted() {
        let names: Vec<String> = vec!["clid".into()];
        let out = |clid: &str| {
            let legs = [batch(&["clid"], &[&[Some(clid)]])];
            render(Format::Csv, Layout::Spec, &names, &Rows::new(&legs), &Rows::new(&[]))
        };
        assert_eq!(out("\"pn01\" <5300>"), "clid\n\"pn01\" <5300>\n");
        assert_eq!(out("\"Doe, J\" <5300>"), "clid\n\"Doe, J\" <5300>\n");
        assert_eq!(out("\"O\"Brien\" <1>"), "clid\n\"\"\"O\"\"Brien\"\" <1>\"\n");
        assert_eq!(out("\"A\" <1>, x"), "clid\n\"\"\"A\"\" <1>, x\"\n");
        assert_eq!(out("\"x\""), "clid\n\"\"\"x\"\"\"\n");
        assert_eq!(out("\""), "clid\n\"\"\"\"\n");
    }

    #[test]
    fn firmware_layouts() {
        let names: Vec<String> = ["src", "dst_trunk_name"].map(String::from).to_vec();
        let legs = [batch(&["src", "dst_trunk_name"], &[&[Some("1"), None], &[Some("2"), Some("t")]])];
        let (legs, none) = (Rows::new(&legs), Rows::new(&[]));
        assert_eq!(render(Format::Csv, Layout::Firmware1011, &names, &legs, &none), "1, \n2,t\n");
        assert_eq!(render(Format::Csv, Layout::Firmware1011, &names, &none, &none), "");
        assert_eq!(
            render(Format::Json, Layout::Firmware1025, &names, &legs, &none),
            "{\n \"cdr\":\n [\n { \"src\": \"1\", \"dst_trunk_name\": \"\" },\n \
             { \"src\": \"2\", \"dst_trunk_name\": \"t\" }\n ]\n}\n"
        );
        assert_eq!(render(Format::Json, Layout::Firmware1025, &names, &none, &none), "{\n \"cdr\":\n [\n ]\n}\n");
        let names: Vec<String> = ["src", "start", "session"].map(String::from).to_vec();
        let legs = [batch(&["src", "start", "session"], &[&[Some("1"), Some("t"), Some("s")]])];
        assert_eq!(
            render(Format::Json, Layout::Firmware1011, &names, &Rows::new(&legs), &none),
            "{\n\"cdr_root\": [\n{\n\"cdr\": \"s\",\n\"main_cdr\": {\n\"src\": \"1\",\n\"start\": \"t\",\n\
             \"session\": \"s\"\n}\n}\n]\n}\n"
        );
    }

    #[test]
    fn multi_leg_calls_get_a_summary() {
        let names: Vec<String> = ["src", "duration", "session"].map(String::from).to_vec();
        let legs = [batch(
            &["src", "duration", "session"],
            &[&[Some("1"), Some("12"), Some("s")], &[Some("2"), Some("4"), Some("s")], &[Some("3"), None, None]],
        )];
        let out = render(Format::Json, Layout::Spec, &names, &Rows::new(&legs), &Rows::new(&[]));
        assert_eq!(
            out,
            "{\"cdr_root\": [\n{\"cdr\": \"s\", \"main_cdr\": {\"src\": \"1\", \"duration\": \"16\", \"session\": \"s\"}, \
             \"sub_cdr_1\": {\"src\": \"1\", \"duration\": \"12\", \"session\": \"s\"}, \
             \"sub_cdr_2\": {\"src\": \"2\", \"duration\": \"4\", \"session\": \"s\"}},\n\
             {\"cdr\": \"\", \"main_cdr\": {\"src\": \"3\", \"duration\": \"\", \"session\": \"\"}}\n]}\n"
        );
    }

    #[test]
    fn json_strings_escape_as_python_does() {
        // json.dumps(s, ensure_ascii=False) for every control character,
        // the two escaped printables, and text around them.
        let mut out = String::new();
        json_string(&mut out, "a\"b\\c\u{0}\u{8}\t\n\u{b}\u{c}\r\u{1f}\u{7f}é€");
        assert_eq!(out, "\"a\\\"b\\\\c\\u0000\\b\\t\\n\\u000b\\f\\r\\u001f\u{7f}é€\"");
        for b in 0u8..0x20 {
            let mut out = String::new();
            json_string(&mut out, &char::from(b).to_string());
            let expected = match b {
                8 => "\"\\b\"".to_string(),
                9 => "\"\\t\"".to_string(),
                10 => "\"\\n\"".to_string(),
                12 => "\"\\f\"".to_string(),
                13 => "\"\\r\"".to_string(),
                _ => format!("\"\\u{b:04x}\""),
            };
            assert_eq!(out, expected);
        }
    }

    #[test]
    fn xml_escapes_and_empty_containers() {
        let names: Vec<String> = ["src", "session"].map(String::from).to_vec();
        let legs = [batch(&["src", "session"], &[&[Some("<&>\"x"), Some("a\"b")]])];
        let out = render(Format::Xml, Layout::Spec, &names, &Rows::new(&legs), &Rows::new(&[]));
        assert!(out.contains("<cdr session=\"a&quot;b\"><main_cdr><src>&lt;&amp;&gt;\"x</src>"));
        let none = render(Format::Xml, Layout::Spec, &names, &Rows::new(&[]), &Rows::new(&[]));
        assert_eq!(none, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<cdr_root/>\n");
        assert_eq!(render(Format::Json, Layout::Spec, &names, &Rows::new(&[]), &Rows::new(&[])), "{\"cdr_root\": []}");
    }
}
