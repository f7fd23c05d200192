//! Column builders: values of one chunk of records → Arrow arrays.
//!
//! Text columns are StringView arrays whose long values point straight into
//! the input buffer (buffer 0, usually a memory-mapped file), so most strings
//! are never copied; values that had to be decoded (`""` escapes, a rejoined
//! `lastdata`) live in a per-chunk scratch buffer (buffer 1).

use std::sync::Arc;

use arrow_array::types::TimestampMicrosecondType;
use arrow_array::{ArrayRef, Int64Array, PrimitiveArray, StringViewArray};
use arrow_buffer::{Buffer, NullBufferBuilder};

use crate::schema::ColumnType;

/// Buffer index of the input bytes in every text column of a chunk.
pub const INPUT_BUFFER: u32 = 0;
/// Buffer index of the chunk's decoded values.
pub const SCRATCH_BUFFER: u32 = 1;
/// The longest value a view holds inline (needing no buffer).
pub const INLINE_MAX: usize = 12;

/// An Arrow string view: values up to 12 bytes inline, longer ones as
/// length, 4-byte prefix, buffer index and offset (the Arrow spec's layout;
/// `arrow_array::builder::make_view`, but inlined into the hot loop).
#[inline(always)]
pub fn make_view(bytes: &[u8], buffer: u32, offset: u32) -> u128 {
    let len = bytes.len();
    if len <= INLINE_MAX {
        (len as u128) | (inline_bytes(bytes) << 32)
    } else {
        let prefix = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        (len as u128) | (u128::from(prefix) << 32) | (u128::from(buffer) << 64) | (u128::from(offset) << 96)
    }
}

/// Up to 12 bytes as a little-endian integer, by overlapping loads rather
/// than a copy of variable length (a `memcpy` call, then a stalled reload).
#[inline(always)]
fn inline_bytes(bytes: &[u8]) -> u128 {
    let len = bytes.len();
    let word = |at: usize| u64::from(u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]));
    if len >= 8 {
        let low = u64::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[7]]);
        // The last four bytes, shifted so that only bytes[8..] remain.
        let high = word(len - 4) >> ((12 - len) * 8);
        u128::from(low) | (u128::from(high) << 64)
    } else if len >= 4 {
        u128::from(word(0) | (word(len - 4) >> ((8 - len) * 8)) << 32)
    } else {
        bytes.iter().rev().fold(0, |v, &b| (v << 8) | u128::from(b))
    }
}

/// One column of a chunk under construction.
pub enum ColumnBuilder {
    Text { views: Vec<u128>, nulls: NullBufferBuilder },
    Int { values: Vec<i64>, nulls: NullBufferBuilder },
    Timestamp { values: Vec<i64>, nulls: NullBufferBuilder },
}

impl ColumnBuilder {
    pub fn new(ty: ColumnType, capacity: usize) -> Self {
        let nulls = NullBufferBuilder::new(capacity);
        match ty {
            ColumnType::Text => Self::Text { views: Vec::with_capacity(capacity), nulls },
            ColumnType::Int => Self::Int { values: Vec::with_capacity(capacity), nulls },
            ColumnType::Timestamp => Self::Timestamp { values: Vec::with_capacity(capacity), nulls },
        }
    }

    /// Room for `additional` more values.
    pub fn reserve(&mut self, additional: usize) {
        match self {
            Self::Text { views, .. } => views.reserve(additional),
            Self::Int { values, .. } | Self::Timestamp { values, .. } => values.reserve(additional),
        }
    }

    #[inline(always)]
    pub fn push_null(&mut self) {
        match self {
            Self::Text { views, nulls } => {
                views.push(0);
                nulls.append_null();
            }
            Self::Int { values, nulls } | Self::Timestamp { values, nulls } => {
                values.push(0);
                nulls.append_null();
            }
        }
    }

    /// Appends a text value stored at `offset` of buffer `buffer`.
    #[inline(always)]
    pub fn push_text(&mut self, bytes: &[u8], buffer: u32, offset: usize) {
        if let Self::Text { views, nulls } = self {
            views.push(make_view(bytes, buffer, offset as u32));
            nulls.append_non_null();
        }
    }

    /// Appends a text value by its view (see [`make_view`]).
    #[inline(always)]
    pub fn push_view(&mut self, view: u128) {
        if let Self::Text { views, nulls } = self {
            views.push(view);
            nulls.append_non_null();
        }
    }

    /// Appends an integer or a timestamp in microseconds.
    #[inline(always)]
    pub fn push_i64(&mut self, v: i64) {
        if let Self::Int { values, nulls } | Self::Timestamp { values, nulls } = self {
            values.push(v);
            nulls.append_non_null();
        }
    }

    /// Builds the array; text views refer to `buffers` (input, scratch).
    pub fn finish(self, buffers: &Arc<[Buffer]>, tz: Option<&str>) -> ArrayRef {
        match self {
            Self::Text { views, mut nulls } => {
                // SAFETY: every view was made by `make_view` from a UTF-8
                // value (the input is validated per chunk or per record)
                // lying at the recorded offset of the recorded buffer.
                Arc::new(unsafe { StringViewArray::new_unchecked(views.into(), Arc::clone(buffers), nulls.finish()) })
            }
            Self::Int { values, mut nulls } => Arc::new(Int64Array::new(values.into(), nulls.finish())),
            Self::Timestamp { values, mut nulls } => Arc::new(
                PrimitiveArray::<TimestampMicrosecondType>::new(values.into(), nulls.finish())
                    .with_timezone_opt(tz.map(Arc::<str>::from)),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn views_match_arrow() {
        let text = b"a much longer value here, \xc3\xa9 and more";
        for len in 0..=text.len() {
            let value = &text[..len];
            assert_eq!(super::make_view(value, 1, 77), arrow_array::builder::make_view(value, 1, 77), "{len}");
        }
    }
}
