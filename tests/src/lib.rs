//! Harness for the end-to-end tests: generates a dataset with the real `sluice` binary,
//! spawns `sluice serve` on a free loopback port, and stops exactly that process at the
//! end. [`SluiceServer::start`] is the entry point.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

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
        let status = Command::new(sluice_bin())
            .args([
                "generate",
                "--users",
                "3",
                "--years",
                "2",
                "--artists",
                "50",
                "--out",
            ])
            .arg(&out)
            .stdout(Stdio::null())
            .status()
            .expect("run sluice generate");
        assert!(status.success(), "sluice generate failed");
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
