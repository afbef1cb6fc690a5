//! Per-session state kept between calls: settings, prepared statements, planned queries
//! waiting for their DoGet, and running queries that CancelFlightInfo can stop.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use datafusion::common::ScalarValue;
use sluice_auth::Principal;
use sluice_planner::{Query, SessionSettings};
use tokio::sync::oneshot;
use tracing::Span;

/// How long a planned query waits for its DoGet.
const TICKET_TTL: Duration = Duration::from_secs(300);
/// How long an unused session keeps its settings and prepared statements.
const SESSION_IDLE_TTL: Duration = Duration::from_secs(24 * 3600);

/// How long the plan made by CreatePreparedStatement may serve the GetFlightInfo after it.
/// ADBC prepares every query it runs and asks for it at once; a plan kept longer would run
/// on an old `W` (and the hot store keeps events from before `W` only for its grace period).
const FIRST_PLAN_TTL: Duration = Duration::from_secs(1);

/// A prepared statement: its SQL, the parameter values bound last, and the plan made when
/// it was prepared, until its first GetFlightInfo.
#[derive(Debug, Clone)]
pub(crate) struct Prepared {
    pub(crate) sql: String,
    pub(crate) params: Option<Vec<ScalarValue>>,
    pub(crate) first_plan: FirstPlan,
}

/// The plan CreatePreparedStatement made, for the GetFlightInfo that follows (so an ADBC
/// query is planned once, not twice). Shared by the clones of its [`Prepared`], used once.
#[derive(Debug, Clone, Default)]
pub(crate) struct FirstPlan(Arc<Mutex<Option<(Query, SessionSettings, Instant)>>>);

impl FirstPlan {
    pub(crate) fn new(query: Query, settings: SessionSettings) -> Self {
        Self(Arc::new(Mutex::new(Some((
            query,
            settings,
            Instant::now(),
        )))))
    }

    /// The plan, if it is fresh and was made with the same `settings`; it is given once.
    pub(crate) fn take(&self, settings: &SessionSettings) -> Option<Query> {
        let (query, made_with, at) = self.0.lock().expect("first plan lock").take()?;
        (at.elapsed() < FIRST_PLAN_TTL && made_with == *settings).then_some(query)
    }
}

#[derive(Debug)]
struct Pending {
    query: Query,
    principal: Arc<Principal>,
    /// The query's span, open from planning to its last batch.
    span: Span,
    planned_at: Instant,
}

/// One client session, keyed by its bearer token.
#[derive(Debug)]
pub(crate) struct Session {
    pub(crate) settings: SessionSettings,
    pub(crate) prepared: HashMap<Vec<u8>, Prepared>,
    last_used: Instant,
}

/// All sessions and the queries between GetFlightInfo and DoGet.
#[derive(Debug, Default)]
pub(crate) struct Sessions {
    sessions: Mutex<HashMap<String, Session>>,
    pending: Mutex<HashMap<Vec<u8>, Pending>>,
    running: Mutex<HashMap<Vec<u8>, oneshot::Sender<()>>>,
}

impl Sessions {
    /// Runs `f` on the session of `key`, creating it if needed.
    pub(crate) fn with<T>(&self, key: &str, f: impl FnOnce(&mut Session) -> T) -> T {
        let now = Instant::now();
        let mut sessions = self.sessions.lock().expect("sessions lock");
        if !sessions.contains_key(key) {
            // Clients that never send CloseSession leave their sessions behind.
            sessions.retain(|_, s| now.duration_since(s.last_used) < SESSION_IDLE_TTL);
        }
        let session = sessions.entry(key.to_string()).or_insert_with(|| Session {
            settings: SessionSettings::default(),
            prepared: HashMap::new(),
            last_used: now,
        });
        session.last_used = now;
        f(session)
    }

    pub(crate) fn close(&self, key: &str) {
        self.sessions.lock().expect("sessions lock").remove(key);
    }

    /// Keeps a planned query until its DoGet; returns its ticket id.
    pub(crate) fn park(&self, query: Query, principal: Arc<Principal>, span: Span) -> Vec<u8> {
        let id = rand::random::<[u8; 16]>().to_vec();
        let now = Instant::now();
        let mut pending = self.pending.lock().expect("pending lock");
        pending.retain(|_, p| now.duration_since(p.planned_at) < TICKET_TTL);
        pending.insert(
            id.clone(),
            Pending {
                query,
                principal,
                span,
                planned_at: now,
            },
        );
        id
    }

    /// Takes the query of a ticket; only the principal that planned it may.
    pub(crate) fn take(&self, id: &[u8], principal: &Principal) -> Option<(Query, Span)> {
        let mut pending = self.pending.lock().expect("pending lock");
        match pending.get(id) {
            Some(p) if *p.principal == *principal => pending.remove(id).map(|p| (p.query, p.span)),
            _ => None,
        }
    }

    /// Registers a running query; the receiver fires when it is cancelled.
    pub(crate) fn start(&self, id: &[u8]) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        self.running
            .lock()
            .expect("running lock")
            .insert(id.to_vec(), tx);
        rx
    }

    pub(crate) fn finish(&self, id: &[u8]) {
        self.running.lock().expect("running lock").remove(id);
    }

    /// Cancels a query by ticket id, whether it is waiting for DoGet or running. Returns
    /// whether there was anything to cancel.
    pub(crate) fn cancel(&self, id: &[u8]) -> bool {
        if self
            .pending
            .lock()
            .expect("pending lock")
            .remove(id)
            .is_some()
        {
            return true;
        }
        match self.running.lock().expect("running lock").remove(id) {
            Some(tx) => tx.send(()).is_ok(),
            None => false,
        }
    }
}
