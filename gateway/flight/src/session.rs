//! What this replica keeps between calls: each session's settings as changed here, the
//! prepared statements it prepared (the plan made ahead, the parameters bound here), queries
//! started by GetFlightInfo waiting for their DoGet, and running queries that
//! CancelFlightInfo can stop. None of it is needed to answer a call: what a client carries
//! (`client_state.rs`, the session token) is enough on any replica; this only saves work,
//! and keeps settings and parameters for clients that do not take a token or handle given
//! back to them.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow_flight::FlightData;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::ScalarValue;
use futures::Stream;
use sluice_auth::Principal;
use sluice_planner::{Query, SessionSettings};
use tokio::sync::oneshot;
use tonic::Status;
use tracing::Span;

/// How long a started query waits for its DoGet. Clients send it as soon as the FlightInfo
/// arrives; one that never does would otherwise keep the query's place and permit.
pub(crate) const TICKET_TTL: Duration = Duration::from_secs(30);
/// How long an unused session keeps its settings and prepared statements.
const SESSION_IDLE_TTL: Duration = Duration::from_secs(24 * 3600);

/// How long the plan made by CreatePreparedStatement, or the query it started, may serve
/// the GetFlightInfo after it. ADBC prepares every query it runs and asks for it at once; a
/// plan kept longer would run on an old `W` (and the hot store keeps events from before `W`
/// only for its grace period), and a query started longer ago would answer from an older
/// snapshot than its caller expects.
const FIRST_PLAN_TTL: Duration = Duration::from_secs(1);

/// A prepared statement: its SQL, the parameter values bound last, and the plan made when
/// it was prepared, until its first GetFlightInfo (when this replica prepared it).
#[derive(Debug, Clone)]
pub(crate) struct Prepared {
    pub(crate) sql: String,
    pub(crate) params: Option<Vec<ScalarValue>>,
    pub(crate) first_plan: FirstPlan,
}

/// What this replica knows of a prepared statement beyond its handle.
#[derive(Debug, Clone, Default)]
pub(crate) struct LocalPrepared {
    /// The parameters bound here last, and which binding of the statement that was.
    pub(crate) params: Option<Vec<ScalarValue>>,
    pub(crate) binds: u64,
    pub(crate) first_plan: FirstPlan,
}

/// What CreatePreparedStatement did ahead of the GetFlightInfo that follows it.
#[derive(Debug)]
pub(crate) enum Ahead {
    /// The statement is planned (so an ADBC query is planned once, not twice), in the
    /// query span its GetFlightInfo goes on with.
    Planned(Box<Query>, Span),
    /// The query is running too, parked unclaimed under `ticket` (its span goes with it):
    /// its sources are read while the client receives the prepared statement and sends its
    /// GetFlightInfo.
    Started {
        ticket: Vec<u8>,
        schema: SchemaRef,
        /// The manifest as JSON, for the FlightInfo's `app_metadata`.
        manifest: String,
        /// The ingests through this gateway counted when it started: one more since, and
        /// the query runs again, so it sees what was ingested.
        ingests: u64,
        /// The query's `W`, for its ticket.
        watermark_ms: i64,
    },
}

/// What CreatePreparedStatement did ahead, for the GetFlightInfo right after it. Shared by
/// the clones of its [`Prepared`], used once.
#[derive(Debug, Clone, Default)]
pub(crate) struct FirstPlan(Arc<Mutex<Option<(Ahead, SessionSettings, Instant)>>>);

impl FirstPlan {
    pub(crate) fn new(ahead: Ahead, settings: SessionSettings) -> Self {
        Self(Arc::new(Mutex::new(Some((
            ahead,
            settings,
            Instant::now(),
        )))))
    }

    /// What was done ahead, once, with whether it may serve a GetFlightInfo under
    /// `settings` now (fresh, and made with the same settings). A started query that may
    /// not is for the caller to discard.
    pub(crate) fn take(&self, settings: &SessionSettings) -> Option<(Ahead, bool)> {
        let (ahead, made_with, at) = self.0.lock().expect("first plan lock").take()?;
        let usable = at.elapsed() < FIRST_PLAN_TTL && made_with == *settings;
        Some((ahead, usable))
    }

    /// Stops the query started ahead if no GetFlightInfo took it (its statement closes).
    pub(crate) fn discard(&self, sessions: &Sessions) {
        let taken = self.0.lock().expect("first plan lock").take();
        if let Some((Ahead::Started { ticket, .. }, ..)) = taken {
            sessions.discard_unclaimed(&ticket);
        }
    }
}

/// The Flight data of a started query, as its DoGet answers it.
pub(crate) type FlightDataStream = Pin<Box<dyn Stream<Item = Result<FlightData, Status>> + Send>>;

/// A started query waiting for its DoGet; dropping it stops the query. One started by
/// CreatePreparedStatement is unclaimed until its GetFlightInfo hands its ticket out.
struct Pending {
    stream: FlightDataStream,
    principal: Arc<Principal>,
    /// Dropped when this passes without a DoGet (or, unclaimed, a GetFlightInfo).
    expires_at: Instant,
    claimed: bool,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending")
            .field("principal", &self.principal.name())
            .field("expires_at", &self.expires_at)
            .field("claimed", &self.claimed)
            .finish_non_exhaustive()
    }
}

/// One client session as this replica knows it, keyed by the session's id.
#[derive(Debug)]
pub(crate) struct Session {
    pub(crate) settings: SessionSettings,
    /// Which change of the session's settings `settings` is (0: none yet).
    pub(crate) version: u64,
    /// By handle id.
    pub(crate) prepared: HashMap<Vec<u8>, LocalPrepared>,
    last_used: Instant,
}

impl Session {
    /// Takes the settings a session token carries when they are newer than this
    /// replica's (changed on another replica since).
    pub(crate) fn catch_up(&mut self, token: &sluice_auth::Session) -> crate::error::Result<()> {
        if token.version() > self.version {
            let pairs = token
                .settings()
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()));
            self.settings = SessionSettings::from_pairs(pairs)?;
            self.version = token.version();
        }
        Ok(())
    }
}

/// All sessions and the queries between GetFlightInfo and DoGet.
#[derive(Debug, Default)]
pub(crate) struct Sessions {
    sessions: Mutex<HashMap<String, Session>>,
    pending: Mutex<HashMap<Vec<u8>, Pending>>,
    /// Running queries; the signal carries the outcome they end with.
    running: Mutex<HashMap<Vec<u8>, oneshot::Sender<&'static str>>>,
    /// Tickets cancelled here, until they expire: their DoGet is refused rather than the
    /// query run again from the ticket.
    cancelled: Mutex<HashMap<Vec<u8>, Instant>>,
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
            version: 0,
            prepared: HashMap::new(),
            last_used: now,
        });
        session.last_used = now;
        f(session)
    }

    pub(crate) fn close(&self, key: &str) {
        self.sessions.lock().expect("sessions lock").remove(key);
    }

    /// A new ticket id: random, so one client cannot guess another's.
    pub(crate) fn new_ticket_id() -> Vec<u8> {
        rand::random::<[u8; 16]>().to_vec()
    }

    /// Keeps a query started by GetFlightInfo until its DoGet.
    pub(crate) fn park(&self, id: Vec<u8>, stream: FlightDataStream, principal: Arc<Principal>) {
        self.insert_pending(id, stream, principal, true, TICKET_TTL);
    }

    /// Keeps a query started by CreatePreparedStatement until its GetFlightInfo claims it.
    pub(crate) fn park_unclaimed(
        &self,
        id: Vec<u8>,
        stream: FlightDataStream,
        principal: Arc<Principal>,
    ) {
        self.insert_pending(id, stream, principal, false, FIRST_PLAN_TTL);
    }

    fn insert_pending(
        &self,
        id: Vec<u8>,
        stream: FlightDataStream,
        principal: Arc<Principal>,
        claimed: bool,
        ttl: Duration,
    ) {
        let pending = Pending {
            stream,
            principal,
            expires_at: Instant::now() + ttl,
            claimed,
        };
        self.pending
            .lock()
            .expect("pending lock")
            .insert(id, pending);
    }

    /// Hands out the ticket of a query started by CreatePreparedStatement: it then waits
    /// for its DoGet like one started by GetFlightInfo. False if it is gone (expired).
    pub(crate) fn claim(&self, id: &[u8], principal: &Principal) -> bool {
        let mut pending = self.pending.lock().expect("pending lock");
        match pending.get_mut(id) {
            Some(p) if !p.claimed && *p.principal == *principal => {
                p.claimed = true;
                p.expires_at = Instant::now() + TICKET_TTL;
                true
            }
            _ => false,
        }
    }

    /// Stops the started queries whose DoGet (or GetFlightInfo) did not come in time.
    pub(crate) fn drop_expired_tickets(&self) {
        self.drop_expired_at(Instant::now());
    }

    fn drop_expired_at(&self, now: Instant) {
        self.drop_pending(|_, p| now >= p.expires_at);
    }

    /// Stops a query started by CreatePreparedStatement that will not be claimed.
    pub(crate) fn discard_unclaimed(&self, id: &[u8]) {
        self.drop_pending(|key, p| !p.claimed && key == id);
    }

    /// Stops every unclaimed query of `principal` (of everyone: `None`), which frees their
    /// places for a query that was asked for.
    pub(crate) fn discard_unclaimed_of(&self, principal: Option<&Principal>) -> bool {
        self.drop_pending(|_, p| !p.claimed && principal.is_none_or(|w| *p.principal == *w))
    }

    /// Removes and stops the waiting queries `which` selects; the unclaimed ones end as
    /// `unused`. Returns whether there were any.
    fn drop_pending(&self, which: impl Fn(&[u8], &Pending) -> bool) -> bool {
        let dropped: Vec<(Vec<u8>, Pending)> = self
            .pending
            .lock()
            .expect("pending lock")
            .extract_if(|id, p| which(id, p))
            .collect();
        for (id, p) in &dropped {
            if !p.claimed {
                self.signal(id, "unused");
            }
        }
        // Dropped outside the lock: a query's end records itself (and takes other locks).
        let any = !dropped.is_empty();
        drop(dropped);
        any
    }

    /// Takes the started query of a ticket handed out by a FlightInfo; only the principal
    /// that started it may.
    pub(crate) fn take(&self, id: &[u8], principal: &Principal) -> Option<FlightDataStream> {
        let mut pending = self.pending.lock().expect("pending lock");
        match pending.get(id) {
            Some(p) if p.claimed && *p.principal == *principal => {
                pending.remove(id).map(|p| p.stream)
            }
            _ => None,
        }
    }

    /// Whether the query of ticket `id` was cancelled here.
    pub(crate) fn was_cancelled(&self, id: &[u8]) -> bool {
        self.cancelled
            .lock()
            .expect("cancelled lock")
            .get(id)
            .is_some_and(|until| *until > Instant::now())
    }

    /// Registers a running query; the receiver fires, with the outcome to record, when it
    /// is cancelled or discarded.
    pub(crate) fn start(&self, id: &[u8]) -> oneshot::Receiver<&'static str> {
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

    /// Tells a running query the outcome it ends with; false if it is not running.
    fn signal(&self, id: &[u8], outcome: &'static str) -> bool {
        let signal = self.running.lock().expect("running lock").remove(id);
        signal.is_some_and(|tx| tx.send(outcome).is_ok())
    }

    /// Cancels a query by ticket id, whether it is waiting for its DoGet or streaming.
    /// Returns whether there was anything to cancel.
    pub(crate) fn cancel(&self, id: &[u8]) -> bool {
        let now = Instant::now();
        {
            let mut cancelled = self.cancelled.lock().expect("cancelled lock");
            cancelled.retain(|_, until| *until > now);
            cancelled.insert(id.to_vec(), now + TICKET_TTL);
        }
        let signalled = self.signal(id, "cancelled");
        // One still waiting for its DoGet stops now (dropped outside the lock: it records
        // its end, as cancelled, by the signal above).
        let waiting = self.pending.lock().expect("pending lock").remove(id);
        signalled || waiting.is_some()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use sluice_auth::Role;

    use super::*;

    /// A stream of no data that counts its drops (a dropped stream is a stopped query).
    fn stream(dropped: &Arc<AtomicUsize>) -> FlightDataStream {
        struct CountDrop(Arc<AtomicUsize>);
        impl Drop for CountDrop {
            fn drop(&mut self) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let guard = CountDrop(Arc::clone(dropped));
        Box::pin(futures::stream::poll_fn(move |_| {
            let _owns = &guard;
            std::task::Poll::Ready(None)
        }))
    }

    /// No sessions yet, a drop counter, and two listeners: alice (who starts queries) and
    /// bob.
    fn two_listeners() -> (Sessions, Arc<AtomicUsize>, Arc<Principal>, Principal) {
        (
            Sessions::default(),
            Arc::new(AtomicUsize::new(0)),
            Arc::new(Principal::new("alice", Role::Listener, Some("u0001"))),
            Principal::new("bob", Role::Listener, Some("u0002")),
        )
    }

    #[test]
    fn a_started_query_waits_for_its_principal_and_stops_when_cancelled_or_expired() {
        let (sessions, dropped, alice, bob) = two_listeners();

        let id = Sessions::new_ticket_id();
        sessions.park(id.clone(), stream(&dropped), Arc::clone(&alice));
        assert!(
            sessions.take(&id, &bob).is_none(),
            "another principal's ticket"
        );
        assert!(sessions.take(&id, &alice).is_some());
        assert!(
            sessions.take(&id, &alice).is_none(),
            "a ticket is redeemed once"
        );

        let id = Sessions::new_ticket_id();
        sessions.park(id.clone(), stream(&dropped), Arc::clone(&alice));
        let before = dropped.load(Ordering::SeqCst);
        assert!(sessions.cancel(&id));
        assert_eq!(
            dropped.load(Ordering::SeqCst),
            before + 1,
            "cancel stops it"
        );
        assert!(sessions.take(&id, &alice).is_none());

        let id = Sessions::new_ticket_id();
        sessions.park(id.clone(), stream(&dropped), Arc::clone(&alice));
        sessions.drop_expired_tickets();
        assert!(sessions.take(&id, &alice).is_some(), "fresh tickets stay");
        let id = Sessions::new_ticket_id();
        sessions.park(id.clone(), stream(&dropped), alice);
        let before = dropped.load(Ordering::SeqCst);
        sessions.drop_expired_at(Instant::now() + TICKET_TTL);
        assert_eq!(
            dropped.load(Ordering::SeqCst),
            before + 1,
            "expiry stops it"
        );
    }

    #[test]
    fn a_query_started_at_prepare_is_fetched_only_after_its_claim_and_ends_unused_otherwise() {
        let (sessions, dropped, alice, bob) = two_listeners();

        let id = Sessions::new_ticket_id();
        sessions.park_unclaimed(id.clone(), stream(&dropped), Arc::clone(&alice));
        assert!(sessions.take(&id, &alice).is_none(), "not handed out yet");
        assert!(!sessions.claim(&id, &bob), "another principal's query");
        assert!(sessions.claim(&id, &alice));
        assert!(!sessions.claim(&id, &alice), "claimed once");
        sessions.drop_expired_at(Instant::now() + FIRST_PLAN_TTL);
        assert!(
            sessions.take(&id, &alice).is_some(),
            "a claimed query waits as long as any ticket"
        );

        // Unclaimed: discarded, it ends as unused.
        let id = Sessions::new_ticket_id();
        let mut outcome = sessions.start(&id);
        sessions.park_unclaimed(id.clone(), stream(&dropped), Arc::clone(&alice));
        let before = dropped.load(Ordering::SeqCst);
        assert!(!sessions.discard_unclaimed_of(Some(&bob)), "only its own");
        assert!(sessions.discard_unclaimed_of(Some(&alice)));
        assert_eq!(dropped.load(Ordering::SeqCst), before + 1);
        assert_eq!(outcome.try_recv(), Ok("unused"));
        assert!(!sessions.claim(&id, &alice), "gone");

        // And expires sooner than a ticket.
        let id = Sessions::new_ticket_id();
        sessions.park_unclaimed(id.clone(), stream(&dropped), alice);
        sessions.drop_expired_at(Instant::now() + FIRST_PLAN_TTL);
        assert_eq!(dropped.load(Ordering::SeqCst), before + 2);
    }
}
