//! Which row closes its call, for grouping a stream of legs into calls in
//! bounded memory (python/cdrq/analytics.py, `grouped_where_they_lie`).
//!
//! A row closes its call when no later row has the same call-id hash: no
//! later row can then have the same id. Sorting `(hash, row)` pairs puts
//! the rows of a hash together with the last one at the end of its run:
//! 16 bytes a row, given back when done, where a hash table of the calls
//! in Polars' group-by held 70 bytes a call until the process ended.

use arrow_buffer::{BooleanBuffer, BooleanBufferBuilder};
use rayon::prelude::*;

/// For each row (the values of `chunks` in order), whether no later row
/// has the same hash.
pub fn last_of_each(chunks: &[&[u64]]) -> BooleanBuffer {
    let rows: usize = chunks.iter().map(|c| c.len()).sum();
    let row_id = |row: usize| u32::try_from(row).expect("fewer than 2^32 rows");
    let mut pairs: Vec<(u64, u32)> = Vec::with_capacity(rows);
    pairs.extend(chunks.iter().flat_map(|c| c.iter()).enumerate().map(|(row, &hash)| (hash, row_id(row))));
    if pairs.len() > 1 << 16 {
        pairs.par_sort_unstable();
    } else {
        pairs.sort_unstable();
    }
    let mut last = BooleanBufferBuilder::new(rows);
    last.append_n(rows, false);
    for (i, &(hash, row)) in pairs.iter().enumerate() {
        if pairs.get(i + 1).is_none_or(|next| next.0 != hash) {
            last.set_bit(row as usize, true);
        }
    }
    last.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn brute_force(hashes: &[u64]) -> Vec<bool> {
        (0..hashes.len()).map(|i| !hashes[i + 1..].contains(&hashes[i])).collect()
    }

    #[test]
    fn marks_the_last_row_of_each_hash() {
        let hashes = [7, 3, 7, 7, 1, 3];
        let last = last_of_each(&[&hashes[..2], &[], &hashes[2..]]);
        assert_eq!(last.iter().collect::<Vec<_>>(), brute_force(&hashes));
    }

    #[test]
    fn agrees_with_brute_force_on_many_rows() {
        // Enough rows for the parallel sort, few hashes for long runs.
        let hashes: Vec<u64> = (0..100_000u64).map(|i| i.wrapping_mul(2_654_435_761) % 997).collect();
        let last = last_of_each(&[&hashes]);
        let expected: Vec<bool> = {
            let mut seen = std::collections::HashSet::new();
            let mut out: Vec<bool> = hashes.iter().rev().map(|h| seen.insert(*h)).collect();
            out.reverse();
            out
        };
        assert_eq!(last.iter().collect::<Vec<_>>(), expected);
        let first: Vec<bool> = (0..50).map(|i| !hashes[i + 1..].contains(&hashes[i])).collect();
        assert_eq!(expected[..50], first[..]);
    }

    #[test]
    fn no_rows() {
        assert_eq!(last_of_each(&[]).len(), 0);
    }
}
