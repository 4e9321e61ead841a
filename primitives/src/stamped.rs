//! A delta with the origin stamps that travel with it: what peers exchange and what the
//! journal stores, and its JSON form.

use crate::{Delta, Stamp};

/// A delta with the origin stamps that travel with it.
#[derive(Clone, Debug, PartialEq)]
pub struct StampedDelta {
    /// The delta.
    pub delta: Delta,
    /// Origin stamps from the hosts that accepted it from a client.
    pub stamps: Vec<Stamp>,
}

impl From<Delta> for StampedDelta {
    fn from(delta: Delta) -> Self {
        Self {
            delta,
            stamps: Vec::new(),
        }
    }
}

impl StampedDelta {
    /// Parses a delta's JSON form, or a stored delta's as the journal prints it: its
    /// `stamps` are parsed (not verified; storing verifies them) and its `arrival`, which
    /// is local to the node that printed it, is ignored.
    pub fn from_json(value: &serde_json::Value) -> crate::Result<StampedDelta> {
        let mut value = value.clone();
        let mut stamps = Vec::new();
        if let Some(map) = value.as_object_mut() {
            map.remove("arrival");
            if let Some(list) = map.remove("stamps") {
                let list = list
                    .as_array()
                    .ok_or_else(|| crate::Error::Json("\"stamps\" must be an array".into()))?;
                stamps = list
                    .iter()
                    .map(Stamp::from_json)
                    .collect::<crate::Result<_>>()?;
            }
        }
        Ok(StampedDelta {
            delta: Delta::from_json(&value)?,
            stamps,
        })
    }

    /// [`StampedDelta::from_json`] of JSON text.
    pub fn from_json_str(text: &str) -> crate::Result<StampedDelta> {
        crate::check_integer_literals(text)?;
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| crate::Error::Json(e.to_string()))?;
        StampedDelta::from_json(&value)
    }
}
