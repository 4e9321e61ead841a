//! Command-line arguments.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Hypha: a delta-journal CRDT replication engine.
#[derive(Debug, Parser)]
#[command(name = "hypha", version, about, propagate_version = true)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) global: Global,
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// Options every command takes.
#[derive(Debug, Args)]
pub(crate) struct Global {
    /// The node's data folder (journal and node key).
    #[arg(
        long,
        global = true,
        env = "HYPHA_DATA",
        default_value = "./hypha-data"
    )]
    pub(crate) data: PathBuf,
    /// A running node's HTTP address. `query`, `subscribe` and `peers` always talk to a
    /// node (http://127.0.0.1:8080 unless given); `write`, `schema`, `import`, `export`,
    /// `view` and `status` go through the node when given, and otherwise work on the data folder
    /// (or, if a node holds the folder and answers at the default address, through it).
    #[arg(long, global = true, env = "HYPHA_NODE")]
    pub(crate) node: Option<String>,
    /// Bearer token: `hypha node` requires it for writes; the other commands send it.
    #[arg(long, global = true, env = "HYPHA_TOKEN", hide_env_values = true)]
    pub(crate) token: Option<String>,
}

/// Where a node answers when `--node` is not given.
pub(crate) const DEFAULT_NODE: &str = "http://127.0.0.1:8080";

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run the node until Ctrl-C or SIGTERM.
    Node(NodeArgs),
    /// Create a key file (the node key of the data folder by default).
    Keygen {
        /// Where to write the key; refuses to overwrite an existing file.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Sign a delta with the node key, store it, and print its id.
    Write {
        /// The delta's pointers as a JSON array; read from stdin when absent.
        pointers: Option<String>,
    },
    /// Store deltas from JSON lines (a file, or stdin): Hypha's signed deltas, or rhizome's
    /// deltas re-signed by an import key.
    Import(ImportArgs),
    /// Print stored deltas as JSON lines with their origin stamps, in arrival order: what
    /// `import` reads back.
    Export(ExportArgs),
    /// Print a stored delta as JSON.
    Get {
        /// The delta id (hex).
        id: String,
    },
    /// Print stored deltas as JSON lines, in arrival order: all of them, an entity's, an
    /// author's, or those a filter selects; or those an origin host stamped, in its seq order.
    Scan(ScanArgs),
    /// Register or list schemas.
    #[command(subcommand)]
    Schema(SchemaCommand),
    /// Print the lossless view of an entity: every live delta under each property.
    Entity {
        /// The entity id.
        id: String,
        /// View the entity as of this HLC time (MS or MS.LOGICAL), or arrival position @N.
        #[arg(long)]
        at: Option<String>,
    },
    /// Print materialized records of a type, each field with its confidence and whether it
    /// is provisional (through the running node when there is one; on the folder, the
    /// views are brought up to date first).
    View(ViewArgs),
    /// Throw the materialized views away and rebuild them from the journal.
    Rebuild,
    /// Print the node's identity, journal position, coverage and views state as JSON.
    Status,
    /// Run a GraphQL document against a running node (`--node`) and print its data.
    Query {
        /// The GraphQL document, e.g. '{ node { id deltas } }'.
        document: String,
        /// Variables, as a JSON object.
        #[arg(long)]
        variables: Option<String>,
    },
    /// Print, as JSON lines, every delta a running node (`--node`) holds or receives that
    /// matches a filter, until Ctrl-C.
    Subscribe {
        /// A JSON-Logic filter over each delta's filter document.
        #[arg(long)]
        filter: Option<String>,
        /// Start after this arrival position (every delta's `arrival` is a cursor).
        #[arg(long)]
        after: Option<u64>,
    },
    /// Print the peers a running node (`--node`) is linked to.
    Peers,
}

/// `hypha schema` commands.
#[derive(Debug, Subcommand)]
pub(crate) enum SchemaCommand {
    /// Register a schema (or replace the type's schema) as a delta signed by the node key.
    Put {
        /// A file holding the schema's JSON, `-` for stdin, or the JSON itself, e.g.
        /// '{"type":"user","properties":{"name":{"resolver":"lww"}}}'.
        schema: String,
    },
    /// Print the registered schemas as JSON lines.
    List,
}

/// `hypha import` options.
#[derive(Debug, Args)]
pub(crate) struct ImportArgs {
    /// The JSON lines file; stdin when absent.
    pub(crate) file: Option<PathBuf>,
    /// What the lines hold.
    #[arg(long, value_enum, default_value_t = ImportFormat::Hypha)]
    pub(crate) format: ImportFormat,
    /// With `--format rhizome`: the key that signs the imported deltas (a `hypha keygen`
    /// file); on a data folder, its node key when absent. Required through a node.
    #[arg(long)]
    pub(crate) key: Option<PathBuf>,
    /// With `--format rhizome`: a JSON lines file mapping each rhizome id to the new
    /// delta's id. Read first if it exists (so a later import can refer to deltas an
    /// earlier one brought in), and appended to.
    #[arg(long)]
    pub(crate) map: Option<PathBuf>,
}

/// `hypha import --format` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ImportFormat {
    /// Signed Hypha deltas as `get`, `scan` and `export` print them (stamps included).
    Hypha,
    /// rhizome's delta JSON: `{id, timeCreated, host, creator, pointers: [{localContext,
    /// target, targetContext}]}`.
    Rhizome,
}

/// `hypha export` options.
#[derive(Debug, Args)]
pub(crate) struct ExportArgs {
    /// Only deltas after this arrival position.
    #[arg(long)]
    pub(crate) after: Option<u64>,
    /// A JSON-Logic filter over each delta's filter document.
    #[arg(long)]
    pub(crate) filter: Option<String>,
}

/// `hypha view` options.
#[derive(Debug, Args)]
pub(crate) struct ViewArgs {
    /// The schema's type name.
    pub(crate) entity_type: String,
    /// One entity's record; all records of the type (JSON lines) when absent.
    pub(crate) entity: Option<String>,
    /// A JSON-Logic filter over each record's JSON.
    #[arg(long, conflicts_with = "entity")]
    pub(crate) filter: Option<String>,
    /// Only records of entities after this id.
    #[arg(long, conflicts_with_all = ["entity", "filter"])]
    pub(crate) after: Option<String>,
    /// Print at most this many records.
    #[arg(long, default_value_t = 100)]
    pub(crate) limit: usize,
    /// Call a value confirmed once this many peers hold what decided it (default: the
    /// type's schema's `confirm_at`, else the node's `--confirm-at`, else 1). Confidence
    /// comes from a running node (see --node); read from the data folder alone, every
    /// value is held by this node only.
    #[arg(long)]
    pub(crate) confirm_at: Option<u32>,
    /// Records as they stood at this HLC time (MS or MS.LOGICAL), or at arrival position
    /// @N, resolved from the journal with the schema in force then.
    #[arg(long)]
    pub(crate) at: Option<String>,
}

/// `hypha node` options. Each can also come from the `--config` file (a TOML key of the
/// same name with `_` for `-`; `peers` for `--peer`); flags and `HYPHA_*` variables win.
#[derive(Debug, Args)]
pub(crate) struct NodeArgs {
    /// A TOML file of node options, e.g. `http = "0.0.0.0:8080"`, `peers = ["tcp://…"]`,
    /// `data = "/var/lib/hypha"`, `token = "…"`.
    #[arg(long, env = "HYPHA_CONFIG")]
    pub(crate) config: Option<PathBuf>,
    /// When writes are acknowledged: after fsync, or after the OS has the write-ahead log.
    #[arg(long, value_enum, env = "HYPHA_DURABILITY", default_value_t = DurabilityArg::Fsync)]
    pub(crate) durability: DurabilityArg,
    /// Largest accepted delta, in encoded bytes.
    #[arg(long, env = "HYPHA_MAX_DELTA_BYTES", default_value_t = 64 * 1024)]
    pub(crate) max_delta_bytes: usize,
    /// The HTTP API's address (port 0 picks a free port; the log says which).
    #[arg(long, env = "HYPHA_HTTP", default_value = "127.0.0.1:8080")]
    pub(crate) http: String,
    /// The ZeroMQ ROUTER address peers dial (handshakes and catch-up).
    #[arg(long, env = "HYPHA_LISTEN", default_value = "tcp://127.0.0.1:7400")]
    pub(crate) listen: String,
    /// The ZeroMQ PUB address peers subscribe to (new deltas and coverage).
    #[arg(long, env = "HYPHA_PUBLISH", default_value = "tcp://127.0.0.1:7401")]
    pub(crate) publish: String,
    /// A peer's ROUTER address to dial (repeat, or comma-separate in HYPHA_PEERS).
    #[arg(long = "peer", env = "HYPHA_PEERS", value_delimiter = ',')]
    pub(crate) peers: Vec<String>,
    /// Encrypt links and the PUB stream: `auto` beyond loopback addresses, `on` always,
    /// `off` only when a peer asks.
    #[arg(long, value_enum, env = "HYPHA_ENCRYPT", default_value_t = EncryptArg::Auto)]
    pub(crate) encrypt: EncryptArg,
    /// Dial at most this many peers learnt from other peers' lists (0: only the configured
    /// peers and those that dial in).
    #[arg(long, env = "HYPHA_LEARN_PEERS", default_value_t = 8)]
    pub(crate) learn_peers: usize,
    /// Replicate only the deltas this JSON-Logic filter selects (a partial replica), e.g.
    /// '{"in": ["alice", {"var": "targets"}]}'; the node's own writes are always kept.
    #[arg(long, env = "HYPHA_REPLICATE")]
    pub(crate) replicate: Option<String>,
    /// How many peers must hold what decided a value before reads call it confirmed
    /// rather than provisional (a type's schema `confirm_at`, or a read's own, wins).
    #[arg(long, env = "HYPHA_CONFIRM_AT", default_value_t = hypha_bindings::api::DEFAULT_CONFIRM_AT)]
    pub(crate) confirm_at: u32,
}

/// `--encrypt` values.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum EncryptArg {
    /// Encrypt links to or from non-loopback addresses, and a PUB stream bound to one.
    Auto,
    /// Encrypt every link and the PUB stream.
    On,
    /// Do not ask for encryption (a peer that asks still gets it).
    Off,
}

/// `--durability` values.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum DurabilityArg {
    /// Fsync the write-ahead log before acknowledging (survives power loss).
    Fsync,
    /// Acknowledge once the OS has the write-ahead log (survives a process crash).
    Buffered,
}

/// `hypha scan` options.
#[derive(Debug, Args)]
pub(crate) struct ScanArgs {
    /// A JSON-Logic filter over each delta's filter document: its JSON form plus
    /// `hosts`, `targets`, `contexts`, `target_contexts` and `values`.
    #[arg(long)]
    pub(crate) filter: Option<String>,
    /// Only deltas that point at this entity (still in arrival order).
    #[arg(long)]
    pub(crate) entity: Option<String>,
    /// With --entity: only deltas filed under this property.
    #[arg(long, requires = "entity")]
    pub(crate) context: Option<String>,
    /// Only deltas by this author (a public key in hex), read from the author index.
    #[arg(long, conflicts_with_all = ["entity", "origin"])]
    pub(crate) author: Option<String>,
    /// Only deltas this host stamped (a host id in hex), read from the origin index in the
    /// host's seq order.
    #[arg(long, conflicts_with = "entity")]
    pub(crate) origin: Option<String>,
    /// Only deltas after this position: an arrival, or with --origin a seq of the host.
    #[arg(long, conflicts_with = "entity")]
    pub(crate) after: Option<u64>,
    /// Print at most this many deltas.
    #[arg(long)]
    pub(crate) limit: Option<usize>,
}
