//! Splitting a batch's CPU work (a commit's encoding and sealing of person records, an
//! ingest file's parsing) over two threads.
//!
//! Why two: the machine this is tuned on has two cores, and at those points the second one
//! is often idle (the store's apply thread, when busy, shares it; ingest parses before it
//! appends). Small batches stay on the caller's thread: a thread costs tens of microseconds.

/// `f` over `items`, in order; split in two halves on two threads from `split_from` items.
pub fn map_halves<T: Sync, R: Send>(
    items: &[T],
    split_from: usize,
    f: impl Fn(&T) -> R + Sync,
) -> Vec<R> {
    if items.len() < split_from.max(2) {
        return items.iter().map(&f).collect();
    }
    let (first, second) = items.split_at(items.len() / 2);
    std::thread::scope(|sc| {
        let other = sc.spawn(|| second.iter().map(&f).collect::<Vec<R>>());
        let mut out: Vec<R> = first.iter().map(&f).collect();
        out.extend(other.join().expect("the work split here does not panic"));
        out
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn halves_give_the_items_in_order() {
        let items: Vec<u32> = (0..1000).collect();
        let want: Vec<u64> = items.iter().map(|&i| i as u64 * 3).collect();
        for split_from in [0, 1, 2, 10, 999, 1000, 5000] {
            assert_eq!(
                super::map_halves(&items, split_from, |&i| i as u64 * 3),
                want
            );
        }
        assert!(super::map_halves(&[] as &[u32], 0, |&i| i).is_empty());
    }
}
