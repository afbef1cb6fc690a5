//! The audit trail: one record per statement a principal sends — who, what, how it was
//! answered (route, sources), rows, duration and outcome — to the log (target
//! `sluice::audit`) and, when configured, as one JSON line per record to a file.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;
use sluice_auth::Principal;
use tracing::{info, warn};

/// Where audit records go.
#[derive(Debug, Default)]
pub struct AuditLog {
    file: Option<Mutex<File>>,
}

impl AuditLog {
    /// Records to the log only.
    pub fn to_log() -> Self {
        Self::default()
    }

    /// Records to the log and appends them to `path` (created if missing).
    pub fn with_file(path: &Path) -> std::io::Result<Self> {
        let file = File::options().create(true).append(true).open(path)?;
        Ok(Self {
            file: Some(Mutex::new(file)),
        })
    }

    pub(crate) fn record(&self, r: &AuditRecord<'_>) {
        info!(
            target: "sluice::audit",
            principal = r.principal,
            role = r.role,
            user_id = r.user_id,
            outcome = r.outcome,
            rows = r.rows,
            elapsed_ms = r.elapsed_ms,
            route = r.route,
            sources = ?r.sources,
            error = r.error,
            client = r.client,
            sql = r.sql,
            "query"
        );
        if let Some(file) = &self.file {
            let mut line = serde_json::to_vec(r).expect("an audit record serializes");
            line.push(b'\n');
            // One write per record, so concurrent records never interleave.
            if let Err(e) = file.lock().expect("audit file lock").write_all(&line) {
                warn!(error = %e, "writing the audit file");
            }
        }
    }
}

/// One statement's audit record.
#[derive(Debug, Serialize)]
pub(crate) struct AuditRecord<'a> {
    /// When the record was written, RFC 3339.
    pub(crate) time: String,
    pub(crate) principal: &'a str,
    pub(crate) role: &'static str,
    /// The listener a listener principal is bound to.
    pub(crate) user_id: Option<&'a str>,
    pub(crate) sql: &'a str,
    /// `ok`, `refused` (the request was wrong or not allowed), `failed`, `cancelled`,
    /// `timeout`, `too_many_rows`, `client_gone`.
    pub(crate) outcome: &'a str,
    pub(crate) route: &'a str,
    pub(crate) sources: &'a [String],
    pub(crate) rows: u64,
    pub(crate) elapsed_ms: f64,
    pub(crate) error: Option<&'a str>,
    /// The client's `user-agent`: which library (or `sluice-mcp`, for an MCP tool call).
    pub(crate) client: Option<&'a str>,
}

impl<'a> AuditRecord<'a> {
    pub(crate) fn new(principal: &'a Principal, sql: &'a str, outcome: &'a str) -> Self {
        Self {
            time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            principal: principal.name(),
            role: principal.role().as_str(),
            user_id: principal.scope(),
            sql,
            outcome,
            route: "",
            sources: &[],
            rows: 0,
            elapsed_ms: 0.0,
            error: None,
            client: None,
        }
    }

    pub(crate) fn elapsed(mut self, d: Duration) -> Self {
        self.elapsed_ms = d.as_secs_f64() * 1e3;
        self
    }
}
