//! The materialized keyspace's layout (`v1/…` in the journal's derived column family; see
//! `markdown/VIEWS.md`), and [`RecordReader`], which reads it for anyone but the
//! materializer.

use hypha_delta_store::{Arrival, Store};

use crate::lossy::Record;
use crate::stored::decode_record;
use crate::{Error, Result};

/// The arrival position of the last delta applied.
pub(crate) const CURSOR_KEY: &[u8] = b"v1/cursor";
/// The schema in force per type, under `v1/schema/<type>`.
pub(crate) const SCHEMA_PREFIX: &[u8] = b"v1/schema/";
/// The fingerprint of the stored schema definitions, kept beside them in the same writes
/// (`Materializer::definitions_fingerprint`).
pub(crate) const SCHEMAS_FINGERPRINT_KEY: &[u8] = b"v1/schemas-fingerprint";
/// Records, under `v1/rec/<type>\0<entity>`.
pub(crate) const RECORD_PREFIX: &[u8] = b"v1/rec/";

/// The key of `entity`'s record as an `entity_type`.
pub(crate) fn record_key(entity_type: &str, entity: &str) -> Vec<u8> {
    [
        RECORD_PREFIX,
        entity_type.as_bytes(),
        b"\0",
        entity.as_bytes(),
    ]
    .concat()
}

/// The (type, entity) of a record key.
pub(crate) fn split_record_key(key: &[u8]) -> Option<(String, String)> {
    let rest = key.strip_prefix(RECORD_PREFIX)?;
    let split = rest.iter().position(|b| *b == 0)?;
    Some((
        String::from_utf8_lossy(&rest[..split]).into_owned(),
        String::from_utf8_lossy(&rest[split + 1..]).into_owned(),
    ))
}

/// The prefix of every record of a type.
pub(crate) fn type_prefix(entity_type: &str) -> Vec<u8> {
    [RECORD_PREFIX, entity_type.as_bytes(), b"\0"].concat()
}

/// The cursor the views have applied up to, as stored.
pub(crate) fn read_cursor(store: &Store) -> Result<Option<Arrival>> {
    match store.derived_get(CURSOR_KEY)? {
        None => Ok(None),
        Some(bytes) => {
            let raw: [u8; 8] = bytes
                .as_slice()
                .try_into()
                .map_err(|_| Error::Corrupt(format!("cursor of {} bytes", bytes.len())))?;
            Ok(Some(Arrival::new(u64::from_be_bytes(raw))))
        }
    }
}

/// Read access to materialized records, for readers other than the materializer (the
/// GraphQL layer): it never writes, so any number can read beside the one materializer.
#[derive(Clone, Debug)]
pub struct RecordReader {
    pub(crate) store: Store,
}

impl RecordReader {
    /// The arrival position the materialized views have applied.
    pub fn cursor(&self) -> Result<Option<Arrival>> {
        read_cursor(&self.store)
    }

    /// The materialized record of `entity` as an `entity_type`.
    pub fn typed_record(&self, entity_type: &str, entity: &str) -> Result<Option<Record>> {
        match self.store.derived_get(&record_key(entity_type, entity))? {
            Some(bytes) => Ok(Some(decode_record(&bytes)?)),
            None => Ok(None),
        }
    }

    /// Up to `limit` typed records of a type, in entity order, after entity `after`.
    pub fn typed_records(
        &self,
        entity_type: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Record>> {
        let prefix = type_prefix(entity_type);
        let after_key = after.map(|a| record_key(entity_type, a));
        self.store
            .derived_scan(&prefix, after_key.as_deref())
            .take(limit)
            .map(|entry| decode_record(&entry?.1))
            .collect()
    }
}
