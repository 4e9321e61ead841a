//! Cross-crate tests that run the real `hypha` binary against real data folders.

mod cli;
mod node;
mod peers;
mod support;
