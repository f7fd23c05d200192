//! Parallel parsing in chunks, shared by the readers: nominal chunk starts
//! are guesses (a quoted field, a string or a CDATA section may hide a fake
//! record start), so each chunk is kept only if it starts where the one
//! before really ended.

use rayon::prelude::*;

use super::{Emit, ReadOutput, records};
use crate::error::Result;

/// A chunk of a parallel parse.
pub trait Chunk {
    /// Where the chunk really started and where its last record ended.
    fn span(&self) -> (usize, usize);
    /// No chunk can follow this one: the data ended, or (strict) it failed.
    fn is_last(&self) -> bool;
}

/// A chunk of a nested document (a JSON record array, XML calls): where it
/// really started and ended, whether nothing can follow it (the document's
/// end was reached, or the parse failed), and what it built.
pub struct Piece<T> {
    pub start: usize,
    pub end: usize,
    pub closed: bool,
    pub result: T,
}

impl<T> Chunk for Piece<T> {
    fn span(&self) -> (usize, usize) {
        (self.start, self.end)
    }

    fn is_last(&self) -> bool {
        self.closed
    }
}

/// Parses the windows of `bounds` (nominal chunk starts, then the end) in
/// parallel, then keeps a chunk only if it starts where its predecessor
/// ended, parsing it again from there otherwise (its nominal start fell
/// inside a quoted field, a string, a CDATA section). The chunks returned,
/// up to the last one, are a one-pass parse cut in pieces.
pub fn parse_chunks<C: Chunk + Send>(bounds: &[usize], parse: impl Fn(usize, usize) -> C + Sync) -> Vec<C> {
    let mut chunks: Vec<C> = bounds.par_windows(2).map(|w| parse(w[0], w[1])).collect();
    let mut last = 0;
    while !chunks[last].is_last() && last + 1 < chunks.len() {
        let next = last + 1;
        let end = chunks[last].span().1;
        if chunks[next].span().0 != end {
            chunks[next] = parse(end, bounds[next + 1].max(end));
        }
        last = next;
    }
    chunks.truncate(last + 1);
    chunks
}

/// Hands a group's chunks (those before any that failed) to a scan's
/// `emit` as one window reaching `end` (or the first error a chunk's build
/// met: it ends the scan); whether to go on. One window per group, not per
/// chunk: with one slot in the channel, a window per chunk kept the worker
/// waiting on the consumer for all but one chunk of the group instead of
/// parsing the next group meanwhile.
pub fn hand_over(source: &str, emit: Emit<'_>, window: Vec<Result<ReadOutput>>, end: usize) -> bool {
    window.is_empty()
        || emit(
            window.into_iter().collect::<Result<Vec<_>>>().and_then(|outputs| records::merge(source, outputs, end)),
            end,
        )
}

/// [`parse_chunks`] over `bounds` a group of `group` chunks at a time,
/// each group starting where the last one really ended; `on_group` gets
/// each group's chunks in order and returns `false` to stop. A scan uses
/// this to hand over a window of records while the next is parsed later.
pub fn parse_chunk_groups<C: Chunk + Send>(
    bounds: &[usize],
    group: usize,
    parse: impl Fn(usize, usize) -> C + Sync,
    mut on_group: impl FnMut(Vec<C>) -> bool,
) {
    let last_index = bounds.len() - 1;
    let (mut pos, mut i) = (bounds[0], 0);
    loop {
        // Skip the nominal starts a long element already ran past.
        while i < last_index && bounds[i + 1] <= pos {
            i += 1;
        }
        if i >= last_index {
            return;
        }
        let end = i.saturating_add(group.max(1)).min(last_index);
        let window: Vec<usize> = std::iter::once(pos).chain(bounds[i + 1..=end].iter().copied()).collect();
        let chunks = parse_chunks(&window, &parse);
        let last = &chunks[chunks.len() - 1];
        let finished = last.is_last() || end == last_index;
        pos = last.span().1;
        if !on_group(chunks) || finished {
            return;
        }
        i = end;
    }
}
