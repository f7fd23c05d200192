//! Calls in progress over time, exactly: one sort-and-sweep pass.
//!
//! A call is in progress on `[start, end)`: at an instant where one call
//! ends and another starts, the ending one is gone first, and a call with
//! `end <= start` is never in progress (zero-length, or its clock went
//! backwards). Starts and ends are sorted apart (two sorts of plain `i64`,
//! in parallel) and merged, rather than sorting `(time, ±1)` events: half
//! the bytes moved and no tie rule to encode in the sort key.

use rayon::prelude::*;

/// The step function, group after group: from `time[i]` until the next
/// row of the same group, `calls[i]` calls of group `group[i]` are in
/// progress (0 after a group's last row). Only changes are listed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Steps {
    pub group: Vec<u32>,
    pub time: Vec<i64>,
    pub calls: Vec<i64>,
}

/// Sorts a group's interval ends, in parallel when there are many.
fn sort(values: &mut [i64]) {
    if values.len() > 1 << 16 {
        values.par_sort_unstable();
    } else {
        values.sort_unstable();
    }
}

/// Walks one group's count over its sorted starts and ends, calling
/// `change(time, count)` wherever the count changes.
fn walk(starts: &[i64], ends: &[i64], mut change: impl FnMut(i64, i64)) {
    let (mut i, mut j, mut count, mut last) = (0, 0, 0i64, 0i64);
    while i < starts.len() || j < ends.len() {
        let t = match (starts.get(i), ends.get(j)) {
            (Some(&s), Some(&e)) => s.min(e),
            (Some(&s), None) => s,
            (None, Some(&e)) => e,
            (None, None) => break,
        };
        while j < ends.len() && ends[j] == t {
            count -= 1;
            j += 1;
        }
        while i < starts.len() && starts[i] == t {
            count += 1;
            i += 1;
        }
        if count != last {
            change(t, count);
            last = count;
        }
    }
}

/// The intervals `[starts[k], ends[k])` with `end > start`, in groups
/// `groups[k]` (dense ids below `group_count`; all in group 0 without
/// them), each group's starts and ends sorted, in parallel. Panics if the
/// slices' lengths differ or a group id is out of range (the caller checks).
fn for_each_group<T: Send>(
    starts: &[i64],
    ends: &[i64],
    groups: Option<&[u32]>,
    group_count: u32,
    each: impl Fn(&[i64], &[i64]) -> T + Sync,
) -> Vec<T> {
    assert_eq!(starts.len(), ends.len(), "starts and ends differ in length");
    let group_count = if groups.is_some() { group_count as usize } else { 1 };
    let group_of = |k: usize| groups.map_or(0, |g| g[k] as usize);
    let valid = |k: usize| starts[k] < ends[k];
    // Counting sort by group: each group's starts and ends contiguous.
    let mut offsets = vec![0usize; group_count + 1];
    for k in (0..starts.len()).filter(|&k| valid(k)) {
        offsets[group_of(k) + 1] += 1;
    }
    for g in 0..group_count {
        offsets[g + 1] += offsets[g];
    }
    let total = offsets[group_count];
    let (mut by_start, mut by_end) = (vec![0i64; total], vec![0i64; total]);
    let mut next = offsets.clone();
    for k in (0..starts.len()).filter(|&k| valid(k)) {
        let slot = &mut next[group_of(k)];
        by_start[*slot] = starts[k];
        by_end[*slot] = ends[k];
        *slot += 1;
    }
    let mut start_slices = Vec::with_capacity(group_count);
    let mut end_slices = Vec::with_capacity(group_count);
    let (mut rest_start, mut rest_end) = (by_start.as_mut_slice(), by_end.as_mut_slice());
    for g in 0..group_count {
        let n = offsets[g + 1] - offsets[g];
        let (s, r) = std::mem::take(&mut rest_start).split_at_mut(n);
        let (e, q) = std::mem::take(&mut rest_end).split_at_mut(n);
        start_slices.push(s);
        end_slices.push(e);
        (rest_start, rest_end) = (r, q);
    }
    start_slices
        .into_par_iter()
        .zip(end_slices)
        .map(|(s, e)| {
            rayon::join(|| sort(s), || sort(e));
            each(s, e)
        })
        .collect()
}

/// The step function of the intervals `[starts[k], ends[k])` per group
/// (see [`for_each_group`]). Intervals with `end <= start` are left out.
pub fn sweep(starts: &[i64], ends: &[i64], groups: Option<&[u32]>, group_count: u32) -> Steps {
    let changes = for_each_group(starts, ends, groups, group_count, |s, e| {
        let (mut time, mut calls) = (Vec::new(), Vec::new());
        walk(s, e, |t, c| {
            time.push(t);
            calls.push(c);
        });
        (time, calls)
    });
    let mut steps = Steps::default();
    for (g, (time, calls)) in changes.into_iter().enumerate() {
        steps.group.extend(std::iter::repeat_n(g as u32, time.len()));
        // One group (the common case) moves its vectors, no copy.
        if steps.time.is_empty() {
            (steps.time, steps.calls) = (time, calls);
        } else {
            steps.time.extend(time);
            steps.calls.extend(calls);
        }
    }
    steps
}

/// Per group (see [`for_each_group`]): the most intervals in progress at
/// once and the first instant it was reached (`None`: no interval of the
/// group is ever in progress) — the peak of [`sweep`]'s steps without
/// listing them.
pub fn peaks(starts: &[i64], ends: &[i64], groups: Option<&[u32]>, group_count: u32) -> Vec<(i64, Option<i64>)> {
    for_each_group(starts, ends, groups, group_count, |s, e| {
        let mut best = (0i64, None);
        walk(s, e, |t, c| {
            if c > best.0 {
                best = (c, Some(t));
            }
        });
        best
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn brute(starts: &[i64], ends: &[i64], t: i64) -> i64 {
        starts.iter().zip(ends).filter(|&(&s, &e)| s <= t && t < e).count() as i64
    }

    #[test]
    fn back_to_back_and_zero_length() {
        // [0,10), [10,20) back to back; [5,5) zero-length; [30,25) backwards.
        let steps = sweep(&[0, 10, 5, 30], &[10, 20, 5, 25], None, 0);
        assert_eq!(steps.time, vec![0, 20]);
        assert_eq!(steps.calls, vec![1, 0]);
    }

    #[test]
    fn groups_are_swept_apart() {
        let steps = sweep(&[0, 0, 5], &[10, 10, 6], Some(&[1, 0, 1]), 2);
        assert_eq!(steps.group, vec![0, 0, 1, 1, 1, 1]);
        assert_eq!(steps.time, vec![0, 10, 0, 5, 6, 10]);
        assert_eq!(steps.calls, vec![1, 0, 1, 2, 1, 0]);
    }

    #[test]
    fn peaks_are_the_steps_highest_first() {
        let (starts, ends, groups) = ([0, 0, 5, 7, 3], [10, 10, 6, 9, 3], [1, 0, 1, 1, 2]);
        let steps = sweep(&starts, &ends, Some(&groups), 3);
        let peaks = peaks(&starts, &ends, Some(&groups), 3);
        for (g, &(peak, at)) in peaks.iter().enumerate() {
            let of_group: Vec<usize> = (0..steps.group.len()).filter(|&k| steps.group[k] == g as u32).collect();
            let top = of_group.iter().map(|&k| steps.calls[k]).max().unwrap_or(0);
            let first = of_group.iter().find(|&&k| steps.calls[k] == top && top > 0).map(|&k| steps.time[k]);
            assert_eq!((peak, at), (top, first), "group {g}");
        }
        assert_eq!(peaks, vec![(1, Some(0)), (2, Some(5)), (0, None)]);
    }

    #[test]
    fn agrees_with_a_brute_force_count() {
        let mut seed = 7u64;
        let mut next = |m: u64| {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            ((seed >> 33) % m) as i64
        };
        let (mut starts, mut ends) = (Vec::new(), Vec::new());
        for _ in 0..500 {
            let s = next(1000);
            starts.push(s);
            ends.push(s + next(50) - 5);
        }
        let steps = sweep(&starts, &ends, None, 0);
        for t in -1..1100 {
            let at = steps.time.partition_point(|&x| x <= t);
            let got = if at == 0 { 0 } else { steps.calls[at - 1] };
            assert_eq!(got, brute(&starts, &ends, t), "at {t}");
        }
    }
}
