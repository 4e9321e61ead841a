//! The `hypha` binary: the node daemon and the command-line tools.

mod cli;
mod client;
mod commands;
mod config;
mod node;
mod transfer;

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};

fn main() -> ExitCode {
    init_logging();
    match parse().and_then(commands::run) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {}", cause_chain(&err));
            ExitCode::FAILURE
        }
    }
}

/// The whole cause chain on one line, `a: b: c`, leaving out a cause whose text the message
/// before it already ends with (errors that print their source would otherwise say it twice).
fn cause_chain(err: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if line.ends_with(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

/// The command line, with `hypha node`'s config file read into the options it leaves unset.
fn parse() -> anyhow::Result<cli::Cli> {
    let top = cli::Cli::command().get_matches();
    let mut cli = cli::Cli::from_arg_matches(&top)?;
    if let (cli::Command::Node(args), Some(node)) =
        (&mut cli.command, top.subcommand_matches("node"))
    {
        if let Some(path) = config::apply(&top, node, &mut cli.global, args)? {
            tracing::info!(config = %path.display(), "read the config file");
        }
    }
    Ok(cli)
}

/// Logs go to stderr (stdout carries command output); `RUST_LOG` picks the level.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}
