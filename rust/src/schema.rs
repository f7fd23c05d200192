//! The cdrq data model: UCM field names, their Arrow types, and the field
//! layouts of the headerless CDR API CSV of each firmware generation.
//!
//! Every reader produces the same leading columns ([`BASE_COLUMNS`], then
//! `cdr_kind` and `leg`), so one query runs over archives of any firmware;
//! further firmware fields follow by name.

use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema, TimeUnit};

/// The 32 JSON keys of firmware 1.0.11+, in the vendor's order. The first 22
/// are the whole record of firmware 1.0.2.5.
pub const BASE_COLUMNS: [&str; 32] = [
    "AcctId",
    "accountcode",
    "src",
    "dst",
    "dcontext",
    "clid",
    "channel",
    "dstchannel",
    "lastapp",
    "lastdata",
    "start",
    "answer",
    "end",
    "duration",
    "billsec",
    "disposition",
    "amaflags",
    "uniqueid",
    "userfield",
    "channel_ext",
    "dstchannel_ext",
    "service",
    "caller_name",
    "recordfiles",
    "dstanswer",
    "chanext",
    "dstchanext",
    "session",
    "action_owner",
    "action_type",
    "src_trunk_name",
    "dst_trunk_name",
];

/// Indexes in [`BASE_COLUMNS`] of the fields readers look at themselves.
pub const SRC_COLUMN: usize = 2;
pub const DST_COLUMN: usize = 3;
pub const CLID_COLUMN: usize = 5;
pub const LASTDATA_COLUMN: usize = 9;
pub const START_COLUMN: usize = 10;
pub const BILLSEC_COLUMN: usize = 14;
pub const CALLER_NAME_COLUMN: usize = 22;
pub const AMAFLAGS_COLUMN: usize = 16;
pub const SESSION_COLUMN: usize = 27;

/// Asterisk's CDR fields beyond the data model (cdr_csv's `newcdrcolumns`):
/// every Asterisk-family frame has them, after `cdr_kind` and `leg`.
pub const ASTERISK_EXTRA: [&str; 3] = ["peeraccount", "linkedid", "sequence"];

/// The name of an Asterisk AMA flag written as its number (`${CDR(amaflags,u)}`,
/// older cdr_custom templates), as `ast_channel_amaflags2string` in
/// Asterisk's main/channel.c (and the UCM) names it; `None` leaves the
/// value as written.
pub fn amaflags_name(value: &[u8]) -> Option<&'static str> {
    Some(match value {
        b"1" => "OMIT",
        b"2" => "BILLING",
        b"3" => "DOCUMENTATION",
        _ => return None,
    })
}

/// The most columns a frame may have, the data model's included. A JSON or
/// XML document naming a new key in each record would otherwise make a
/// frame of records × keys nulls (20 000 records of 1 MB took 8 GB): keys
/// beyond this are no CDR export's.
pub const MAX_COLUMNS: usize = 1024;

/// `record` for a flat record, `main` for a call summary, `sub` for a leg.
pub const CDR_KIND: &str = "cdr_kind";
/// N of `sub_cdr_N`, else 0.
pub const LEG: &str = "leg";
/// Output column indexes of `cdr_kind` and `leg`: they follow the base columns.
pub const KIND_COLUMN: usize = BASE_COLUMNS.len();
pub const LEG_COLUMN: usize = BASE_COLUMNS.len() + 1;
/// Output column index of the first key beyond the data model.
pub const EXTRA_COLUMN: usize = BASE_COLUMNS.len() + 2;

/// What a column holds once read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColumnType {
    Text,
    Int,
    /// PBX wall-clock `YYYY-MM-DD HH:MM:SS`, stored as microseconds.
    Timestamp,
}

impl ColumnType {
    /// The type's name for the Python layer (`_core.COLUMN_TYPES`).
    pub fn name(self) -> &'static str {
        match self {
            ColumnType::Text => "text",
            ColumnType::Int => "int",
            ColumnType::Timestamp => "time",
        }
    }
}

/// The type of a column by its vendor name; unknown names are text.
pub fn column_type(name: &str) -> ColumnType {
    match name {
        "AcctId" | "duration" | "billsec" | LEG => ColumnType::Int,
        "start" | "answer" | "end" => ColumnType::Timestamp,
        _ => ColumnType::Text,
    }
}

/// Index of a name in [`BASE_COLUMNS`].
pub fn base_index(name: &str) -> Option<usize> {
    BASE_COLUMNS.iter().position(|n| *n == name)
}

/// A column name from a source's bytes (a header, a key, an element):
/// invalid UTF-8 and control characters (a NUL cannot cross Arrow's C
/// interface) become U+FFFD, so any bytes make a usable name.
pub fn column_name(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).chars().map(|c| if c.is_control() { '\u{FFFD}' } else { c }).collect()
}

/// The Arrow field of a column. `tz` labels the timestamps; `None` leaves
/// them naive (the Python layer then localises them).
pub fn arrow_field(name: &str, tz: Option<&str>) -> Field {
    let data_type = match column_type(name) {
        ColumnType::Text => DataType::Utf8View,
        ColumnType::Int => DataType::Int64,
        ColumnType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, tz.map(Arc::from)),
    };
    Field::new(name, data_type, true)
}

/// The output column names: the base columns, `cdr_kind`, `leg`, then
/// `extra` (further firmware fields, in the order first seen).
pub fn output_names(extra: &[String]) -> Vec<String> {
    BASE_COLUMNS
        .iter()
        .map(|s| s.to_string())
        .chain([CDR_KIND.to_string(), LEG.to_string()])
        .chain(extra.iter().cloned())
        .collect()
}

pub fn arrow_schema(names: &[String], tz: Option<&str>) -> Arc<Schema> {
    Arc::new(Schema::new(names.iter().map(|n| arrow_field(n, tz)).collect::<Vec<_>>()))
}
