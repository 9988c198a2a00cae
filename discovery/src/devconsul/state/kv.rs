//! The KV store with Consul's index rules and tombstones.
//!
//! - A key's index is its ModifyIndex; a missing key reports the KV table's maximum.
//! - A prefix (`recurse`, `keys`) reports the max ModifyIndex under it, deletion tombstones
//!   included; with nothing under it, the table maximum. Reaping tombstones can lower it.
//! - CreateIndex survives updates; delete then re-create gives a new one.

use std::collections::BTreeMap;

/// One stored key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KvEntry {
    pub(crate) value: Vec<u8>,
    pub(crate) flags: u64,
    pub(crate) create_index: u64,
    pub(crate) modify_index: u64,
    pub(crate) lock_index: u64,
}

/// Keys, tombstones and table indexes.
#[derive(Debug, Default)]
pub(crate) struct Kv {
    entries: BTreeMap<String, KvEntry>,
    /// Deleted key → index of the deletion, until reaped.
    tombstones: BTreeMap<String, u64>,
    kvs_index: u64,
    tombstones_index: u64,
}

// === impl Kv ===

impl Kv {
    /// The entry and the index a GET of `key` reports.
    pub(crate) fn get(&self, key: &str) -> (Option<&KvEntry>, u64) {
        match self.entries.get(key) {
            Some(e) => (Some(e), e.modify_index),
            None => (None, self.table_index()),
        }
    }

    /// Entries under `prefix` (sorted) and the prefix index.
    pub(crate) fn list<'a>(&'a self, prefix: &'a str) -> (Vec<(&'a String, &'a KvEntry)>, u64) {
        let entries: Vec<_> = self.under(prefix).collect();
        (entries, self.prefix_index(prefix))
    }

    /// Key names under `prefix`, truncated after the first `separator` that follows the prefix
    /// (de-duplicated, sorted), and the prefix index.
    pub(crate) fn keys(&self, prefix: &str, separator: Option<&str>) -> (Vec<String>, u64) {
        let mut out: Vec<String> = Vec::new();
        for (key, _) in self.under(prefix) {
            let shown = match separator.filter(|s| !s.is_empty()) {
                Some(sep) => match key[prefix.len()..].find(sep) {
                    Some(pos) => &key[..prefix.len() + pos + sep.len()],
                    None => key.as_str(),
                },
                None => key.as_str(),
            };
            if out.last().map(String::as_str) != Some(shown) {
                out.push(shown.to_owned());
            }
        }
        (out, self.prefix_index(prefix))
    }

    /// Writes `key`. With `cas = Some(0)` only if absent; with `Some(n)` only if its
    /// ModifyIndex is `n`. Returns whether the write happened (a CAS miss is `false`).
    pub(crate) fn put(
        &mut self,
        idx: u64,
        key: &str,
        value: Vec<u8>,
        flags: u64,
        cas: Option<u64>,
    ) -> bool {
        let existing = self.entries.get(key);
        match (cas, existing) {
            (Some(0), Some(_)) => return false,
            (Some(n), Some(e)) if n != 0 && e.modify_index != n => return false,
            (Some(n), None) if n != 0 => return false,
            _ => {}
        }
        let create_index = existing.map_or(idx, |e| e.create_index);
        let lock_index = existing.map_or(0, |e| e.lock_index);
        self.entries.insert(
            key.to_owned(),
            KvEntry {
                value,
                flags,
                create_index,
                modify_index: idx,
                lock_index,
            },
        );
        self.kvs_index = idx;
        true
    }

    /// Deletes `key`. Always `true`, except a CAS (`Some(n)`, n > 0) mismatch on an existing
    /// key, which is `false` (Consul's `kvsDeleteCASTxn`).
    pub(crate) fn delete(&mut self, idx: u64, key: &str, cas: Option<u64>) -> bool {
        if let (Some(n), Some(e)) = (cas, self.entries.get(key)) {
            if e.modify_index != n {
                return false;
            }
        }
        if self.entries.remove(key).is_some() {
            self.tombstones.insert(key.to_owned(), idx);
            self.kvs_index = idx;
            self.tombstones_index = idx;
        }
        true
    }

    /// Deletes every key under `prefix` (an empty prefix deletes everything). Always `true`.
    pub(crate) fn delete_tree(&mut self, idx: u64, prefix: &str) -> bool {
        let doomed: Vec<String> = self.under(prefix).map(|(k, _)| k.clone()).collect();
        for key in &doomed {
            self.entries.remove(key);
            self.tombstones.insert(key.clone(), idx);
        }
        if !doomed.is_empty() {
            self.kvs_index = idx;
            self.tombstones_index = idx;
        }
        true
    }

    /// Drops all tombstones (Consul reaps them after `tombstone_ttl`); prefix indexes can drop.
    pub(crate) fn reap_tombstones(&mut self) {
        self.tombstones.clear();
    }

    /// Clamps every stored index to at most `to`.
    pub(crate) fn clamp(&mut self, to: u64) {
        for e in self.entries.values_mut() {
            e.create_index = e.create_index.min(to);
            e.modify_index = e.modify_index.min(to);
        }
        for t in self.tombstones.values_mut() {
            *t = (*t).min(to);
        }
        self.kvs_index = self.kvs_index.min(to);
        self.tombstones_index = self.tombstones_index.min(to);
    }

    fn table_index(&self) -> u64 {
        self.kvs_index.max(self.tombstones_index)
    }

    fn under<'a>(
        &'a self,
        prefix: &'a str,
    ) -> impl Iterator<Item = (&'a String, &'a KvEntry)> + 'a {
        self.entries
            .range::<str, _>((
                std::ops::Bound::Included(prefix),
                std::ops::Bound::Unbounded,
            ))
            .take_while(move |(k, _)| k.starts_with(prefix))
    }

    fn prefix_index(&self, prefix: &str) -> u64 {
        if prefix.is_empty() {
            return self.table_index();
        }
        let live = self.under(prefix).map(|(_, e)| e.modify_index).max();
        let dead = self
            .tombstones
            .range::<str, _>((
                std::ops::Bound::Included(prefix),
                std::ops::Bound::Unbounded,
            ))
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(_, i)| *i)
            .max();
        match live.max(dead) {
            Some(i) if i > 0 => i,
            _ => self.table_index(),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn cas_rules() {
        let mut kv = Kv::default();
        assert!(
            !kv.put(5, "k", b"x".to_vec(), 0, Some(3)),
            "cas=N on a missing key fails"
        );
        assert!(kv.put(6, "k", b"a".to_vec(), 0, Some(0)), "cas=0 creates");
        assert!(
            !kv.put(7, "k", b"b".to_vec(), 0, Some(0)),
            "cas=0 on an existing key fails"
        );
        assert!(!kv.put(8, "k", b"b".to_vec(), 0, Some(5)));
        assert!(kv.put(9, "k", b"b".to_vec(), 0, Some(6)));
        let e = kv.get("k").0.unwrap();
        assert_eq!((e.create_index, e.modify_index), (6, 9));
        assert!(!kv.delete(10, "k", Some(6)), "delete cas mismatch");
        assert!(kv.delete(11, "k", Some(9)));
        assert!(
            kv.delete(12, "missing", Some(4)),
            "delete of a missing key is true"
        );
    }

    #[test]
    fn prefix_index_includes_tombstones_until_reaped() {
        let mut kv = Kv::default();
        kv.put(5, "w/a", b"1".to_vec(), 0, None);
        kv.put(6, "w/b", b"1".to_vec(), 0, None);
        kv.put(7, "other", b"1".to_vec(), 0, None);
        assert_eq!(kv.list("w/").1, 6);
        kv.delete(8, "w/b", None);
        assert_eq!(kv.list("w/").1, 8);
        kv.reap_tombstones();
        assert_eq!(kv.list("w/").1, 5);
        // Nothing under the prefix: the table index.
        assert_eq!(kv.list("none/").1, 8);
        assert_eq!(kv.get("missing").1, 8);
    }

    #[test]
    fn keys_truncate_after_separator() {
        let mut kv = Kv::default();
        for (i, k) in ["w/a", "w/sub/x", "w/sub/y", "wz"].iter().enumerate() {
            kv.put(i as u64 + 1, k, Vec::new(), 0, None);
        }
        assert_eq!(kv.keys("w/", Some("/")).0, vec!["w/a", "w/sub/"]);
        assert_eq!(kv.keys("w", Some("/")).0, vec!["w/", "wz"]);
        assert_eq!(kv.keys("w/", None).0, vec!["w/a", "w/sub/x", "w/sub/y"]);
    }

    #[test]
    fn recreate_gets_new_create_index() {
        let mut kv = Kv::default();
        kv.put(5, "k", b"1".to_vec(), 0, None);
        kv.put(6, "k", b"2".to_vec(), 0, None);
        kv.delete(7, "k", None);
        kv.put(8, "k", b"3".to_vec(), 0, None);
        assert_eq!(kv.get("k").0.unwrap().create_index, 8);
    }
}
