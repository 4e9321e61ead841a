//! The one-shot commands: keygen, write, import, get, scan, schema, entity, view,
//! rebuild, status open the data folder directly, which RocksDB locks against a running
//! node (the store's error says so); query, subscribe and peers talk to a running node
//! (`client.rs`).

use std::io::{BufRead, Read, Write};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use hypha_delta_store::{
    load_or_create_node_key, node_key_path, write_key_file, Arrival, StampedDelta, Store,
    StoredDelta,
};
use hypha_primitives::{
    Delta, DeltaBuilder, DeltaId, EntityId, Filter, Hlc, HlcClock, KeyPair, Pointer, Schema, Stamp,
};
use hypha_views::{load_index, AsOf, LocalOnly, Materializer, Resolver, SchemaSet};

use crate::cli::{Cli, Command, ScanArgs, ViewArgs};

pub(crate) fn run(cli: Cli) -> Result<()> {
    let data = &cli.global.data;
    match cli.command {
        Command::Node(args) => crate::node::run(data, args),
        Command::Query {
            document,
            variables,
        } => crate::client::query(&cli.global.node, &document, variables.as_deref()),
        Command::Subscribe { filter, after } => {
            crate::client::subscribe(&cli.global.node, filter.as_deref(), after)
        }
        Command::Peers => crate::client::peers(&cli.global.node),
        Command::Keygen { out } => {
            let path = out.unwrap_or_else(|| node_key_path(data));
            let key = KeyPair::generate();
            write_key_file(&path, &key)?;
            println!("{}", key.host_id());
            eprintln!("wrote {}", path.display());
            Ok(())
        }
        Command::Write { pointers } => {
            let text = match pointers {
                Some(text) => text,
                None => read_stdin()?,
            };
            let pointers = Pointer::list_from_json_str(&text).context("reading the pointers")?;
            println!("{}", sign_and_store(data, pointers)?);
            Ok(())
        }
        Command::Import => {
            let store = Store::open(data)?;
            let stdin = std::io::stdin();
            for (n, line) in stdin.lock().lines().enumerate() {
                let line = line.context("reading stdin")?;
                if line.trim().is_empty() {
                    continue;
                }
                let item = parse_import_line(&line).with_context(|| format!("line {}", n + 1))?;
                let id = item.delta.id();
                store
                    .put_batch(vec![item])
                    .with_context(|| format!("line {}", n + 1))?;
                println!("{id}");
            }
            Ok(())
        }
        Command::Get { id } => {
            let id: DeltaId = id.parse()?;
            let store = Store::open(data)?;
            match store.get(id)? {
                Some(stored) => print_json_line(&stored),
                None => bail!("no delta with id {id} in {}", data.display()),
            }
        }
        Command::Scan(args) => scan(data, args),
        Command::Schema { definition } => {
            let text = match definition {
                Some(text) => text,
                None => read_stdin()?,
            };
            let value: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| hypha_primitives::Error::Json(e.to_string()))?;
            let schema = Schema::from_json(&value)?;
            let id = sign_and_store(data, schema.to_pointers())?;
            println!("{id}");
            Ok(())
        }
        Command::Entity { id, at } => {
            let as_of = match at {
                Some(t) => AsOf::Time(t.parse::<Hlc>()?),
                None => AsOf::Now,
            };
            let store = Store::open(data)?;
            let entity = EntityId::new(id);
            let index = load_index(&store, std::slice::from_ref(&entity), as_of, 0)?;
            let schemas = SchemaSet::new();
            let view = Resolver::new(&index, &schemas, &LocalOnly).lossless(&entity);
            println!("{}", view.to_json());
            Ok(())
        }
        Command::View(args) => view(data, args),
        Command::Status => {
            let key = load_or_create_node_key(data)?;
            let store = Store::open(data)?;
            let coverage = hypha_net::Coverage::of_store(&store)?;
            let coverage: serde_json::Map<String, serde_json::Value> = coverage
                .vector()
                .iter()
                .map(|(host, seq)| (host.to_string(), seq.get().into()))
                .collect();
            let views = Materializer::open(store.clone())?;
            let status = serde_json::json!({
                "host": key.host_id().to_string(),
                "data": data.display().to_string(),
                "last_arrival": store.last_arrival()?.map(|a| a.get()),
                "coverage": coverage,
                "views": {
                    "cursor": views.cursor()?.map(|a| a.get()),
                    "types": views.schemas().map(|s| s.entity_type().to_owned()).collect::<Vec<_>>(),
                },
            });
            println!("{status}");
            Ok(())
        }
        Command::Rebuild => {
            let store = Store::open(data)?;
            let mut materializer = Materializer::open(store)?;
            let bar = indicatif::ProgressBar::new(0).with_style(
                indicatif::ProgressStyle::with_template(
                    "rebuilding views {bar:40} {pos}/{len} entities ({eta})",
                )
                .context("progress bar template")?,
            );
            materializer.rebuild(&mut |done, total| {
                bar.set_length(total);
                bar.set_position(done);
            })?;
            bar.finish();
            eprintln!("rebuilt views of {} entities", bar.position());
            Ok(())
        }
    }
}

/// Signs pointers with the node key at the node's next clock reading and stores the delta
/// with the node's origin stamp.
fn sign_and_store(data: &std::path::Path, pointers: Vec<Pointer>) -> Result<DeltaId> {
    let key = load_or_create_node_key(data)?;
    let store = Store::open(data)?;
    let mut clock = HlcClock::resume_after(
        store
            .last_by_author(key.author())?
            .map(|s| s.delta.time())
            .unwrap_or_default(),
    );
    let delta = DeltaBuilder::new(clock.tick(wall_ms()))
        .pointers(pointers)
        .sign(&key)?;
    store.put_local_batch(vec![delta.clone()], &key)?;
    Ok(delta.id())
}

fn view(data: &std::path::Path, args: ViewArgs) -> Result<()> {
    let filter = parse_filter(args.filter.as_deref())?;
    let store = Store::open(data)?;
    let mut materializer = Materializer::open(store)?;
    materializer.apply_pending()?;
    if !materializer
        .schemas()
        .any(|s| s.entity_type() == args.entity_type)
    {
        bail!(
            "no schema for type {:?} (register one with `hypha schema`)",
            args.entity_type
        );
    }
    let mut out = std::io::stdout().lock();
    if let Some(entity) = &args.entity {
        match materializer.record(&args.entity_type, entity)? {
            Some(record) => writeln!(out, "{record}")?,
            None => bail!("{entity} has no {} record", args.entity_type),
        }
        return Ok(());
    }
    let records = match &filter {
        Some(f) => {
            let result = materializer.query(&args.entity_type, f, args.limit)?;
            for (entity, error) in &result.errors {
                eprintln!("warning: record of {entity} could not be read: {error}");
            }
            result.records
        }
        None => materializer.records(&args.entity_type, args.after.as_deref(), args.limit)?,
    };
    for record in records {
        writeln!(out, "{record}")?;
    }
    Ok(())
}

fn scan(data: &std::path::Path, args: ScanArgs) -> Result<()> {
    let filter = parse_filter(args.filter.as_deref())?;
    let store = Store::open(data)?;
    let limit = args.limit.unwrap_or(usize::MAX);
    let deltas: Box<dyn Iterator<Item = hypha_delta_store::Result<StoredDelta>>> =
        match &args.entity {
            Some(entity) => Box::new(store.scan_entity(entity, args.context.as_deref())),
            None => Box::new(store.scan_arrival(args.after.map(Arrival::new))),
        };
    let mut seen = std::collections::HashSet::new();
    let mut printed = 0;
    for stored in deltas {
        if printed >= limit {
            break;
        }
        let stored = stored?;
        // An entity scan lists a delta once per property it is filed under.
        if !seen.insert(stored.delta.id()) {
            continue;
        }
        if let Some(f) = &filter {
            if !f.matches(&stored.delta.filter_document(&stored.stamps)) {
                continue;
            }
        }
        print_json_line(&stored)?;
        printed += 1;
    }
    Ok(())
}

/// A signed delta in its JSON form, or a stored delta as `get` and `scan` print it (whose
/// origin stamps are imported too, and whose local arrival position is not).
fn parse_import_line(line: &str) -> Result<StampedDelta> {
    let mut value: serde_json::Value =
        serde_json::from_str(line).map_err(|e| hypha_primitives::Error::Json(e.to_string()))?;
    let mut stamps = Vec::new();
    if let Some(map) = value.as_object_mut() {
        map.remove("arrival");
        if let Some(list) = map.remove("stamps") {
            let list = list.as_array().context("\"stamps\" must be an array")?;
            stamps = list
                .iter()
                .map(Stamp::from_json)
                .collect::<Result<_, _>>()?;
        }
    }
    Ok(StampedDelta {
        delta: Delta::from_json(&value)?,
        stamps,
    })
}

/// The `--filter` option, compiled.
fn parse_filter(text: Option<&str>) -> Result<Option<Filter>> {
    text.map(Filter::from_json_str)
        .transpose()
        .context("--filter")
}

fn print_json_line(stored: &StoredDelta) -> Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", stored.to_json()).context("writing to stdout")
}

fn read_stdin() -> Result<String> {
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .context("reading stdin")?;
    Ok(text)
}

/// The one place the node reads the wall clock.
pub(crate) fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
