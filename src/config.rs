//! The `hypha node` config file: TOML keys named like the node's options, under the flags
//! and `HYPHA_*` environment variables (which win), over the built-in defaults.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::parser::ValueSource;
use clap::{ArgMatches, ValueEnum};
use serde::Deserialize;

use crate::cli::{DurabilityArg, EncryptArg, Global, NodeArgs};

/// What a config file may set; an unknown key is an error (a misspelt option would
/// otherwise be silently ignored).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    data: Option<PathBuf>,
    token: Option<String>,
    durability: Option<String>,
    max_delta_bytes: Option<usize>,
    http: Option<String>,
    listen: Option<String>,
    publish: Option<String>,
    peers: Option<Vec<String>>,
    replicate: Option<String>,
    learn_peers: Option<usize>,
    encrypt: Option<String>,
    confirm_at: Option<u32>,
}

/// Whether the option `id` took its built-in default (neither a flag nor a variable set it).
fn defaulted(matches: &ArgMatches, id: &str) -> bool {
    // Asking about an id these matches do not know is a bug clap reports by panicking.
    !matches.ids().any(|known| known.as_str() == id)
        || !matches!(
            matches.value_source(id),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        )
}

/// Reads `args.config`, if given, into the options the command line and environment left
/// at their defaults. `top` are the whole command line's matches, `node` the `node`
/// subcommand's.
pub(crate) fn apply(
    top: &ArgMatches,
    node: &ArgMatches,
    global: &mut Global,
    args: &mut NodeArgs,
) -> Result<Option<PathBuf>> {
    let Some(path) = args.config.clone() else {
        return Ok(None);
    };
    let file = read(&path)?;
    // Global options may be given before or after the subcommand.
    let unset = |id: &str| defaulted(top, id) && defaulted(node, id);
    if let (Some(data), true) = (file.data, unset("data")) {
        // A relative folder is relative to the config file.
        global.data = path.parent().unwrap_or(Path::new(".")).join(data);
    }
    if let (Some(token), true) = (file.token, unset("token")) {
        global.token = Some(token);
    }
    if let (Some(durability), true) = (file.durability, unset("durability")) {
        args.durability = DurabilityArg::from_str(&durability, true)
            .map_err(|e| anyhow::anyhow!("{}: durability {durability:?}: {e}", path.display()))?;
    }
    if let (Some(bytes), true) = (file.max_delta_bytes, unset("max_delta_bytes")) {
        args.max_delta_bytes = bytes;
    }
    if let (Some(http), true) = (file.http, unset("http")) {
        args.http = http;
    }
    if let (Some(listen), true) = (file.listen, unset("listen")) {
        args.listen = listen;
    }
    if let (Some(publish), true) = (file.publish, unset("publish")) {
        args.publish = publish;
    }
    if let (Some(peers), true) = (file.peers, unset("peers")) {
        args.peers = peers;
    }
    if let (Some(replicate), true) = (file.replicate, unset("replicate")) {
        args.replicate = Some(replicate);
    }
    if let (Some(learn_peers), true) = (file.learn_peers, unset("learn_peers")) {
        args.learn_peers = learn_peers;
    }
    if let (Some(encrypt), true) = (file.encrypt, unset("encrypt")) {
        args.encrypt = EncryptArg::from_str(&encrypt, true)
            .map_err(|e| anyhow::anyhow!("{}: encrypt {encrypt:?}: {e}", path.display()))?;
    }
    if let (Some(confirm_at), true) = (file.confirm_at, unset("confirm_at")) {
        args.confirm_at = confirm_at;
    }
    Ok(Some(path))
}

fn read(path: &Path) -> Result<ConfigFile> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("in the config file {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, FromArgMatches};

    fn parse(args: &[&str], config: &str) -> Result<(Global, NodeArgs)> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("hypha.toml");
        std::fs::write(&path, config)?;
        let mut argv = vec!["hypha", "node", "--config", path.to_str().unwrap()];
        argv.extend_from_slice(args);
        let top = crate::cli::Cli::command().try_get_matches_from(argv)?;
        let cli = crate::cli::Cli::from_arg_matches(&top)?;
        let crate::cli::Command::Node(mut node_args) = cli.command else {
            unreachable!("parsed a node command")
        };
        let mut global = cli.global;
        let node = top.subcommand_matches("node").expect("node");
        apply(&top, node, &mut global, &mut node_args)?;
        // Relative data folders resolve against the (now removed) config folder.
        global.data = global
            .data
            .strip_prefix(dir.path())
            .map(Path::to_path_buf)
            .unwrap_or(global.data);
        Ok((global, node_args))
    }

    #[test]
    fn the_file_fills_what_flags_leave_at_their_defaults() {
        let (global, args) = parse(
            &["--http", "127.0.0.1:9999"],
            r#"
                data = "store"
                token = "from-file"
                durability = "buffered"
                max_delta_bytes = 1000
                http = "0.0.0.0:80"
                peers = ["tcp://10.0.0.2:7400", "tcp://10.0.0.3:7400"]
                replicate = '{"in": ["a", {"var": "targets"}]}'
                learn_peers = 0
                encrypt = "on"
                confirm_at = 2
            "#,
        )
        .unwrap();
        assert_eq!(global.data, PathBuf::from("store"));
        assert_eq!(global.token.as_deref(), Some("from-file"));
        assert!(matches!(args.durability, DurabilityArg::Buffered));
        assert_eq!(args.max_delta_bytes, 1000);
        assert_eq!(args.http, "127.0.0.1:9999", "the flag wins");
        assert_eq!(args.listen, "tcp://127.0.0.1:7400", "the default stays");
        assert_eq!(args.peers.len(), 2);
        assert_eq!(
            args.replicate.as_deref(),
            Some(r#"{"in": ["a", {"var": "targets"}]}"#)
        );
        assert_eq!(args.learn_peers, 0);
        assert!(matches!(args.encrypt, crate::cli::EncryptArg::On));
        assert_eq!(args.confirm_at, 2);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors() {
        let e = parse(&[], "htpp = \"x\"").unwrap_err();
        assert!(format!("{e:#}").contains("unknown field `htpp`"), "{e:#}");
        let e = parse(&[], "durability = \"sometimes\"").unwrap_err();
        assert!(format!("{e:#}").contains("sometimes"), "{e:#}");
        let e = parse(&[], "encrypt = \"maybe\"").unwrap_err();
        assert!(format!("{e:#}").contains("maybe"), "{e:#}");
        let e = parse(&[], "max_delta_bytes = \"big\"").unwrap_err();
        assert!(format!("{e:#}").contains("max_delta_bytes"), "{e:#}");
    }
}
