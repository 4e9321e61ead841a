//! The node's identity: its key pair in a key file beside the journal.

use std::io::Write;
use std::path::{Path, PathBuf};

use hypha_primitives::KeyPair;

use crate::{Error, Result};

/// The key file's name inside a data folder.
pub const NODE_KEY_FILE: &str = "node.key";

/// Where a data folder keeps its node key.
pub fn node_key_path(data_dir: &Path) -> PathBuf {
    data_dir.join(NODE_KEY_FILE)
}

/// Reads a key file.
pub fn read_key_file(path: &Path) -> Result<KeyPair> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::io(format!("reading key file {}", path.display()), e))?;
    KeyPair::from_key_file(&text).map_err(|e| Error::Config(format!("{}: {e}", path.display())))
}

/// Writes a new key file readable only by its owner; refuses to overwrite an existing one.
pub fn write_key_file(path: &Path, key: &KeyPair) -> Result<()> {
    let context = || format!("writing key file {}", path.display());
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| Error::io(context(), e))?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(|e| Error::io(context(), e))?;
    file.write_all(key.to_key_file().as_bytes())
        .map_err(|e| Error::io(context(), e))?;
    file.sync_all().map_err(|e| Error::io(context(), e))
}

/// The node key of a data folder, created on first use.
pub fn load_or_create_node_key(data_dir: &Path) -> Result<KeyPair> {
    let path = node_key_path(data_dir);
    if path.exists() {
        return read_key_file(&path);
    }
    let key = KeyPair::generate();
    write_key_file(&path, &key)?;
    tracing::info!(host = %key.host_id(), path = %path.display(), "created node key");
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_key_is_created_once_and_then_reused() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_create_node_key(dir.path()).unwrap();
        let second = load_or_create_node_key(dir.path()).unwrap();
        assert_eq!(first.host_id(), second.host_id());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(node_key_path(dir.path()))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn an_existing_key_file_is_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        write_key_file(&path, &KeyPair::from_seed([1; 32])).unwrap();
        assert!(write_key_file(&path, &KeyPair::from_seed([2; 32])).is_err());
        assert_eq!(
            read_key_file(&path).unwrap().host_id(),
            KeyPair::from_seed([1; 32]).host_id()
        );
    }

    #[test]
    fn a_corrupt_key_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        std::fs::write(&path, "garbage").unwrap();
        let err = read_key_file(&path).unwrap_err();
        assert!(err.to_string().contains("invalid key file"), "{err}");
    }
}
