//! The kernel for the items Polars has no cheap primitive for — digit
//! ranges (a regex strip per item there) and general wildcards (a regex):
//! one pass over a text column's Arrow buffers, handed over by Polars
//! without a copy (the Arrow PyCapsule interface), rows split across
//! threads. Exact, prefix, suffix and contains items stay Polars
//! primitives (`python/cdrq/_expr.py`), which are as fast as a kernel.

use arrow_array::cast::AsArray;
use arrow_array::{Array, ArrayRef, BooleanArray};
use arrow_buffer::{BooleanBuffer, MutableBuffer};
use arrow_schema::DataType;
use rayon::prelude::*;

use super::filter::ItemList;

/// Rows per task: a multiple of 8, so that the tasks' bitmaps join bytewise.
const TASK_ROWS: usize = 64 * 1024;

/// Whether each value of the column (its chunks) matches any item of
/// `list`; a null is the empty string. One boolean array per chunk.
pub fn mask(list: &ItemList, chunks: &[ArrayRef]) -> Result<Vec<BooleanArray>, String> {
    let empty = list.matches(b"");
    chunks
        .iter()
        .map(|chunk| {
            Ok(match chunk.data_type() {
                DataType::Utf8View => {
                    let a = chunk.as_string_view();
                    let (views, buffers) = (a.views(), a.data_buffers());
                    // The value's bytes straight from its view: inline up to
                    // 12 bytes, else in a data buffer (what `value(i)` does,
                    // without its checks in the hot loop).
                    let value = |i: usize| -> &[u8] {
                        let view = &views[i];
                        let len = *view as u32 as usize;
                        if len <= 12 {
                            // SAFETY: an inline view holds `len` bytes after its 4-byte length.
                            unsafe { std::slice::from_raw_parts((view as *const u128).cast::<u8>().add(4), len) }
                        } else {
                            // Arrow's view layout: length, prefix, buffer index, offset.
                            let (buffer, offset) = ((*view >> 64) as u32 as usize, (*view >> 96) as u32 as usize);
                            &buffers[buffer][offset..][..len]
                        }
                    };
                    match a.nulls() {
                        Some(nulls) => {
                            collect_parallel(a.len(), |i| if nulls.is_null(i) { empty } else { list.matches(value(i)) })
                        }
                        None => collect_parallel(a.len(), |i| list.matches(value(i))),
                    }
                }
                DataType::Utf8 => {
                    let a = chunk.as_string::<i32>();
                    collect_parallel(
                        a.len(),
                        |i| if a.is_null(i) { empty } else { list.matches(a.value(i).as_bytes()) },
                    )
                }
                DataType::LargeUtf8 => {
                    let a = chunk.as_string::<i64>();
                    collect_parallel(
                        a.len(),
                        |i| if a.is_null(i) { empty } else { list.matches(a.value(i).as_bytes()) },
                    )
                }
                DataType::Null => collect_parallel(chunk.len(), |_| empty),
                other => return Err(format!("a pattern needs a text column, not {other}")),
            })
        })
        .collect()
}

/// `test(i)` for `0..len`, in tasks across threads (generic, so that the
/// test inlines into each task's loop).
fn collect_parallel(len: usize, test: impl Fn(usize) -> bool + Sync) -> BooleanArray {
    let parts: Vec<BooleanBuffer> = (0..len.div_ceil(TASK_ROWS))
        .into_par_iter()
        .map(|task| {
            let from = task * TASK_ROWS;
            BooleanBuffer::collect_bool(TASK_ROWS.min(len - from), |i| test(from + i))
        })
        .collect();
    let mut bytes = MutableBuffer::new(len.div_ceil(8));
    for part in &parts {
        bytes.extend_from_slice(&part.values()[..part.len().div_ceil(8)]);
    }
    BooleanArray::new(BooleanBuffer::new(bytes.into(), 0, len), None)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{StringArray, StringViewArray};

    use super::*;
    use crate::query::pattern::{Item, Token};

    fn bools(arrays: &[BooleanArray]) -> Vec<bool> {
        arrays.iter().flat_map(|a| a.iter().map(Option::unwrap)).collect()
    }

    #[test]
    fn chunks_types_and_nulls() {
        let list = ItemList::new(&[
            Item::Range { lo: "6300".into(), hi: "6399".into() },
            Item::Wildcard(vec![Token::One, Token::Char('4'), Token::Run]),
        ]);
        let chunks = vec![
            Arc::new(StringViewArray::from(vec![Some("6350"), None, Some("x4")])) as ArrayRef,
            Arc::new(StringArray::from(vec![Some("6500"), Some("6-3-0-0")])),
        ];
        let got = mask(&list, &chunks).unwrap();
        assert_eq!(got.iter().map(Array::len).collect::<Vec<_>>(), [3, 2]);
        assert_eq!(bools(&got), [true, false, true, false, true]);
        let zero = ItemList::new(&[Item::Range { lo: "0".into(), hi: "0".into() }]);
        assert_eq!(bools(&mask(&zero, &chunks[..1]).unwrap()), [false, true, false], "null is empty: digits 0");
        let ints: ArrayRef = Arc::new(arrow_array::Int64Array::from(vec![1]));
        assert!(mask(&list, &[ints]).unwrap_err().contains("text column"));
    }

    #[test]
    fn many_tasks_join_in_order() {
        let n = TASK_ROWS * 2 + 13;
        let values: Vec<String> = (0..n).map(|i| (i % 10).to_string()).collect();
        let column: ArrayRef = Arc::new(StringViewArray::from_iter_values(values.iter()));
        let list = ItemList::new(&[Item::Range { lo: "3".into(), hi: "3".into() }]);
        let got = bools(&mask(&list, &[column]).unwrap());
        assert_eq!(got.len(), n);
        assert!(got.iter().enumerate().all(|(i, &m)| m == (i % 10 == 3)));
    }
}
