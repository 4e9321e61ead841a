//! `hypha node` as a real process: it holds the data folder, and stops cleanly on SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::{fails, hypha, ok};

#[test]
fn a_running_node_locks_its_folder_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let id = ok(
        data,
        &["write", r#"[{"local_context":"n","target":{"value":1}}]"#],
    )
    .trim()
    .to_owned();

    let mut node = hypha(data)
        .arg("node")
        .args(crate::support::ANY_PORTS)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut logs = BufReader::new(node.stderr.take().unwrap()).lines();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let line = logs
            .next()
            .expect("node exited before it was running")
            .unwrap();
        if line.contains("node running") {
            assert!(line.contains("last_arrival=Some(1)"), "{line}");
            break;
        }
        assert!(Instant::now() < deadline, "node did not start");
    }

    // The node brings the materialized views up to date as it starts.
    let line = logs.next().expect("node exited early").unwrap();
    assert!(line.contains("views up to date"), "{line}");

    fails(data, &["get", &id], "", "is a hypha node running");

    let pid = node.id().to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(status.success());
    let rest: Vec<String> = logs.map(|l| l.unwrap()).collect();
    let exit = node.wait().unwrap();
    assert!(exit.success(), "node exited with {exit:?}; logs: {rest:?}");
    assert!(rest.iter().any(|l| l.contains("stopped")), "{rest:?}");

    // The folder is free again and the data is there.
    ok(data, &["get", &id]);
}
