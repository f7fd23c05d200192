//! The kernel for the items Polars has no cheap primitive for — digit
//! ranges (a regex strip per item there) and general wildcards (a regex):
//! one pass over a text column's Arrow buffers, handed over by Polars
//! without a copy (the Arrow PyCapsule interface), rows split across
//! threads. Exact, prefix, suffix and contains items stay Polars
//! primitives (`python/cdrq/_expr.py`), which are as fast as a kernel.

use arrow_array::cast::AsArray;
use arrow_array::{Array, ArrayRef, BooleanArray};
use arrow_buffer::{BooleanBuffer, Buffer};
use arrow_schema::DataType;
use rayon::prelude::*;

use super::filter::ItemList;

/// Rows per task: a multiple of 64, so that each task fills whole words.
const TASK_ROWS: usize = 64 * 1024;

/// Whether each value of the column (its chunks) matches any item of
/// `list`; a null is the empty string. One boolean array per chunk; the
/// tasks of all chunks share the threads (Polars hands over many small
/// chunks).
pub fn mask(list: &ItemList, chunks: &[ArrayRef]) -> Result<Vec<BooleanArray>, String> {
    let empty = list.matches(b"");
    let fills = chunks.iter().map(|chunk| chunk_fill(list, empty, chunk)).collect::<Result<Vec<_>, _>>()?;
    let mut bitmaps: Vec<Vec<u64>> = chunks.iter().map(|chunk| vec![0; chunk.len().div_ceil(64)]).collect();
    let tasks: Vec<(&Fill<'_>, usize, &mut [u64])> = bitmaps
        .iter_mut()
        .zip(&fills)
        .flat_map(|(bitmap, fill)| {
            bitmap.chunks_mut(TASK_ROWS / 64).enumerate().map(move |(task, words)| (fill, task * TASK_ROWS, words))
        })
        .collect();
    tasks.into_par_iter().for_each(|(fill, from, words)| fill(from, words));
    Ok(chunks
        .iter()
        .zip(bitmaps)
        .map(|(chunk, words)| {
            let got = BooleanBuffer::new(Buffer::from_vec(words), 0, chunk.len());
            // Text arrays' nulls were decided in the test; views' are applied here.
            let values = match chunk.nulls().filter(|_| *chunk.data_type() == DataType::Utf8View) {
                Some(nulls) if empty => &got | &!nulls.inner(),
                Some(nulls) => &got & nulls.inner(),
                None => got,
            };
            BooleanArray::new(values, None)
        })
        .collect())
}

/// A chunk's test: fills the bitmap words of its rows from `from` (a
/// multiple of 64) on. One call per task, monomorphic within.
type Fill<'a> = Box<dyn Fn(usize, &mut [u64]) + Sync + 'a>;

fn chunk_fill<'a>(list: &'a ItemList, empty: bool, chunk: &'a ArrayRef) -> Result<Fill<'a>, String> {
    Ok(match chunk.data_type() {
        DataType::Utf8View => {
            let a = chunk.as_string_view();
            let (views, buffers, nulls) = (a.views(), a.data_buffers(), a.nulls());
            // A value of up to 12 bytes is tested on its view alone, null or
            // not (the null bitmap is applied after); a longer one on its
            // bytes in a data buffer, if not null.
            fill(a.len(), move |from, to| {
                pack(views[from..to].iter().enumerate().map(|(j, &view)| {
                    let len = view as u32 as usize;
                    if len > 12 && nulls.is_some_and(|n| n.is_null(from + j)) {
                        return false;
                    }
                    list.matches_view(view, || {
                        // Arrow's view layout: length, prefix, buffer index, offset.
                        let (buffer, offset) = ((view >> 64) as u32 as usize, (view >> 96) as u32 as usize);
                        &buffers[buffer][offset..][..len]
                    })
                }))
            })
        }
        DataType::Utf8 => {
            let a = chunk.as_string::<i32>();
            let test = move |i| if a.is_null(i) { empty } else { list.matches(a.value(i).as_bytes()) };
            fill(a.len(), move |from, to| pack((from..to).map(test)))
        }
        DataType::LargeUtf8 => {
            let a = chunk.as_string::<i64>();
            let test = move |i| if a.is_null(i) { empty } else { list.matches(a.value(i).as_bytes()) };
            fill(a.len(), move |from, to| pack((from..to).map(test)))
        }
        DataType::Null => fill(chunk.len(), move |from, to| pack((from..to).map(|_| empty))),
        other => return Err(format!("a pattern needs a text column, not {other}")),
    })
}

/// The [`Fill`] of a chunk of `len` rows from `word(from, to)`, the bits of
/// rows `from..to` (at most 64).
fn fill<'a>(len: usize, word: impl Fn(usize, usize) -> u64 + Sync + 'a) -> Fill<'a> {
    Box::new(move |from, words| {
        for (w, bits) in words.iter_mut().enumerate() {
            let start = from + 64 * w;
            *bits = word(start, len.min(start + 64));
        }
    })
}

/// Up to 64 booleans as the bits of a word, the first the lowest.
#[inline]
fn pack(bits: impl Iterator<Item = bool>) -> u64 {
    bits.enumerate().fold(0, |word, (i, bit)| word | u64::from(bit) << i)
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
    fn views_agree_with_values() {
        // Inline and longer values, ASCII and not, nulls, over two tasks;
        // sliced too, so that the null bitmap has an offset.
        let values = crate::query::filter::tests::sample_values();
        let column: Vec<Option<&str>> =
            (0..TASK_ROWS + 1000).map(|i| (i % 7 != 3).then(|| values[i * 31 % values.len()].as_str())).collect();
        let views: ArrayRef = Arc::new(StringViewArray::from(column.clone()));
        let plain: ArrayRef = Arc::new(StringArray::from(column.clone()));
        for items in crate::query::filter::tests::sample_lists() {
            let list = ItemList::new(&items);
            let want: Vec<bool> = column.iter().map(|v| list.matches(v.unwrap_or("").as_bytes())).collect();
            assert_eq!(bools(&mask(&list, &[Arc::clone(&views)]).unwrap()), want, "{items:?}");
            assert_eq!(bools(&mask(&list, &[Arc::clone(&plain)]).unwrap()), want, "{items:?}");
            let (from, len) = (5, TASK_ROWS - 70);
            let sliced = views.slice(from, len);
            assert_eq!(bools(&mask(&list, &[Arc::clone(&sliced)]).unwrap()), want[from..from + len], "{items:?}");
            let all = [want.as_slice(), &want[from..from + len], &want].concat();
            let chunks = [Arc::clone(&views), sliced, Arc::clone(&plain)];
            assert_eq!(bools(&mask(&list, &chunks).unwrap()), all, "chunks together: {items:?}");
        }
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
