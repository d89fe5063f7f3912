//! The key directory's in-memory index: 8-byte slots (32 bits of a hash, a record's offset in
//! `keys.bin`) in a sorted array, with a small hash table for the slots added since the array
//! was last rebuilt.
//!
//! Why not one hash table (sessions 9–10): hashbrown's tables are sized to a power of two and
//! kept at most 7/8 full, so they hold 1.15–2.3 slots' room per slot plus a control byte
//! each; at a million people (two million subjects with their phone index records) the two
//! tables were ~72 MiB of a ~365 MiB restart RSS. A sorted array holds 8 bytes a slot, the
//! table of recent slots at most a sixteenth of them: ~9 bytes a slot in all. Hashes are
//! uniform (keyed SipHash of names, random tags), so a lookup guesses a slot's place from its
//! hash and finds it within a cache line or two, as a hash table does.

use hashbrown::hash_table::HashTable;

/// Where a subject's record is in the key file, with 32 bits of the hash it is indexed by.
/// The 32 bits decide almost every lookup without reading the file: a record is read for the
/// subject found, and for a false match about once in 2^32.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Slot {
    pub hash: u32,
    pub at: u32,
}

/// The offset of a removed slot still in the array (until the next rebuild). No record starts
/// there: the key file's offsets stop short of it (`KeyDir`'s "key file full").
pub(crate) const GONE: u32 = u32::MAX;

/// hashbrown takes a bucket from a hash's low bits and a control byte from its top 7 bits; a
/// 32-bit hash widened by an odd multiplier gives both from all 32 bits (and the low bits
/// differ between slots that share the top ones).
fn widen(h: u32) -> u64 {
    (h as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// Slots found by hash. Several slots may share a hash (different subjects whose 32 bits
/// collide); the caller tells them apart by reading their records.
#[derive(Default)]
pub(crate) struct Slots {
    /// Sorted by hash; removed slots have `at == GONE`.
    base: Vec<Slot>,
    /// Removed slots still in `base`.
    gone: usize,
    /// Slots added since `base` was rebuilt.
    fresh: HashTable<Slot>,
}

impl Slots {
    /// From slots sorted by hash (a key file's load sorts them once: `KeyDir::load`).
    pub fn from_sorted(mut slots: Vec<Slot>) -> Slots {
        debug_assert!(slots.is_sorted_by_key(|s| s.hash));
        slots.shrink_to_fit();
        Slots {
            base: slots,
            gone: 0,
            fresh: HashTable::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.base.len() - self.gone + self.fresh.len()
    }

    /// The slots under hash `h`.
    pub fn find(&self, h: u32) -> impl Iterator<Item = Slot> + '_ {
        let b = &self.base[self.range(h)];
        b.iter()
            .chain(self.fresh.iter_hash(widen(h)))
            .filter(move |s| s.hash == h && s.at != GONE)
            .copied()
    }

    /// Every slot, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = Slot> + '_ {
        self.base
            .iter()
            .filter(|s| s.at != GONE)
            .chain(self.fresh.iter())
            .copied()
    }

    /// The index range of `base` whose slots have hash `h`: a guess from the hash (hashes are
    /// uniform, so slot `i` of `n` has a hash near `i * 2^32 / n`), widened by doubling steps
    /// until it brackets them, then two binary searches inside the bracket.
    fn range(&self, h: u32) -> std::ops::Range<usize> {
        let b = &self.base;
        let n = b.len();
        if n == 0 {
            return 0..0;
        }
        let guess = ((h as u64 * n as u64) >> 32) as usize;
        let (mut lo, mut hi) = (guess, guess + 1);
        let mut step = 1;
        // Everything before `lo` hashes below `h`...
        while lo > 0 && b[lo].hash >= h {
            lo = lo.saturating_sub(step);
            step *= 2;
        }
        // ...and everything from `hi` on hashes above it.
        step = 1;
        while hi < n && b[hi - 1].hash <= h {
            hi = (hi + step).min(n);
            step *= 2;
        }
        let w = &b[lo..hi];
        lo + w.partition_point(|s| s.hash < h)..lo + w.partition_point(|s| s.hash <= h)
    }

    pub fn insert(&mut self, slot: Slot) {
        self.fresh
            .insert_unique(widen(slot.hash), slot, |s| widen(s.hash));
        if self.fresh.len() > 1024 + self.base.len() / 16 {
            self.rebuild();
        }
    }

    /// Point the slot `(h, from)` at `to`. False if there is no such slot.
    pub fn repoint(&mut self, h: u32, from: u32, to: u32) -> bool {
        if let Some(s) = self
            .fresh
            .find_mut(widen(h), |s| s.hash == h && s.at == from)
        {
            s.at = to;
            return true;
        }
        let r = self.range(h);
        match self.base[r].iter_mut().find(|s| s.at == from) {
            Some(s) => {
                s.at = to;
                true
            }
            None => false,
        }
    }

    /// Remove the slot `(h, at)`. False if there is no such slot.
    pub fn remove(&mut self, h: u32, at: u32) -> bool {
        if let Ok(e) = self
            .fresh
            .find_entry(widen(h), |s| s.hash == h && s.at == at)
        {
            e.remove();
            return true;
        }
        if !self.repoint(h, at, GONE) {
            return false;
        }
        self.gone += 1;
        if self.gone > 1024 + self.base.len() / 4 {
            self.rebuild();
        }
        true
    }

    /// Merge the recent slots into the sorted array and drop removed ones: one pass over the
    /// array, a new one of exactly the size needed. (The standard stable sort of the two runs
    /// concatenated would merge them too, but through a scratch buffer of up to half the
    /// slots: 8 MB more, for a moment, at a million people.)
    fn rebuild(&mut self) {
        let mut fresh: Vec<Slot> = self.fresh.iter().copied().collect();
        fresh.sort_unstable_by_key(|s| s.hash);
        let mut out = Vec::with_capacity(self.len());
        let mut old = self.base.iter().filter(|s| s.at != GONE).peekable();
        let mut new = fresh.into_iter().peekable();
        loop {
            let take_old = match (old.peek(), new.peek()) {
                (Some(a), Some(b)) => a.hash <= b.hash,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => break,
            };
            if take_old {
                out.push(*old.next().expect("peeked"));
            } else {
                out.push(new.next().expect("peeked"));
            }
        }
        self.base = out;
        self.gone = 0;
        self.fresh = HashTable::new();
    }

    /// Bytes allocated, for measurements.
    #[cfg(test)]
    pub fn allocation_size(&self) -> usize {
        self.base.capacity() * std::mem::size_of::<Slot>() + self.fresh.allocation_size()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    #[derive(Clone, Debug)]
    enum Op {
        Insert(u32, u32),
        Repoint(usize, u32),
        Remove(usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        // Small hashes collide often; large ones spread over the whole range.
        let hash = prop_oneof![0u32..8, any::<u32>()];
        prop_oneof![
            4 => (hash, 0u32..1_000_000).prop_map(|(h, a)| Op::Insert(h, a)),
            1 => (any::<usize>(), 0u32..1_000_000).prop_map(|(i, a)| Op::Repoint(i, a)),
            2 => any::<usize>().prop_map(Op::Remove),
        ]
    }

    fn model_find(m: &BTreeSet<(u32, u32)>, h: u32) -> BTreeSet<u32> {
        m.range((h, 0)..=(h, u32::MAX)).map(|s| s.1).collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Against a set of (hash, offset) pairs: every lookup finds exactly the slots under
        /// its hash, across rebuilds (forced often by starting from a loaded array and adding
        /// thousands of slots).
        #[test]
        fn slots_behave_like_a_set_of_pairs(
            loaded in proptest::collection::vec((any::<u32>(), 0u32..1_000_000), 0..3000),
            ops in proptest::collection::vec(op(), 0..3000),
        ) {
            let mut model: BTreeSet<(u32, u32)> = BTreeSet::new();
            for pair in loaded {
                model.insert(pair);
            }
            // The set iterates in (hash, offset) order: sorted by hash.
            let mut s = Slots::from_sorted(model.iter().map(|&(hash, at)| Slot { hash, at }).collect());
            for op in ops {
                match op {
                    Op::Insert(h, a) if model.insert((h, a)) => s.insert(Slot { hash: h, at: a }),
                    Op::Repoint(i, to) if !model.is_empty() => {
                        let (h, a) = *model.iter().nth(i % model.len()).unwrap();
                        if !model.contains(&(h, to)) {
                            model.remove(&(h, a));
                            model.insert((h, to));
                            prop_assert!(s.repoint(h, a, to));
                        }
                    }
                    Op::Remove(i) if !model.is_empty() => {
                        let (h, a) = *model.iter().nth(i % model.len()).unwrap();
                        model.remove(&(h, a));
                        prop_assert!(s.remove(h, a));
                        prop_assert!(!s.remove(h, a));
                    }
                    _ => {}
                }
                prop_assert_eq!(s.len(), model.len());
            }
            for &(h, _) in &model {
                let found: BTreeSet<u32> = s.find(h).map(|x| x.at).collect();
                prop_assert_eq!(found, model_find(&model, h));
            }
            for h in [0, 1, 7, u32::MAX, 1 << 31] {
                let found: BTreeSet<u32> = s.find(h).map(|x| x.at).collect();
                prop_assert_eq!(found, model_find(&model, h));
            }
            let all: BTreeSet<(u32, u32)> = s.iter().map(|x| (x.hash, x.at)).collect();
            prop_assert_eq!(all, model);
        }
    }

    #[test]
    fn a_large_array_is_found_from_the_guess_at_every_hash() {
        // Uniform hashes (as the key directory's are) plus runs of equal ones and the ends of
        // the range.
        let mut slots: Vec<Slot> = (0..100_000u32)
            .map(|i| Slot {
                hash: i.wrapping_mul(2_654_435_761),
                at: i,
            })
            .collect();
        for (i, h) in [0, 0, 5, 5, 5, u32::MAX, u32::MAX].into_iter().enumerate() {
            slots.push(Slot {
                hash: h,
                at: 200_000 + i as u32,
            });
        }
        let mut sorted = slots.clone();
        sorted.sort_unstable_by_key(|x| x.hash);
        let s = Slots::from_sorted(sorted);
        let mut count: std::collections::HashMap<u32, usize> = Default::default();
        for x in &slots {
            *count.entry(x.hash).or_default() += 1;
        }
        for x in &slots {
            let n = count[&x.hash];
            let found: Vec<Slot> = s.find(x.hash).collect();
            assert_eq!(found.len(), n, "hash {}", x.hash);
            assert!(found.contains(x));
        }
        assert_eq!(s.find(3).count(), 0);
    }
}
