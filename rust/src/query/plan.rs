//! The compiled query: plain data, no Polars. The Python layer turns it
//! into expressions (`python/cdrq/_expr.py`).

use super::pattern::Item;

/// Output format of the CDR API response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Csv,
    Json,
    Xml,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Json => "json",
            Format::Xml => "xml",
        }
    }
}

/// Web UI `status` words (docs/query-language.md §6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Answered,
    NoAnswer,
    Busy,
    /// `FAILED` and `CONGESTION`.
    Failed,
}

impl Status {
    const ALL: [Status; 4] = [Status::Answered, Status::NoAnswer, Status::Busy, Status::Failed];

    /// The word of the query (lower case).
    pub fn name(self) -> &'static str {
        match self {
            Status::Answered => "answered",
            Status::NoAnswer => "noanswer",
            Status::Busy => "busy",
            Status::Failed => "failed",
        }
    }

    /// The `disposition` values the word selects.
    pub fn dispositions(self) -> &'static [&'static str] {
        match self {
            Status::Answered => &["ANSWERED"],
            Status::NoAnswer => &["NO ANSWER"],
            Status::Busy => &["BUSY"],
            Status::Failed => &["FAILED", "CONGESTION"],
        }
    }

    /// A lower-cased query word; `no answer` is `noanswer` too.
    pub fn from_word(word: &str) -> Option<Self> {
        let word = if word == "no answer" { "noanswer" } else { word };
        Self::ALL.into_iter().find(|s| s.name() == word)
    }
}

/// Web UI `callType` words (§6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallType {
    Inbound,
    Outbound,
    External,
    Internal,
    Remote,
}

impl CallType {
    const ALL: [CallType; 5] =
        [CallType::Inbound, CallType::Outbound, CallType::External, CallType::Internal, CallType::Remote];

    /// The word of the query (lower case).
    pub fn name(self) -> &'static str {
        match self {
            CallType::Inbound => "inbound",
            CallType::Outbound => "outbound",
            CallType::External => "external",
            CallType::Internal => "internal",
            CallType::Remote => "remote",
        }
    }

    /// A lower-cased query word.
    pub fn from_word(word: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.name() == word)
    }
}

/// Everything a query asks; `None` is "no such filter".
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// `None` when not given (CSV).
    pub format: Option<Format>,
    pub num_records: Option<u64>,
    pub offset: Option<u64>,
    pub caller: Option<Vec<Item>>,
    pub callee: Option<Vec<Item>>,
    /// Bounds on `start`, inclusive, in UTC microseconds.
    pub start_time: Option<i64>,
    pub end_time: Option<i64>,
    pub min_dur: Option<i64>,
    pub max_dur: Option<i64>,
    // Web UI filters (library API only).
    pub caller_number: Option<Vec<Item>>,
    pub callee_number: Option<Vec<Item>>,
    pub caller_name: Option<Vec<String>>,
    pub status: Option<Vec<Status>>,
    pub call_type: Option<Vec<CallType>>,
    pub src_trunk: Option<Vec<String>>,
    pub dst_trunk: Option<Vec<String>>,
    /// Normalised: upper case, spaces and `_` removed.
    pub action_type: Option<Vec<String>>,
    pub account_code: Option<Vec<String>>,
    pub ext_group: Option<Vec<String>>,
    /// `order=desc`: newest first.
    pub descending: bool,
}
