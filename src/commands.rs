//! The one-shot commands. `get`, `scan`, `entity` and `rebuild` open the data folder
//! directly, which RocksDB locks against a running node (the store's error says so);
//! `query`, `subscribe` and `peers` talk to a running node (`client.rs`); `write`,
//! `schema`, `import`, `export`, `view` and `status` do either ([`Target`]).

use std::io::{Read, Write};

use anyhow::{bail, Context, Result};
use hypha_delta_store::{
    load_or_create_node_key, node_key_path, read_key_file, write_key_file, Arrival, LocalWriter,
    Store, StoredDelta,
};
use hypha_primitives::{DeltaId, EntityId, Filter, KeyPair, Pointer, Schema};
use hypha_views::{load_index, LocalOnly, Materializer, Resolver, SchemaSet};
use serde_json::{json, Value};

use crate::cli::{Cli, Command, Global, ScanArgs, SchemaCommand, ViewArgs, DEFAULT_NODE};
use crate::client::NodeClient;

/// Where a command that works either way runs: on the data folder, or through a node.
#[derive(Debug)]
pub(crate) enum Target {
    /// The data folder, opened by this process.
    Folder(Store),
    /// A running node's HTTP API.
    Node(NodeClient),
}

/// The node given with `--node`; else the data folder; else, when a node holds the folder
/// and the node answering at the default address has the folder's key, that node.
fn target(global: &Global) -> Result<Target> {
    if let Some(url) = &global.node {
        return Ok(Target::Node(NodeClient::new(url, global.token.clone())));
    }
    match Store::open(&global.data) {
        Ok(store) => Ok(Target::Folder(store)),
        Err(e @ hypha_delta_store::Error::Locked { .. }) => {
            let client = NodeClient::new(DEFAULT_NODE, global.token.clone());
            let host = read_key_file(&node_key_path(&global.data))
                .ok()
                .map(|k| k.host_id().to_string());
            match (host, client.get("/health")) {
                (Some(host), Ok(health)) if health["host"] == host.as_str() => {
                    Ok(Target::Node(client))
                }
                _ => Err(anyhow::Error::from(e)
                    .context("pass --node with the HTTP address of the node using this folder")),
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// [`target`] for a command that only reads: a data folder that holds no journal is an
/// error (a mistyped `--data` would otherwise read as an empty store, and be created).
fn reading(global: &Global) -> Result<Target> {
    if global.node.is_none() {
        must_exist(&global.data)?;
    }
    target(global)
}

/// The data folder, for a command that reads it directly and never a node.
fn folder_only(global: &Global, verb: &str) -> Result<Store> {
    if let Some(node) = &global.node {
        bail!(
            "`hypha {verb}` reads the data folder, not a node ({node}): drop --node, and stop the node that holds the folder"
        );
    }
    must_exist(&global.data)?;
    Ok(Store::open(&global.data)?)
}

/// An error unless `data` holds a journal.
fn must_exist(data: &std::path::Path) -> Result<()> {
    if data.join("journal").is_dir() {
        Ok(())
    } else {
        bail!(
            "no journal in {}: is --data the right folder? (`hypha write`, `import` or `node` make one)",
            data.display()
        )
    }
}

pub(crate) fn run(cli: Cli) -> Result<()> {
    let global = &cli.global;
    let data = &global.data;
    let node = || {
        NodeClient::new(
            global.node.as_deref().unwrap_or(DEFAULT_NODE),
            global.token.clone(),
        )
    };
    match cli.command {
        Command::Node(args) => crate::node::run(data, global.token.clone(), args),
        Command::Query {
            document,
            variables,
        } => crate::client::query(&node(), &document, variables.as_deref()),
        Command::Subscribe { filter, after } => {
            crate::client::subscribe(&node(), filter.as_deref(), after)
        }
        Command::Peers => crate::client::peers(&node()),
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
            let id = match target(global)? {
                Target::Folder(store) => sign_and_store(&store, data, pointers)?.to_string(),
                Target::Node(node) => {
                    let body = json!({"pointers": serde_json::from_str::<Value>(&text)?});
                    let answer = node.post("/write", "application/json", &body.to_string())?;
                    answer["id"]
                        .as_str()
                        .context("the node's answer has no id")?
                        .to_owned()
                }
            };
            println!("{id}");
            Ok(())
        }
        Command::Import(args) => crate::transfer::import(target(global)?, data, args),
        Command::Export(args) => crate::transfer::export(reading(global)?, args),
        Command::Schema(SchemaCommand::Put { schema }) => {
            let text = if schema == "-" {
                read_stdin()?
            } else if schema.trim_start().starts_with(['{', '[']) {
                schema
            } else {
                std::fs::read_to_string(&schema).with_context(|| format!("reading {schema}"))?
            };
            let value: Value = serde_json::from_str(&text)
                .map_err(|e| hypha_primitives::Error::Json(e.to_string()))?;
            let parsed = Schema::from_json(&value)?;
            let id = match target(global)? {
                Target::Folder(store) => {
                    sign_and_store(&store, data, parsed.to_pointers())?.to_string()
                }
                Target::Node(node) => {
                    let answer = node.graphql(
                        "mutation($s: JSON!) { putSchema(schema: $s) { id } }",
                        json!({"s": value}),
                    )?;
                    answer["putSchema"]["id"]
                        .as_str()
                        .context("the node's answer has no id")?
                        .to_owned()
                }
            };
            println!("{id}");
            Ok(())
        }
        Command::Schema(SchemaCommand::List) => {
            let schemas: Vec<Value> = match reading(global)? {
                Target::Folder(store) => {
                    // The views first take in what the journal holds, so that a schema just
                    // put into the folder is listed.
                    Materializer::open(store.clone())?.apply_pending()?;
                    Materializer::definitions(&store)?
                        .into_iter()
                        .map(|(schema, _)| schema.to_json())
                        .collect()
                }
                Target::Node(node) => node.graphql("{ schemas }", json!({}))?["schemas"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default(),
            };
            for schema in schemas {
                println!("{schema}");
            }
            Ok(())
        }
        Command::Get { id } => {
            let id: DeltaId = id.parse()?;
            let store = folder_only(global, "get")?;
            match store.get(id)? {
                Some(stored) => print_json_line(&store, stored),
                None => bail!("no delta with id {id} in {}", data.display()),
            }
        }
        Command::Scan(args) => scan(folder_only(global, "scan")?, args),
        Command::Entity { id, at } => {
            let as_of = hypha_bindings::api::as_of(at.as_deref())?;
            let store = folder_only(global, "entity")?;
            let entity = EntityId::new(id);
            let index = load_index(&store, std::slice::from_ref(&entity), as_of, 0)?;
            let schemas = SchemaSet::new();
            let view = Resolver::new(&index, &schemas, &LocalOnly).lossless(&entity);
            println!("{}", view.to_json());
            Ok(())
        }
        Command::View(args) => view(global, args),
        Command::Status => {
            // The same fields either way: the node's service answers both.
            let status = match reading(global)? {
                Target::Folder(store) => {
                    let mut status = folder_status(data, store)?;
                    status["data"] = data.display().to_string().into();
                    status
                }
                Target::Node(node) => {
                    let mut status = node.get("/status")?;
                    status["node"] = node.url().into();
                    status
                }
            };
            println!("{status}");
            Ok(())
        }
        Command::Rebuild => {
            let store = folder_only(global, "rebuild")?;
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

/// `hypha status` of a data folder.
/// A data folder's status, from the node's service over the folder (no network: no
/// peers). Its host is the folder's node key's, or null when it has none yet: reading the
/// status makes no key.
fn folder_status(data: &std::path::Path, store: Store) -> Result<Value> {
    let key = read_key_file(&node_key_path(data)).ok();
    let host = key.as_ref().map(|k| k.host_id().to_string());
    let api =
        hypha_bindings::api::NodeApi::new(store, key.unwrap_or_else(KeyPair::generate), None)?;
    let runtime = tokio::runtime::Builder::new_current_thread().build()?;
    let mut status = runtime.block_on(api.status())?;
    status["host"] = host.into();
    Ok(status)
}

/// Signs pointers with the node key at the node's next clock reading and stores the delta
/// with the node's origin stamp.
fn sign_and_store(
    store: &Store,
    data: &std::path::Path,
    pointers: Vec<Pointer>,
) -> Result<DeltaId> {
    let key = load_or_create_node_key(data)?;
    let (delta, _) = LocalWriter::new(store.clone(), key)?.write(pointers)?;
    Ok(delta.id())
}

/// `hypha view`: records with each field's confidence and whether it is provisional,
/// read through the node's service: the running node's (`GET /records/…`), or, on the
/// data folder, the same service without a network (every value held here only).
fn view(global: &Global, args: ViewArgs) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match reading(global)? {
        Target::Node(node) => {
            let confirm_at = args.confirm_at.map(|k| ("confirm_at", k.to_string()));
            if let Some(entity) = &args.entity {
                let path = format!(
                    "/records/{}/{}",
                    url_segment(&args.entity_type),
                    url_segment(entity)
                );
                let mut query: Vec<(&str, String)> = confirm_at.into_iter().collect();
                query.extend(args.at.clone().map(|at| ("at", at)));
                let record = node.get_with(&path, &query)?;
                return Ok(writeln!(out, "{record}")?);
            }
            let mut after = args.after.clone();
            let mut left = args.limit;
            while left > 0 {
                let mut query: Vec<(&str, String)> = confirm_at.iter().cloned().collect();
                query.push(("limit", left.min(1_000).to_string()));
                query.extend(args.filter.clone().map(|f| ("filter", f)));
                query.extend(args.at.clone().map(|a| ("at", a)));
                query.extend(after.clone().map(|a| ("after", a)));
                let path = format!("/records/{}", url_segment(&args.entity_type));
                let page = node.get_with(&path, &query)?;
                let records = page["records"].as_array().cloned().unwrap_or_default();
                for record in &records {
                    writeln!(out, "{record}")?;
                }
                left = left.saturating_sub(records.len());
                match page["next"].as_str() {
                    Some(next) => after = Some(next.to_owned()),
                    None => break,
                }
            }
            Ok(())
        }
        Target::Folder(store) => {
            let filter = parse_filter(args.filter.as_deref())?;
            Materializer::open(store.clone())?.apply_pending()?;
            // This service only reads: a throwaway key, so a read creates no key file.
            let api = hypha_bindings::api::NodeApi::new(store, KeyPair::generate(), None)?;
            let no_schema = |e: hypha_bindings::api::Error| match e {
                hypha_bindings::api::Error::NotFound(_) => anyhow::anyhow!(
                    "no schema for type {:?} (register one with `hypha schema`)",
                    args.entity_type
                ),
                e => e.into(),
            };
            let runtime = tokio::runtime::Builder::new_current_thread().build()?;
            let at = hypha_bindings::api::as_of(args.at.as_deref())?;
            if let Some(entity) = &args.entity {
                let found = runtime.block_on(api.confirmed_record(
                    &args.entity_type,
                    entity,
                    args.confirm_at,
                    at,
                ));
                return match found.map_err(no_schema)? {
                    Some(record) => Ok(writeln!(out, "{record}")?),
                    None if args.at.is_some() => {
                        bail!("{entity} had no {} record then", args.entity_type)
                    }
                    None => bail!("{entity} has no {} record", args.entity_type),
                };
            }
            let mut after = args.after.clone();
            let mut left = args.limit;
            while left > 0 {
                let page = runtime.block_on(api.confirmed_records(
                    args.entity_type.clone(),
                    filter.clone(),
                    after.clone(),
                    left.min(1_000),
                    args.confirm_at,
                    at,
                ));
                let (records, next) = page.map_err(no_schema)?;
                for record in &records {
                    writeln!(out, "{record}")?;
                }
                left = left.saturating_sub(records.len());
                match next {
                    Some(next) => after = Some(next),
                    None => break,
                }
            }
            Ok(())
        }
    }
}

/// `text` as one URL path segment: everything but unreserved characters percent-encoded.
fn url_segment(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            b => format!("%{b:02X}"),
        })
        .collect()
}

fn scan(store: Store, args: ScanArgs) -> Result<()> {
    let filter = parse_filter(args.filter.as_deref())?;
    let limit = args.limit.unwrap_or(usize::MAX);
    let deltas: Box<dyn Iterator<Item = hypha_delta_store::Result<StoredDelta>>> =
        match &args.entity {
            Some(entity) => Box::new(entity_in_arrival_order(
                &store,
                entity,
                args.context.as_deref(),
            )?),
            None => match (&args.author, &args.origin) {
                (Some(author), _) => {
                    let author = author.parse().context("--author")?;
                    Box::new(store.scan_author_after(author, args.after.map(Arrival::new)))
                }
                (None, Some(origin)) => {
                    let host: hypha_primitives::HostId = origin.parse().context("--origin")?;
                    let from = hypha_primitives::Seq::new(args.after.map_or(1, |a| a + 1));
                    Box::new(
                        store
                            .scan_origin(host, from, hypha_primitives::Seq::new(u64::MAX))
                            .map(|entry| entry.map(|(_, stored)| stored)),
                    )
                }
                (None, None) => Box::new(store.scan_arrival(args.after.map(Arrival::new))),
            },
        };
    let mut printed = 0;
    for stored in deltas {
        if printed >= limit {
            break;
        }
        let stored = stored?;
        if let Some(f) = &filter {
            if !f.matches(&stored.delta.filter_document(&stored.stamps)) {
                continue;
            }
        }
        print_json_line(&store, stored)?;
        printed += 1;
    }
    Ok(())
}

/// The deltas filed under `entity` (and `context`), each once, in arrival order. The
/// entity index is ordered by property and id, so the ids are read first, their arrivals
/// looked up (and sorted) in batches, and the deltas loaded again in that order, a batch
/// at a time: memory holds an id and an arrival per delta, not the deltas.
fn entity_in_arrival_order<'a>(
    store: &'a Store,
    entity: &str,
    context: Option<&str>,
) -> Result<impl Iterator<Item = hypha_delta_store::Result<StoredDelta>> + 'a> {
    const BATCH: usize = 1024;
    let mut ids = store
        .scan_entity_ids(entity, context)
        .collect::<hypha_delta_store::Result<Vec<DeltaId>>>()?;
    // A delta filed under several properties appears once per property.
    ids.sort_unstable();
    ids.dedup();
    let mut placed: Vec<(Arrival, DeltaId)> = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(BATCH) {
        for (id, stored) in chunk.iter().zip(store.get_many(chunk)?) {
            if let Some(stored) = stored {
                placed.push((stored.arrival, *id));
            }
        }
    }
    placed.sort_unstable();
    let ordered: Vec<DeltaId> = placed.into_iter().map(|(_, id)| id).collect();
    let batches: Vec<Vec<DeltaId>> = ordered.chunks(BATCH).map(<[DeltaId]>::to_vec).collect();
    Ok(batches
        .into_iter()
        .flat_map(move |chunk| match store.get_many(&chunk) {
            Ok(found) => found.into_iter().flatten().map(Ok).collect::<Vec<_>>(),
            Err(e) => vec![Err(e)],
        }))
}

/// The `--filter` option, compiled.
fn parse_filter(text: Option<&str>) -> Result<Option<Filter>> {
    text.map(Filter::from_json_str)
        .transpose()
        .context("--filter")
}

/// Prints a stored delta with its stamps' proofs filled in, so the line imports elsewhere.
fn print_json_line(store: &Store, stored: StoredDelta) -> Result<()> {
    let mut stored = [stored];
    store.prove_stored(&mut stored)?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", stored[0].to_json()).context("writing to stdout")
}

fn read_stdin() -> Result<String> {
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .context("reading stdin")?;
    Ok(text)
}
