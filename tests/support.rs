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

/// `hypha node` options that bind every socket to a free port on loopback, so tests can run
/// side by side; the "node running" log line says which.
pub(crate) const ANY_PORTS: &[&str] = &[
    "--http",
    "127.0.0.1:0",
    "--listen",
    "tcp://127.0.0.1:0",
    "--publish",
    "tcp://127.0.0.1:0",
];

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

/// A `hypha node` process on free loopback ports, with its log lines collected.
pub(crate) struct NodeProcess {
    child: std::process::Child,
    /// The HTTP API's base URL.
    pub(crate) http: String,
    /// The ZeroMQ ROUTER address peers dial.
    pub(crate) router: String,
    /// The node's host id.
    pub(crate) host: String,
    logs: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl NodeProcess {
    /// Starts a node on `data` dialling `peers` (ROUTER addresses), and waits until it runs.
    pub(crate) fn start(data: &Path, peers: &[&str]) -> NodeProcess {
        Self::start_with(data, peers, &[])
    }

    /// [`NodeProcess::start`] with more `hypha node` options.
    pub(crate) fn start_with(data: &Path, peers: &[&str], options: &[&str]) -> NodeProcess {
        use std::io::BufRead;
        let mut cmd = hypha(data);
        cmd.arg("node")
            .args(ANY_PORTS)
            .args(options)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for peer in peers {
            cmd.args(["--peer", peer]);
        }
        let mut child = cmd.spawn().expect("spawn hypha node");
        let stderr = child.stderr.take().unwrap();
        let logs = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (running_tx, running_rx) = std::sync::mpsc::channel();
        let collected = logs.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { return };
                if line.contains("node running") {
                    let _ = running_tx.send(line.clone());
                }
                collected.lock().unwrap().push(line);
            }
        });
        let line = running_rx
            .recv_timeout(std::time::Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("node did not start: {:?}", logs.lock().unwrap()));
        let field = |name: &str| -> String {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(&format!("{name}=")))
                .unwrap_or_else(|| panic!("no {name} in {line}"))
                .to_owned()
        };
        NodeProcess {
            child,
            http: field("http"),
            router: field("router"),
            host: field("host"),
            logs,
        }
    }

    /// GET a path of the HTTP API; the JSON answer, or the status and answer of a failure.
    pub(crate) fn get(&self, path: &str) -> Result<serde_json::Value, (u16, String)> {
        answer(ureq::get(&format!("{}{path}", self.http)).call())
    }

    /// POST a body to a path of the HTTP API.
    pub(crate) fn post(&self, path: &str, body: &str) -> Result<serde_json::Value, (u16, String)> {
        answer(
            ureq::post(&format!("{}{path}", self.http))
                .set("content-type", "application/json")
                .send_string(body),
        )
    }

    /// POST with `Authorization: Bearer <token>`.
    pub(crate) fn post_with_token(
        &self,
        path: &str,
        body: &str,
        token: &str,
    ) -> Result<serde_json::Value, (u16, String)> {
        answer(
            ureq::post(&format!("{}{path}", self.http))
                .set("content-type", "application/json")
                .set("authorization", &format!("Bearer {token}"))
                .send_string(body),
        )
    }

    /// GET a path as text.
    pub(crate) fn get_text(&self, path: &str) -> String {
        ureq::get(&format!("{}{path}", self.http))
            .call()
            .expect("GET")
            .into_string()
            .expect("text")
    }

    /// Writes pointers through `POST /write` and returns the answer.
    pub(crate) fn write(
        &self,
        pointers: serde_json::Value,
        min_confidence: u64,
        timeout_ms: u64,
    ) -> serde_json::Value {
        let body = serde_json::json!({"pointers": pointers, "min_confidence": min_confidence, "timeout_ms": timeout_ms});
        self.post("/write", &body.to_string()).expect("write")
    }

    /// True when the node holds delta `id`.
    pub(crate) fn has(&self, id: &str) -> bool {
        self.get(&format!("/deltas/{id}")).is_ok()
    }

    /// True when a log line contains every one of `parts`.
    pub(crate) fn logged(&self, parts: &[&str]) -> bool {
        self.logs
            .lock()
            .unwrap()
            .iter()
            .any(|l| parts.iter().all(|p| l.contains(p)))
    }

    /// Stops the node with SIGTERM and waits for it.
    pub(crate) fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let status = self.child.wait().unwrap();
        assert!(status.success(), "node exited with {status:?}");
    }

    /// Kills the node with SIGKILL (no clean shutdown) and waits for it.
    pub(crate) fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn answer(result: Result<ureq::Response, ureq::Error>) -> Result<serde_json::Value, (u16, String)> {
    match result {
        Ok(response) => Ok(
            serde_json::from_str(&response.into_string().expect("a body")).expect("JSON answer"),
        ),
        Err(ureq::Error::Status(code, response)) => {
            Err((code, response.into_string().unwrap_or_default()))
        }
        Err(e) => Err((0, e.to_string())),
    }
}

/// Polls `check` every 50 ms until it holds, failing after `timeout`.
pub(crate) fn eventually(
    what: &str,
    timeout: std::time::Duration,
    mut check: impl FnMut() -> bool,
) {
    let start = std::time::Instant::now();
    while !check() {
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
