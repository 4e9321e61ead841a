//! The derived keyspace: a column family in the journal's database where layers above keep
//! data computed from deltas (materialized views), so that it shares the journal's
//! durability and can be written atomically with its own progress markers.

use rocksdb::{WriteBatch, WriteOptions};

use crate::layout::CF_DERIVED;
use crate::{Durability, KeyValue, Result, Store};

/// One change to the derived keyspace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DerivedWrite {
    /// Set a key.
    Put(Vec<u8>, Vec<u8>),
    /// Remove a key.
    Delete(Vec<u8>),
    /// Remove every key starting with this prefix.
    DeletePrefix(Vec<u8>),
}

/// The smallest key greater than every key starting with `prefix`, if there is one.
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

impl Store {
    /// Reads one key of the derived keyspace.
    pub fn derived_get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.inner.db.get_cf(self.cf_handle(CF_DERIVED), key)?)
    }

    /// Applies changes to the derived keyspace in one atomic write.
    pub fn derived_write(&self, writes: &[DerivedWrite]) -> Result<()> {
        let cf = self.cf_handle(CF_DERIVED);
        let mut batch = WriteBatch::default();
        let mut range_deleted = false;
        for write in writes {
            match write {
                DerivedWrite::Put(k, v) => batch.put_cf(cf, k, v),
                DerivedWrite::Delete(k) => batch.delete_cf(cf, k),
                DerivedWrite::DeletePrefix(prefix) => {
                    // Nothing to delete: no tombstone (see below for why that matters).
                    if self.derived_scan(prefix, None).next().is_none() {
                        continue;
                    }
                    match prefix_end(prefix) {
                        Some(end) => {
                            batch.delete_range_cf(cf, prefix, &end);
                            range_deleted = true;
                        }
                        None => {
                            for entry in self.derived_scan(prefix, None) {
                                batch.delete_cf(cf, entry?.0);
                            }
                        }
                    }
                }
            }
        }
        let mut opts = WriteOptions::default();
        opts.set_sync(self.config().durability == Durability::Fsync);
        self.inner.db.write_opt(batch, &opts)?;
        if range_deleted {
            // While a range tombstone sits in the memtable, every point read of the column
            // family rebuilds a tombstone iterator (measured: most of the cost of a view
            // update). Flushed into a table file, the tombstone is cached once per file.
            self.inner.db.flush_cf(cf)?;
        }
        Ok(())
    }

    /// Key-value pairs of the derived keyspace that start with `prefix`, in key order,
    /// starting after `after` (or from the first).
    pub fn derived_scan<'a>(
        &'a self,
        prefix: &'a [u8],
        after: Option<&[u8]>,
    ) -> impl Iterator<Item = Result<KeyValue>> + 'a {
        let start = match after {
            // The smallest key after `after` is `after` followed by a zero byte.
            Some(a) => [a, &[0u8]].concat(),
            None => prefix.to_vec(),
        };
        self.index_from(CF_DERIVED, start, prefix.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_keys_put_scan_delete_and_page() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store
            .derived_write(&[
                DerivedWrite::Put(b"r/a".to_vec(), b"1".to_vec()),
                DerivedWrite::Put(b"r/b".to_vec(), b"2".to_vec()),
                DerivedWrite::Put(b"r/c".to_vec(), b"3".to_vec()),
                DerivedWrite::Put(b"s/x".to_vec(), b"9".to_vec()),
            ])
            .unwrap();
        assert_eq!(store.derived_get(b"r/b").unwrap(), Some(b"2".to_vec()));
        let keys = |after: Option<&[u8]>| -> Vec<Vec<u8>> {
            store
                .derived_scan(b"r/", after)
                .map(|e| e.unwrap().0.to_vec())
                .collect()
        };
        assert_eq!(
            keys(None),
            vec![b"r/a".to_vec(), b"r/b".to_vec(), b"r/c".to_vec()]
        );
        assert_eq!(keys(Some(b"r/a")), vec![b"r/b".to_vec(), b"r/c".to_vec()]);
        store
            .derived_write(&[DerivedWrite::Delete(b"r/b".to_vec())])
            .unwrap();
        assert_eq!(keys(None).len(), 2);
        store
            .derived_write(&[DerivedWrite::DeletePrefix(b"r/".to_vec())])
            .unwrap();
        assert!(keys(None).is_empty());
        assert_eq!(store.derived_get(b"s/x").unwrap(), Some(b"9".to_vec()));
    }

    #[test]
    fn prefix_end_is_the_next_prefix() {
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(&[1, 255]), Some(vec![2]));
        assert_eq!(prefix_end(&[255, 255]), None);
    }
}
