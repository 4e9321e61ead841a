//! Cross-crate tests that run the real `hypha` binary against real data folders.

mod cli;
mod cli_help;
mod confidence;
mod gql;
mod graphql;
mod history;
mod lookups;
mod node;
mod peers;
mod security;
mod support;
mod upgrade;
