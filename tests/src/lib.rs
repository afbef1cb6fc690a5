//! Harness for the end-to-end tests: generates a dataset with the real `sluice` binary,
//! spawns `sluice serve` on a free loopback port, and stops exactly that process at the
//! end. [`SluiceServer::start`] is the entry point; [`PrivateClickHouse`] is a real ClickHouse
//! for the tests that need one.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The repository's root, found from the package whose tests run (cargo sets
/// `CARGO_MANIFEST_DIR` when it runs them): read at run time, not compile time, since a
/// target folder shared between clones would otherwise point into another clone.
pub fn repo_root() -> PathBuf {
    let start = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::current_dir().expect("current folder"));
    start
        .ancestors()
        .find(|d| d.join("Cargo.lock").exists())
        .expect("inside the repository")
        .to_path_buf()
}

/// The `sluice` binary: `$SLUICE_BIN`, or the one cargo built next to this test.
pub fn sluice_bin() -> PathBuf {
    if let Ok(p) = std::env::var("SLUICE_BIN") {
        return PathBuf::from(p);
    }
    // target/<profile>/deps/e2e-<hash> -> target/<profile>/sluice
    let exe = std::env::current_exe().expect("test executable path");
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .expect("target folder")
        .join("sluice");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build --release -p sluice` first",
        bin.display()
    );
    bin
}

/// A small demo dataset (3 listeners, 2 years, `artists` artists) written by `sluice generate`.
pub fn generate(out: &Path, artists: u32) {
    let status = Command::new(sluice_bin())
        .args(["generate", "--users", "3", "--years", "2", "--artists"])
        .arg(artists.to_string())
        .arg("--out")
        .arg(out)
        .stdout(Stdio::null())
        .status()
        .expect("run sluice generate");
    assert!(status.success(), "sluice generate failed");
}

/// A running `sluice serve` over a freshly generated dataset.
#[derive(Debug)]
pub struct SluiceServer {
    child: Child,
    /// `host:port` it listens on.
    pub address: String,
    _data: tempfile::TempDir,
}

impl SluiceServer {
    /// Generates a small dataset and serves it with the demo logins.
    pub fn start() -> Self {
        let data = tempfile::tempdir().expect("temporary folder");
        let out = data.path().join("data");
        generate(&out, 50);
        let mut child = Command::new(sluice_bin())
            .args(["serve", "--listen", "127.0.0.1:0", "--data"])
            .arg(&out)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn sluice serve");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let mut address = None;
        for line in lines.by_ref() {
            let line = line.expect("read sluice output");
            if let Some(a) = line.strip_prefix("Flight SQL: grpc://") {
                address = Some(a.trim().to_string());
                break;
            }
        }
        // Keep draining, so the server never writes into a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        let address = address.expect("sluice reported no address");
        Self {
            child,
            address,
            _data: data,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }
}

impl Drop for SluiceServer {
    fn drop(&mut self) {
        // Stop exactly the process we started, by its id.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A private ClickHouse (Debian's `clickhouse-server`, started by `tests/servers/clickhouse.py`
/// on free loopback ports with its data in a temporary folder), stopped by process id.
#[derive(Debug)]
pub struct PrivateClickHouse {
    child: Child,
    /// Its HTTP interface.
    pub url: String,
    _dir: tempfile::TempDir,
}

impl PrivateClickHouse {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("temporary folder");
        let script = repo_root().join("tests/servers/clickhouse.py");
        let mut child = Command::new("python3")
            .arg(script)
            .arg(dir.path())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs the ClickHouse helper");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("the helper prints the server's URL");
        assert!(
            line.starts_with("http://"),
            "clickhouse-server did not start (tests/run.sh installs it): {line:?}"
        );
        Self {
            child,
            url: line.trim().to_string(),
            _dir: dir,
        }
    }
}

impl Drop for PrivateClickHouse {
    fn drop(&mut self) {
        // SIGTERM to the helper, which stops its server and waits for it.
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}
