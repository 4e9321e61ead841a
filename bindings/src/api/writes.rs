//! Writes: deltas the node signs ([`NodeApi::write`], [`NodeApi::transaction`]), deltas
//! their authors signed ([`NodeApi::submit`], [`NodeApi::import`]), and the wait for
//! confidence that answers them.

use std::time::Duration;

use hypha_delta_store::{PutOutcome, StampedDelta};
use hypha_primitives::{Delta, DeltaBuilder, DeltaId, Pointer, Seq};
use rayon::prelude::*;
use serde_json::{json, Value};

use super::{blocking, Error, NodeApi, Result};

/// Longest a write may wait for confidence.
const MAX_WAIT: Duration = Duration::from_secs(60);

/// How long a write waits for its confidence, and for how many peers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Wait {
    /// Peers that must hold the write before it answers (0: answer at once).
    pub min_confidence: usize,
    /// Longest to wait (capped at a minute).
    pub timeout: Duration,
}

impl Default for Wait {
    /// No wait, and five seconds when a confidence is asked for.
    fn default() -> Wait {
        Wait {
            min_confidence: 0,
            timeout: Duration::from_secs(5),
        }
    }
}

/// What a write reached: its id, this node's origin seq for it, and how many peers hold it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriteAnswer {
    /// The delta written.
    pub id: DeltaId,
    /// This node's origin stamp seq on it.
    pub seq: Option<Seq>,
    /// Peers known to hold it when the answer was given.
    pub confidence: usize,
    /// Whether that met the confidence asked for.
    pub reached: bool,
}

impl WriteAnswer {
    /// `{"id", "seq", "confidence", "reached"}`.
    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id.to_string(),
            "seq": self.seq.map(Seq::get),
            "confidence": self.confidence,
            "reached": self.reached,
        })
    }
}

/// A local write's delta that does not validate is the caller's input at fault.
fn local_write_error(e: hypha_delta_store::Error) -> Error {
    match e {
        hypha_delta_store::Error::Invalid { source, .. } => Error::bad_input(source),
        e => e.into(),
    }
}

impl NodeApi {
    /// Signs `pointers` with the node key at the node's next clock reading, stores the
    /// delta with this node's origin stamp, and waits as `wait` says.
    pub async fn write(&self, pointers: Vec<Pointer>, wait: Wait) -> Result<WriteAnswer> {
        let delta = self.writer.sign(pointers).map_err(local_write_error)?;
        self.submit_one(delta, wait).await
    }

    /// Stores one delta signed by its author (verified like any delta from the network)
    /// with this node's stamp, and waits as `wait` says.
    pub async fn submit_one(&self, delta: Delta, wait: Wait) -> Result<WriteAnswer> {
        let id = delta.id();
        let submitted = self.submit(vec![delta]).await?;
        let seq = submitted
            .first()
            .and_then(|(_, outcome)| outcome.local_seq());
        self.wait_for(id, seq, wait).await
    }

    /// Writes a complete transaction atomically: one delta per entry of `writes`, each
    /// joining a fresh transaction entity, the first also declaring its size; all stored in
    /// one write or none. Answers the transaction's id and each member's answer.
    pub async fn transaction(
        &self,
        writes: Vec<Vec<Pointer>>,
        wait: Wait,
    ) -> Result<(String, Vec<WriteAnswer>)> {
        use hypha_views::{TRANSACTION, TRANSACTION_MEMBER, TRANSACTION_SIZE};
        if writes.is_empty() {
            return Err(Error::bad_input("a transaction needs at least one write"));
        }
        let size = writes.len() as i64;
        let mut deltas = Vec::with_capacity(writes.len());
        let mut transaction = String::new();
        for (n, pointers) in writes.into_iter().enumerate() {
            let time = self.writer.tick();
            if n == 0 {
                // Unique per node and clock reading.
                transaction = format!("tx:{}:{time}", self.key.host_id());
            }
            let mut builder = DeltaBuilder::new(time)
                .pointers(pointers)
                .pointer(Pointer::entity(
                    TRANSACTION,
                    transaction.clone(),
                    TRANSACTION_MEMBER,
                ));
            if n == 0 {
                builder = builder
                    .pointer(Pointer::entity(
                        TRANSACTION,
                        transaction.clone(),
                        TRANSACTION_SIZE,
                    ))
                    .pointer(Pointer::value(TRANSACTION_SIZE, size));
            }
            deltas.push(builder.sign(&self.key).map_err(Error::bad_input)?);
        }
        let submitted = self.submit(deltas).await?;
        let mut answers = Vec::with_capacity(submitted.len());
        for (id, outcome) in submitted {
            answers.push(self.wait_for(id, outcome.local_seq(), wait).await?);
        }
        Ok((transaction, answers))
    }

    /// Verifies deltas signed by their authors, stamps them with this node's origin seqs
    /// and stores them, all or nothing; answers each id with what storing it did (whether
    /// it was new, and this node's stamp on it).
    pub async fn submit(&self, deltas: Vec<Delta>) -> Result<Vec<(DeltaId, PutOutcome)>> {
        let ids: Vec<DeltaId> = deltas.iter().map(Delta::id).collect();
        let (store, key) = (self.store.clone(), self.key.clone());
        let outcomes = blocking(move || Ok(store.put_local_batch(deltas, &key)?)).await?;
        Ok(ids.into_iter().zip(outcomes).collect())
    }

    /// Imports JSON lines of deltas signed by their authors, all or nothing: stamped by
    /// this node, or, when the lines carry origin stamps (as an export prints them), kept
    /// with those (a body holds one kind or the other). Answers each id and whether it was
    /// new; an error names the line (`line N: …`).
    pub async fn import(&self, body: String) -> Result<Vec<(DeltaId, bool)>> {
        let (store, key) = (self.store.clone(), self.key.clone());
        // Parsing thousands of lines is a good share of the work: it runs on the blocking
        // pool, in parallel, beside the store's verification, not on the async workers.
        blocking(move || {
            let (lines, deltas) = parse_lines(&body)?;
            if deltas.is_empty() {
                return Err(Error::bad_input("no deltas in the body"));
            }
            let stamped = deltas.iter().filter(|d| !d.stamps.is_empty()).count();
            if stamped != 0 && stamped != deltas.len() {
                return Err(Error::bad_input(
                    "some lines carry origin stamps and some do not: send them in separate requests",
                ));
            }
            let ids: Vec<DeltaId> = deltas.iter().map(|d| d.delta.id()).collect();
            let stored = if stamped == 0 {
                store.put_local_batch(deltas.into_iter().map(|d| d.delta).collect(), &key)
            } else {
                store.put_batch(deltas)
            };
            match stored {
                Ok(outcomes) => Ok(ids
                    .into_iter()
                    .zip(outcomes)
                    .map(|(id, outcome)| (id, outcome.is_new()))
                    .collect()),
                // Name the line, not the position in the batch.
                Err(hypha_delta_store::Error::Invalid { index, source }) => Err(
                    Error::bad_input(format!("line {}: {source}", lines[index])),
                ),
                Err(hypha_delta_store::Error::UnknownAuthor { index, author }) => Err(
                    Error::bad_input(format!("line {}: unknown author {author}", lines[index])),
                ),
                Err(e) => Err(e.into()),
            }
        })
        .await
    }

    /// Waits until `wait.min_confidence` peers hold stored delta `id`, which this node
    /// stamped as `seq` (as [`NodeApi::submit`] answers), or `wait.timeout` passes; with
    /// 0, answers at once with the confidence known now. Without a stamp of this node
    /// there is nothing to wait for: confidence 0.
    pub async fn wait_for(&self, id: DeltaId, seq: Option<Seq>, wait: Wait) -> Result<WriteAnswer> {
        let host = self.key.host_id();
        let (confidence, reached) = match (&self.network, seq) {
            (Some(network), Some(seq)) if wait.min_confidence > 0 => {
                network
                    .await_confidence(host, seq, wait.min_confidence, wait.timeout.min(MAX_WAIT))
                    .await
            }
            (Some(network), Some(seq)) => (network.holders(host, seq), true),
            _ => (0, wait.min_confidence == 0),
        };
        Ok(WriteAnswer {
            id,
            seq,
            confidence,
            reached,
        })
    }
}

/// Parses the non-blank lines of an import body, in parallel: their line numbers and
/// deltas, or an error naming the first line that does not parse.
fn parse_lines(body: &str) -> Result<(Vec<usize>, Vec<StampedDelta>)> {
    let lines: Vec<(usize, &str)> = body
        .lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(n, line)| (n + 1, line))
        .collect();
    let parsed: Vec<_> = lines
        .par_iter()
        .map(|(n, line)| StampedDelta::from_json_str(line).map_err(|e| (*n, e)))
        .collect();
    let mut deltas = Vec::with_capacity(parsed.len());
    for delta in parsed {
        deltas.push(delta.map_err(|(n, e)| Error::bad_input(format!("line {n}: {e}")))?);
    }
    Ok((lines.into_iter().map(|(n, _)| n).collect(), deltas))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_import_line_that_does_not_parse_is_named() {
        let err = parse_lines("\n{\"not\": \"a delta\"}\n").unwrap_err();
        assert!(err.is_rejected_input());
        assert!(err.to_string().starts_with("line 2: "), "{err}");
        let (lines, deltas) = parse_lines("\n\n").unwrap();
        assert!(lines.is_empty() && deltas.is_empty());
    }
}
