//! A data folder written by an earlier release (`tests/fixtures/data-2026-12`) opens, reads
//! and replicates to a new node.

use std::path::Path;
use std::time::Duration;

use crate::support::{eventually, json_lines, ok, NodeProcess};

/// The fixture's own host, and the other origin whose delta it imported.
const OWN_HOST: &str = "64c579440f935b06204c75f542366a1097e4a2803df08c1d413ce8aa62b62900";
const OTHER_HOST: &str = "368c2b7472be9524783cffc54cc49db2a769a5dfeaaf6532f5c5ebf0dd3f9377";

/// A copy of the fixture in a temp dir (RocksDB writes to a folder it opens).
fn copy_of_fixture() -> tempfile::TempDir {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/data-2026-12");
    let copy = tempfile::tempdir().unwrap();
    copy_dir(&source, copy.path());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let key = copy.path().join("node.key");
        std::fs::set_permissions(key, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    copy
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[test]
fn an_earlier_releases_data_folder_opens_reads_and_replicates() {
    let old = copy_of_fixture();
    let status: serde_json::Value = serde_json::from_str(&ok(old.path(), &["status"])).unwrap();
    assert_eq!(status["host"], OWN_HOST, "{status}");
    assert_eq!(status["last_arrival"], 8, "{status}");
    assert_eq!(status["coverage"][OWN_HOST], 7, "{status}");
    assert_eq!(status["coverage"][OTHER_HOST], 1, "{status}");

    // Every delta exports with its origin stamp, and the views catch up with the import.
    let exported = json_lines(&ok(old.path(), &["export"]));
    assert_eq!(exported.len(), 8);
    assert!(exported
        .iter()
        .all(|d| d["stamps"].as_array().is_some_and(|s| s.len() == 1)));
    let people = json_lines(&ok(old.path(), &["view", "person"]));
    let name = |id: &str| {
        people
            .iter()
            .find(|p| p["id"] == id)
            .map(|p| p["fields"]["name"]["value"].clone())
    };
    assert_eq!(name("p1"), Some("Person 1".into()));
    assert_eq!(
        name("p4"),
        Some("Person 4".into()),
        "the imported delta counts"
    );
    let age = people.iter().find(|p| p["id"] == "p3").unwrap()["fields"]["age"]["value"].clone();
    assert_eq!(age, 33);

    // A node on the old folder replicates all of it, both origins, to a fresh node.
    let a = NodeProcess::start(old.path(), &[]);
    let fresh = tempfile::tempdir().unwrap();
    let b = NodeProcess::start(fresh.path(), &[&a.router]);
    let ids: Vec<String> = exported
        .iter()
        .map(|d| d["id"].as_str().unwrap().to_owned())
        .collect();
    eventually(
        "the fresh node to hold every old delta",
        Duration::from_secs(30),
        || ids.iter().all(|id| b.has(id)),
    );
    let copied = b.get(&format!("/deltas/{}", ids[7])).unwrap();
    assert_eq!(
        copied["stamps"], exported[7]["stamps"],
        "stamps travel as they were"
    );
    drop(b);
    drop(a);
}
