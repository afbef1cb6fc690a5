//! Per-session state kept between calls: settings, prepared statements, queries started by
//! GetFlightInfo waiting for their DoGet, and running queries that CancelFlightInfo can stop.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow_flight::FlightData;
use datafusion::common::ScalarValue;
use futures::Stream;
use sluice_auth::Principal;
use sluice_planner::{Query, SessionSettings};
use tokio::sync::oneshot;
use tonic::Status;

/// How long a started query waits for its DoGet. Clients send it as soon as the FlightInfo
/// arrives; one that never does would otherwise keep the query's place and permit.
const TICKET_TTL: Duration = Duration::from_secs(30);
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

/// The Flight data of a started query, as its DoGet answers it.
pub(crate) type FlightDataStream = Pin<Box<dyn Stream<Item = Result<FlightData, Status>> + Send>>;

/// A query started by GetFlightInfo; dropping it stops the query.
struct Pending {
    stream: FlightDataStream,
    principal: Arc<Principal>,
    started_at: Instant,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending")
            .field("principal", &self.principal.name())
            .field("started_at", &self.started_at)
            .finish_non_exhaustive()
    }
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

    /// A new ticket id: random, so one client cannot guess another's.
    pub(crate) fn new_ticket_id() -> Vec<u8> {
        rand::random::<[u8; 16]>().to_vec()
    }

    /// Keeps a started query until its DoGet.
    pub(crate) fn park(&self, id: Vec<u8>, stream: FlightDataStream, principal: Arc<Principal>) {
        let pending = Pending {
            stream,
            principal,
            started_at: Instant::now(),
        };
        self.pending
            .lock()
            .expect("pending lock")
            .insert(id, pending);
    }

    /// Stops the started queries whose DoGet did not come in time.
    pub(crate) fn drop_expired_tickets(&self) {
        self.drop_tickets_older_than(TICKET_TTL);
    }

    fn drop_tickets_older_than(&self, ttl: Duration) {
        let now = Instant::now();
        let expired: Vec<(Vec<u8>, Pending)> = self
            .pending
            .lock()
            .expect("pending lock")
            .extract_if(|_, p| now.duration_since(p.started_at) >= ttl)
            .collect();
        // Dropped outside the lock: a query's end records itself (and takes other locks).
        drop(expired);
    }

    /// Takes the started query of a ticket; only the principal that started it may.
    pub(crate) fn take(&self, id: &[u8], principal: &Principal) -> Option<FlightDataStream> {
        let mut pending = self.pending.lock().expect("pending lock");
        match pending.get(id) {
            Some(p) if *p.principal == *principal => pending.remove(id).map(|p| p.stream),
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

    /// Cancels a query by ticket id, whether it is waiting for its DoGet or streaming.
    /// Returns whether there was anything to cancel.
    pub(crate) fn cancel(&self, id: &[u8]) -> bool {
        let signal = self.running.lock().expect("running lock").remove(id);
        let signalled = signal.is_some_and(|tx| tx.send(()).is_ok());
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

    #[test]
    fn a_started_query_waits_for_its_principal_and_stops_when_cancelled_or_expired() {
        let sessions = Sessions::default();
        let dropped = Arc::new(AtomicUsize::new(0));
        let alice = Arc::new(Principal::new("alice", Role::Listener, Some("u0001")));
        let bob = Principal::new("bob", Role::Listener, Some("u0002"));

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
        sessions.drop_tickets_older_than(Duration::ZERO);
        assert_eq!(
            dropped.load(Ordering::SeqCst),
            before + 1,
            "expiry stops it"
        );
    }
}
