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

/// Web UI `status` words (§6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Answered,
    NoAnswer,
    Busy,
    /// `FAILED` and `CONGESTION`.
    Failed,
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
