//! `hypha import` and `hypha export`: deltas in and out as JSON lines, through a running
//! node or straight into a data folder, with progress bars; and the conversion of
//! rhizome's deltas (re-signed by an import key, with a map of old ids to new).

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;

use anyhow::{bail, Context, Result};
use hypha_delta_store::{Arrival, StampedDelta};
use hypha_primitives::{DeltaBuilder, DeltaId, Filter, Hlc, KeyPair, Pointer};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};

use crate::cli::{ExportArgs, ImportArgs, ImportFormat};
use crate::commands::Target;

/// Deltas stored (or sent to the node) per batch.
const IMPORT_BATCH: usize = 1_000;
/// Deltas asked of a node per export page.
const EXPORT_PAGE: usize = 5_000;

/// `hypha import`.
pub(crate) fn import(target: Target, data: &Path, args: ImportArgs) -> Result<()> {
    let (input, size): (Box<dyn BufRead>, Option<u64>) = match &args.file {
        Some(path) => {
            let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
            let size = file.metadata().map(|m| m.len()).ok();
            (Box::new(BufReader::new(file)), size)
        }
        None => (Box::new(BufReader::new(std::io::stdin())), None),
    };
    let mut rhizome = match args.format {
        ImportFormat::Hypha if args.key.is_some() || args.map.is_some() => bail!(
            "--key and --map are for --format rhizome: Hypha lines are already signed by their authors"
        ),
        ImportFormat::Hypha => None,
        ImportFormat::Rhizome => {
            let key = match (&args.key, &target) {
                (Some(path), _) => hypha_delta_store::read_key_file(path)?,
                // The node's key is the node's: a command talking to it never reads it,
                // nor makes one up in a folder that is not the node's.
                (None, Target::Node(node)) => bail!(
                    "importing rhizome deltas through the node at {} needs --key FILE (a `hypha keygen` key) to sign them",
                    node.url()
                ),
                (None, Target::Folder(_)) => hypha_delta_store::load_or_create_node_key(data)?,
            };
            Some(RhizomeImport::new(key, args.map.as_deref())?)
        }
    };
    let bar = progress(size, "importing", "bytes");
    let mut sink = ImportSink {
        target,
        data,
        batch: Vec::new(),
        imported: 0,
    };
    for (n, line) in input.lines().enumerate() {
        let line = line.context("reading the input")?;
        bar.inc(line.len() as u64 + 1);
        if line.trim().is_empty() {
            continue;
        }
        let number = n + 1;
        let item = match &mut rhizome {
            None => StampedDelta::from_json_str(&line).map_err(anyhow::Error::from),
            Some(rhizome) => rhizome.convert(&line),
        }
        .with_context(|| format!("line {number}"))?;
        sink.push(number, item, rhizome.as_mut())?;
    }
    sink.flush(rhizome.as_mut())?;
    bar.finish_and_clear();
    eprintln!("imported {} deltas", sink.imported);
    Ok(())
}

/// A progress bar on stderr (hidden when stderr is not a terminal): of `total` units when
/// known, a spinner otherwise.
fn progress(total: Option<u64>, what: &str, unit: &str) -> ProgressBar {
    match total {
        Some(total) => ProgressBar::new(total).with_style(
            ProgressStyle::with_template(&format!(
                "{what} {{bar:40}} {{pos}}/{{len}} {unit} ({{eta}})"
            ))
            .expect("valid template"),
        ),
        None => ProgressBar::new_spinner().with_style(
            ProgressStyle::with_template(&format!("{what} {{spinner}} {{pos}} {unit}"))
                .expect("valid template"),
        ),
    }
}

/// Batches of parsed lines on their way to the journal or the node.
struct ImportSink<'a> {
    target: Target,
    data: &'a Path,
    /// (line number, delta) not yet stored.
    batch: Vec<(usize, StampedDelta)>,
    imported: usize,
}

impl ImportSink<'_> {
    fn push(
        &mut self,
        line: usize,
        item: StampedDelta,
        rhizome: Option<&mut RhizomeImport>,
    ) -> Result<()> {
        // Stamped and unstamped deltas are stored differently: never in one batch.
        let switches = self
            .batch
            .last()
            .is_some_and(|(_, last)| last.stamps.is_empty() != item.stamps.is_empty());
        if switches || self.batch.len() >= IMPORT_BATCH {
            self.flush(rhizome)?;
        }
        self.batch.push((line, item));
        Ok(())
    }

    /// Stores the batch, all or nothing, and prints each delta's id.
    fn flush(&mut self, rhizome: Option<&mut RhizomeImport>) -> Result<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(&mut self.batch);
        match &self.target {
            Target::Folder(store) => {
                let lines: Vec<usize> = batch.iter().map(|(n, _)| *n).collect();
                let items: Vec<StampedDelta> = batch.iter().map(|(_, d)| d.clone()).collect();
                let stored = if items[0].stamps.is_empty() {
                    let key = hypha_delta_store::load_or_create_node_key(self.data)?;
                    store.put_local_batch(items.into_iter().map(|i| i.delta).collect(), &key)
                } else {
                    store.put_batch(items)
                };
                if let Err(e) = stored {
                    return Err(match e {
                        hypha_delta_store::Error::Invalid { index, source } => {
                            anyhow::anyhow!("line {}: {source}", lines[index])
                        }
                        hypha_delta_store::Error::UnknownAuthor { index, author } => {
                            anyhow::anyhow!("line {}: unknown author {author}", lines[index])
                        }
                        e => e.into(),
                    });
                }
            }
            Target::Node(node) => {
                let body: String = batch
                    .iter()
                    .map(|(_, d)| stamped_json(d).to_string() + "\n")
                    .collect();
                if let Err(e) = node.post("/deltas", "application/x-ndjson", &body) {
                    // The node names the line of its request (`line N: …`): name ours.
                    let message = format!("{e:#}");
                    let line = message
                        .split_once("line ")
                        .and_then(|(_, rest)| rest.split_once(':'))
                        .and_then(|(n, _)| n.parse::<usize>().ok())
                        .and_then(|n| batch.get(n.wrapping_sub(1)));
                    return Err(match line {
                        Some((line, _)) => e.context(format!("line {line}")),
                        None => e,
                    });
                }
            }
        }
        let mut out = std::io::stdout().lock();
        for (_, item) in &batch {
            writeln!(out, "{}", item.delta.id()).context("writing to stdout")?;
        }
        self.imported += batch.len();
        if let Some(rhizome) = rhizome {
            rhizome.record(batch.iter().map(|(_, d)| d.delta.id()))?;
        }
        Ok(())
    }
}

/// A delta with its stamps as JSON (the form `POST /deltas` and `export` use).
fn stamped_json(item: &StampedDelta) -> Value {
    let mut json = item.delta.to_json();
    if !item.stamps.is_empty() {
        json["stamps"] = item.stamps.iter().map(|s| s.to_json()).collect();
    }
    json
}

/// Converts rhizome deltas, `{id, timeCreated, host, creator, pointers: [{localContext,
/// target, targetContext}]}`, into Hypha deltas signed by the import key.
///
/// A pointer with a `targetContext` points at an entity; one whose target is the id of a
/// rhizome delta already imported (in this run, or listed in the map file) points at that
/// delta's new id, so negations keep their meaning; any other target is a primitive value.
/// `timeCreated` becomes the delta's time. rhizome's `creator` and `host` are not part of
/// the new delta (the import key signs it) and are kept in the map file.
struct RhizomeImport {
    key: KeyPair,
    ids: HashMap<String, DeltaId>,
    /// Map lines of converted deltas not yet stored, by new id.
    pending: HashMap<DeltaId, Value>,
    map: Option<File>,
}

impl RhizomeImport {
    fn new(key: KeyPair, map: Option<&Path>) -> Result<RhizomeImport> {
        let mut ids = HashMap::new();
        let map = match map {
            None => None,
            Some(path) => {
                if path.exists() {
                    let file = File::open(path)
                        .with_context(|| format!("reading the map {}", path.display()))?;
                    for (n, line) in BufReader::new(file).lines().enumerate() {
                        let entry: Value = serde_json::from_str(&line?)
                            .with_context(|| format!("{} line {}", path.display(), n + 1))?;
                        let (Some(old), Some(new)) =
                            (entry["rhizome"].as_str(), entry["id"].as_str())
                        else {
                            bail!(
                                "{} line {}: expected {{\"rhizome\", \"id\"}}",
                                path.display(),
                                n + 1
                            );
                        };
                        ids.insert(old.to_owned(), new.parse()?);
                    }
                }
                Some(
                    std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(path)
                        .with_context(|| format!("opening the map {}", path.display()))?,
                )
            }
        };
        Ok(RhizomeImport {
            key,
            ids,
            pending: HashMap::new(),
            map,
        })
    }

    fn convert(&mut self, line: &str) -> Result<StampedDelta> {
        hypha_primitives::check_integer_literals(line)?;
        let value: Value =
            serde_json::from_str(line).map_err(|e| hypha_primitives::Error::Json(e.to_string()))?;
        let old = value["id"]
            .as_str()
            .context("a rhizome delta needs a string \"id\"")?
            .to_owned();
        let time = value["timeCreated"]
            .as_u64()
            .context("a rhizome delta needs a numeric \"timeCreated\" (ms)")?;
        let pointers = value["pointers"]
            .as_array()
            .context("a rhizome delta needs a \"pointers\" array")?
            .iter()
            .enumerate()
            .map(|(i, p)| self.pointer(p).with_context(|| format!("pointer {i}")))
            .collect::<Result<Vec<_>>>()?;
        let delta = DeltaBuilder::new(Hlc::new(time, 0))
            .pointers(pointers)
            .sign(&self.key)?;
        self.ids.insert(old.clone(), delta.id());
        self.pending.insert(
            delta.id(),
            json!({"rhizome": old, "id": delta.id().to_string(), "creator": value["creator"], "host": value["host"]}),
        );
        Ok(delta.into())
    }

    fn pointer(&self, pointer: &Value) -> Result<Pointer> {
        let local = pointer["localContext"]
            .as_str()
            .context("\"localContext\" must be a string")?;
        let target_context = pointer.get("targetContext").and_then(Value::as_str);
        Ok(match &pointer["target"] {
            Value::String(s) => match (self.ids.get(s), target_context) {
                (Some(id), _) => Pointer::delta(local, *id),
                (None, Some(context)) => Pointer::entity(local, s.as_str(), context),
                (None, None) => Pointer::value(local, s.as_str()),
            },
            // One reading of numbers for every input: integers must fit in i64.
            number @ Value::Number(_) => {
                Pointer::value(local, hypha_primitives::Primitive::from_json(number)?)
            }
            Value::Bool(b) => Pointer::value(local, *b),
            other => bail!("unsupported target {other} (strings, numbers and booleans are)"),
        })
    }

    /// Appends the map lines of stored deltas.
    fn record(&mut self, stored: impl Iterator<Item = DeltaId>) -> Result<()> {
        for id in stored {
            if let (Some(line), Some(map)) = (self.pending.remove(&id), &mut self.map) {
                writeln!(map, "{line}").context("writing the map")?;
            }
        }
        Ok(())
    }
}

/// `hypha export`.
pub(crate) fn export(target: Target, args: ExportArgs) -> Result<()> {
    let filter = args
        .filter
        .as_deref()
        .map(Filter::from_json_str)
        .transpose()
        .context("--filter")?;
    let after = args.after.unwrap_or(0);
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut exported = 0usize;
    let mut emit = |item: &StampedDelta, line: &str, out: &mut dyn Write| -> Result<()> {
        if let Some(f) = &filter {
            if !f.matches(&item.delta.filter_document(&item.stamps)) {
                return Ok(());
            }
        }
        writeln!(out, "{line}").context("writing to stdout")?;
        exported += 1;
        Ok(())
    };
    match target {
        Target::Folder(store) => {
            let last = store.last_arrival()?.map_or(0, |a| a.get());
            let bar = progress(Some(last.saturating_sub(after)), "exporting", "deltas");
            for stored in store.scan_arrival(args.after.map(Arrival::new)) {
                let mut stored = [stored?];
                // Exported stamps carry their proofs, so that an import can check them.
                store.prove_stored(&mut stored)?;
                let [stored] = stored;
                bar.inc(1);
                let item = StampedDelta {
                    delta: stored.delta.clone(),
                    stamps: stored.stamps.clone(),
                };
                emit(&item, &stored.to_json().to_string(), &mut out)?;
            }
            bar.finish_and_clear();
        }
        Target::Node(node) => {
            let last = node.get("/health")?["deltas"].as_u64().unwrap_or(0);
            let bar = progress(Some(last.saturating_sub(after)), "exporting", "deltas");
            let mut cursor = after;
            loop {
                let page = node.get_text(&format!("/deltas?after={cursor}&limit={EXPORT_PAGE}"))?;
                if page.trim().is_empty() {
                    break;
                }
                for line in page.lines().filter(|l| !l.trim().is_empty()) {
                    let value: Value = serde_json::from_str(line).context("the node's answer")?;
                    cursor = value["arrival"]
                        .as_u64()
                        .context("an exported delta without its arrival")?;
                    bar.inc(1);
                    emit(&StampedDelta::from_json(&value)?, line, &mut out)?;
                }
            }
            bar.finish_and_clear();
        }
    }
    out.flush().context("writing to stdout")?;
    drop(out);
    eprintln!("exported {exported} deltas");
    Ok(())
}
