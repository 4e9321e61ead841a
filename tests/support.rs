//! Running the `hypha` binary in tests.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

/// The result of one `hypha` invocation.
#[derive(Debug)]
pub(crate) struct Run {
    pub(crate) ok: bool,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl From<Output> for Run {
    fn from(out: Output) -> Self {
        Run {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

pub(crate) fn hypha(data: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hypha"));
    cmd.arg("--data").arg(data).env("RUST_LOG", "warn");
    cmd
}

/// Runs `hypha --data DATA ARGS…` with `stdin` as its input.
pub(crate) fn run(data: &Path, args: &[&str], stdin: &str) -> Run {
    let mut child = hypha(data)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn hypha");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap().into()
}

/// Runs a command that must succeed and returns its stdout.
pub(crate) fn ok(data: &Path, args: &[&str]) -> String {
    let r = run(data, args, "");
    assert!(r.ok, "hypha {args:?} failed: {}", r.stderr);
    r.stdout
}

/// Runs a command that must fail, checks the error names `expect`, returns stderr.
pub(crate) fn fails(data: &Path, args: &[&str], stdin: &str, expect: &str) -> String {
    let r = run(data, args, stdin);
    assert!(
        !r.ok,
        "hypha {args:?} should have failed; stdout: {}",
        r.stdout
    );
    assert!(
        r.stderr.contains(expect),
        "hypha {args:?}: expected {expect:?} in stderr: {}",
        r.stderr
    );
    r.stderr
}

pub(crate) fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}
