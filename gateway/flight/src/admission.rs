//! Admission of queries into the process, all principals together: at most
//! `max_active_queries` running at once (one more is refused as busy, with UNAVAILABLE, which
//! clients may retry elsewhere or later), and none new once the process drains for shutdown.
//! A query is active from the start of its result stream to its end.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::session::Sessions;

/// The process's admission of queries; shared by the service and whoever shuts it down.
#[derive(Debug)]
pub struct Admission {
    /// 0: no limit.
    max_active: usize,
    active: AtomicUsize,
    draining: AtomicBool,
    /// When the last request came, in ms since `epoch`.
    last_request_ms: AtomicU64,
    epoch: Instant,
    /// Whose queries started ahead are stopped when the drain begins: no GetFlightInfo will
    /// claim them then, and they would hold the drain until the grace is over.
    sessions: Mutex<Weak<Sessions>>,
}

/// One admitted query; dropping it gives its place back.
#[derive(Debug)]
pub(crate) struct ActiveQuery(Arc<Admission>);

impl Admission {
    /// At most `max_active` queries at once (0: no limit).
    pub fn new(max_active: u32) -> Arc<Self> {
        Arc::new(Self {
            max_active: max_active as usize,
            active: AtomicUsize::new(0),
            draining: AtomicBool::new(false),
            last_request_ms: AtomicU64::new(0),
            epoch: Instant::now(),
            sessions: Mutex::new(Weak::new()),
        })
    }

    /// Notes that a request came (any call).
    pub(crate) fn touch(&self) {
        let now = self.epoch.elapsed().as_millis() as u64;
        self.last_request_ms.store(now, Ordering::Relaxed);
    }

    /// Refuses new statements once draining.
    pub(crate) fn check_open(&self) -> Result<()> {
        if self.draining.load(Ordering::SeqCst) {
            sluice_metrics::QUERIES
                .with_label_values(&["shutting_down", "none"])
                .inc();
            return Err(Error::ShuttingDown);
        }
        Ok(())
    }

    /// A place for one more running query, or a refusal when all are taken. A query
    /// planned before the drain began still runs during it.
    pub(crate) fn admit(self: &Arc<Self>) -> Result<ActiveQuery> {
        self.try_admit().ok_or_else(|| {
            sluice_metrics::QUERIES
                .with_label_values(&["busy", "none"])
                .inc();
            Error::Busy(format!(
                "Sluice is busy: {} queries are running, its limit ([server] \
                 max_active_queries); retry shortly",
                self.active.load(Ordering::SeqCst)
            ))
        })
    }

    /// A place for one more running query if one is free; a refusal here is not counted.
    pub(crate) fn try_admit(self: &Arc<Self>) -> Option<ActiveQuery> {
        self.active
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (self.max_active == 0 || n < self.max_active).then_some(n + 1)
            })
            .ok()
            .map(|_| {
                sluice_metrics::ACTIVE_QUERIES.inc();
                ActiveQuery(Arc::clone(self))
            })
    }

    /// Starts draining: from now on new statements are refused, and queries started ahead
    /// of a GetFlightInfo stop.
    pub fn drain(&self) {
        self.draining.store(true, Ordering::SeqCst);
        let sessions = self.sessions.lock().expect("sessions lock").upgrade();
        if let Some(sessions) = sessions {
            sessions.discard_unclaimed_of(None);
        }
    }

    pub(crate) fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// The sessions whose unclaimed queries [`Self::drain`] stops.
    pub(crate) fn serve_sessions(&self, sessions: &Arc<Sessions>) {
        *self.sessions.lock().expect("sessions lock") = Arc::downgrade(sessions);
    }

    /// Queries running now.
    pub fn active(&self) -> usize {
        self.active.load(Ordering::SeqCst)
    }

    /// Waits until no query runs and no request came for `quiet`: a client reads its last
    /// batch and then closes its prepared statement or session, which should still be
    /// answered. Behind a balancer that keeps sending calls (refused while draining), it
    /// settles once no query has run for eight times `quiet`.
    pub async fn settled(&self, quiet: Duration) {
        let mut idle_since: Option<Duration> = None;
        loop {
            let now = self.epoch.elapsed();
            let last = Duration::from_millis(self.last_request_ms.load(Ordering::Relaxed));
            if self.active() == 0 {
                let idle = now.saturating_sub(*idle_since.get_or_insert(now));
                if now.saturating_sub(last) >= quiet || idle >= quiet * 8 {
                    return;
                }
            } else {
                idle_since = None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for ActiveQuery {
    fn drop(&mut self) {
        sluice_metrics::ACTIVE_QUERIES.dec();
        self.0.active.fetch_sub(1, Ordering::SeqCst);
        self.0.touch();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn busy_past_the_limit_and_idle_when_all_end() {
        let admission = Admission::new(2);
        let a = admission.admit().unwrap();
        let b = admission.admit().unwrap();
        let busy = admission.admit().unwrap_err();
        assert_eq!(busy.code(), tonic::Code::Unavailable);
        assert!(busy.to_string().contains("max_active_queries"), "{busy}");
        drop(a);
        let c = admission.admit().unwrap();

        admission.drain();
        assert!(matches!(admission.check_open(), Err(Error::ShuttingDown)));
        let quiet = Duration::from_millis(50);
        let waiting = tokio::spawn({
            let admission = Arc::clone(&admission);
            async move { admission.settled(quiet).await }
        });
        drop(b);
        tokio::time::sleep(quiet * 3).await;
        assert!(!waiting.is_finished(), "one query still runs");
        drop(c);
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("settled once every query ended")
            .unwrap();
    }
}
