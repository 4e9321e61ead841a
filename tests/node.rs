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

#[test]
fn a_config_file_sets_what_flags_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("hypha.toml");
    std::fs::write(
        &config,
        "token = \"from-file\"\nmax_delta_bytes = 300\ndurability = \"buffered\"\n",
    )
    .unwrap();
    let node = crate::support::NodeProcess::start_with(
        &dir.path().join("data"),
        &[],
        &["--config", config.to_str().unwrap()],
    );
    assert!(node.logged(&["read the config file"]));
    let small = serde_json::json!({"pointers": [{"local_context": "n", "target": {"value": 1}}]});
    let refused = node.post("/write", &small.to_string()).unwrap_err();
    assert_eq!(refused.0, 401, "the file's token is required: {refused:?}");
    node.post_with_token("/write", &small.to_string(), "from-file")
        .expect("the file's token opens writes");
    let large = serde_json::json!({"pointers": [{"local_context": "n", "target": {"value": "x".repeat(400)}}]});
    let refused = node
        .post_with_token("/write", &large.to_string(), "from-file")
        .unwrap_err();
    assert!(
        refused.1.contains("300"),
        "the file's size limit: {refused:?}"
    );
    node.stop();

    // A misspelt key stops the node before it starts, naming the key.
    std::fs::write(&config, "htpp = \"127.0.0.1:1\"\n").unwrap();
    let out = crate::support::run(
        &dir.path().join("data"),
        &["node", "--config", config.to_str().unwrap()],
        "",
    );
    assert!(!out.ok);
    assert!(out.stderr.contains("htpp"), "{}", out.stderr);

    // So does a slice filter that does not parse, with the option's name.
    let out = crate::support::run(
        &dir.path().join("data"),
        &["node", "--replicate", "{not json"],
        "",
    );
    assert!(!out.ok);
    assert!(
        out.stderr.contains("--replicate") && out.stderr.contains("not valid json"),
        "{}",
        out.stderr
    );
}
