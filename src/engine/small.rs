//! Sorted vectors standing in for `BTreeSet`/`BTreeMap` in a person's state. A person holds a
//! handful of entries per collection, and a B-tree allocates a node for eleven however few it
//! holds (~280 B for a set of one string, ~800 B for the entry-history map): those nodes were
//! a quarter of the simulator's memory per person, and fresh memory much of its time
//! (docs/performance.md). Same order, same serde shape (a set is a JSON array in order, a map a
//! JSON object in key order; deserialising goes through the B-tree, so duplicates collapse as
//! before), so stored states read and write byte for byte as with the B-trees.
//!
//! Insertion is O(n) (a shift); that is cheaper than a B-tree up to hundreds of entries, and a
//! person's collections stay far below that except `sent`, which grows by one per message.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::borrow::Borrow;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// Make room for one more entry: exactly one while small, as a vector does after. Most of a
/// person's sets hold one value (one entry key per flow, one order) and the maps a handful
/// (instances, flows entered), where a vector's growth (4, then 8) left half of them empty.
fn grow<T>(v: &mut Vec<T>) {
    if v.len() == v.capacity() && v.len() < 8 {
        v.reserve_exact(1);
    }
}

/// A set kept as a sorted, duplicate-free vector.
#[derive(Clone, PartialEq, Eq)]
pub struct SortedSet<T>(Vec<T>);

impl<T> Default for SortedSet<T> {
    fn default() -> Self {
        SortedSet(Vec::new())
    }
}

impl<T: Ord> SortedSet<T> {
    pub fn new() -> Self {
        SortedSet(Vec::new())
    }

    /// Add `v`; `false` (and `v` dropped) when an equal value is there, as `BTreeSet::insert`.
    pub fn insert(&mut self, v: T) -> bool {
        match self.0.binary_search(&v) {
            Ok(_) => false,
            Err(i) => {
                grow(&mut self.0);
                self.0.insert(i, v);
                true
            }
        }
    }

    pub fn contains<Q: Ord + ?Sized>(&self, q: &Q) -> bool
    where
        T: Borrow<Q>,
    {
        self.0.binary_search_by(|x| x.borrow().cmp(q)).is_ok()
    }

    pub fn remove<Q: Ord + ?Sized>(&mut self, q: &Q) -> bool
    where
        T: Borrow<Q>,
    {
        match self.0.binary_search_by(|x| x.borrow().cmp(q)) {
            Ok(i) => {
                self.0.remove(i);
                true
            }
            Err(_) => false,
        }
    }
}

impl<T> SortedSet<T> {
    /// In order, as a `BTreeSet` iterates.
    pub fn iter(&self) -> std::slice::Iter<'_, T> {
        self.0.iter()
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<T: Ord> Extend<T> for SortedSet<T> {
    fn extend<I: IntoIterator<Item = T>>(&mut self, iter: I) {
        for v in iter {
            self.insert(v);
        }
    }
}

impl<T: Ord> FromIterator<T> for SortedSet<T> {
    fn from_iter<I: IntoIterator<Item = T>>(iter: I) -> Self {
        let mut s = SortedSet::new();
        s.extend(iter);
        s
    }
}

impl<'a, T> IntoIterator for &'a SortedSet<T> {
    type Item = &'a T;
    type IntoIter = std::slice::Iter<'a, T>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl<T: fmt::Debug> fmt::Debug for SortedSet<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.0.iter()).finish()
    }
}

impl<T: Serialize> Serialize for SortedSet<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter())
    }
}

impl<'de, T: Deserialize<'de> + Ord> Deserialize<'de> for SortedSet<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        BTreeSet::<T>::deserialize(d).map(|s| SortedSet(s.into_iter().collect()))
    }
}

/// A map kept as a vector of entries sorted by key, keys unique.
#[derive(Clone, PartialEq, Eq)]
pub struct SortedMap<K, V>(Vec<(K, V)>);

impl<K, V> Default for SortedMap<K, V> {
    fn default() -> Self {
        SortedMap(Vec::new())
    }
}

impl<K: Ord, V> SortedMap<K, V> {
    pub fn new() -> Self {
        SortedMap(Vec::new())
    }

    fn find<Q: Ord + ?Sized>(&self, q: &Q) -> Result<usize, usize>
    where
        K: Borrow<Q>,
    {
        self.0.binary_search_by(|(k, _)| k.borrow().cmp(q))
    }

    pub fn get<Q: Ord + ?Sized>(&self, q: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
    {
        self.find(q).ok().map(|i| &self.0[i].1)
    }

    pub fn get_mut<Q: Ord + ?Sized>(&mut self, q: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
    {
        self.find(q).ok().map(|i| &mut self.0[i].1)
    }

    pub fn contains_key<Q: Ord + ?Sized>(&self, q: &Q) -> bool
    where
        K: Borrow<Q>,
    {
        self.find(q).is_ok()
    }

    /// Set `k` to `v`, returning the value it replaces (the key is kept), as `BTreeMap::insert`.
    pub fn insert(&mut self, k: K, v: V) -> Option<V> {
        match self.find(&k) {
            Ok(i) => Some(std::mem::replace(&mut self.0[i].1, v)),
            Err(i) => {
                grow(&mut self.0);
                self.0.insert(i, (k, v));
                None
            }
        }
    }

    pub fn remove<Q: Ord + ?Sized>(&mut self, q: &Q) -> Option<V>
    where
        K: Borrow<Q>,
    {
        self.find(q).ok().map(|i| self.0.remove(i).1)
    }

    /// The value of `q`, inserted as `V::default()` under `q.to_owned()` when missing (the key
    /// is built only then: `entry(k.clone()).or_default()` cloned it on every call).
    pub fn get_or_default<Q: Ord + ?Sized + ToOwned<Owned = K>>(&mut self, q: &Q) -> &mut V
    where
        K: Borrow<Q>,
        V: Default,
    {
        let i = match self.find(q) {
            Ok(i) => i,
            Err(i) => {
                grow(&mut self.0);
                self.0.insert(i, (q.to_owned(), V::default()));
                i
            }
        };
        &mut self.0[i].1
    }
}

impl<K, V> SortedMap<K, V> {
    /// Entries in key order, as a `BTreeMap` iterates.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&K, &V)> + ExactSizeIterator {
        self.0.iter().map(|(k, v)| (k, v))
    }
    pub fn keys(&self) -> impl DoubleEndedIterator<Item = &K> + ExactSizeIterator {
        self.0.iter().map(|(k, _)| k)
    }
    pub fn values(&self) -> impl DoubleEndedIterator<Item = &V> + ExactSizeIterator {
        self.0.iter().map(|(_, v)| v)
    }
    pub fn values_mut(&mut self) -> impl DoubleEndedIterator<Item = &mut V> + ExactSizeIterator {
        self.0.iter_mut().map(|(_, v)| v)
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<K: fmt::Debug, V: fmt::Debug> fmt::Debug for SortedMap<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<K: Serialize, V: Serialize> Serialize for SortedMap<K, V> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.iter())
    }
}

impl<'de, K: Deserialize<'de> + Ord, V: Deserialize<'de>> Deserialize<'de> for SortedMap<K, V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        BTreeMap::<K, V>::deserialize(d).map(|m| SortedMap(m.into_iter().collect()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Same contents, order and JSON as the B-trees they replace, for any insertion order.
    #[test]
    fn behaves_as_btree() {
        let words = ["m", "b", "z", "b", "a", "m", "q", "", "zz", "a"];
        let mut s = SortedSet::new();
        let mut bs = BTreeSet::new();
        let mut m = SortedMap::new();
        let mut bm = BTreeMap::new();
        for (i, w) in words.iter().enumerate() {
            assert_eq!(s.insert(w.to_string()), bs.insert(w.to_string()));
            assert_eq!(m.insert(w.to_string(), i), bm.insert(w.to_string(), i));
            *m.get_or_default(*w) += 10;
            *bm.entry(w.to_string()).or_default() += 10;
            assert_eq!(s.contains(*w), bs.contains(*w));
            assert_eq!(m.get(*w), bm.get(*w));
        }
        *m.get_or_default("new") += 1;
        *bm.entry("new".to_string()).or_default() += 1;
        assert_eq!(s.remove("q"), bs.remove("q"));
        assert_eq!(s.remove("nope"), bs.remove("nope"));
        assert_eq!(m.remove("z"), bm.remove("z"));
        assert_eq!(m.remove("nope"), bm.remove("nope"));
        assert!(s.iter().eq(bs.iter()));
        assert!(m.iter().eq(bm.iter()));
        assert_eq!(s.len(), bs.len());
        assert_eq!(m.len(), bm.len());
        let (sj, mj) = (serde_json::to_string(&s), serde_json::to_string(&m));
        assert_eq!(sj.unwrap(), serde_json::to_string(&bs).unwrap());
        assert_eq!(mj.unwrap(), serde_json::to_string(&bm).unwrap());
        // Reading goes through the B-tree: unsorted input with duplicates comes out as it would.
        let s2: SortedSet<String> = serde_json::from_str(r#"["b","a","b"]"#).unwrap();
        assert!(s2.iter().eq(["a", "b"].iter()));
        let m2: SortedMap<String, u8> = serde_json::from_str(r#"{"b":1,"a":2,"b":3}"#).unwrap();
        let bm2: BTreeMap<String, u8> = serde_json::from_str(r#"{"b":1,"a":2,"b":3}"#).unwrap();
        assert!(m2.iter().eq(bm2.iter()));
        assert_eq!(format!("{s:?} {m:?}"), format!("{bs:?} {bm:?}"));
    }
}
