//! Operator memory (sorts, joins, aggregates): each query draws from its own pool, held to
//! its principal's `query_memory_mb`, and every query's pool draws from the process's
//! [`MemoryBudget`], so that neither one heavy query nor many together can take the
//! process down. Past either limit DataFusion spills where it can, else the query fails
//! with ResourcesExhausted naming the limit; other queries go on.

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use datafusion::common::{Result, resources_datafusion_err};
use datafusion::execution::memory_pool::{
    MemoryLimit, MemoryPool, MemoryReservation, TrackConsumersPool,
};

const MIB: usize = 1024 * 1024;

/// The operator memory of all running queries together.
#[derive(Debug)]
pub struct MemoryBudget {
    /// `usize::MAX`: no limit.
    limit: usize,
    used: AtomicUsize,
}

impl MemoryBudget {
    /// A budget of `limit_bytes`; `None`: unlimited (still counted, for the metrics).
    pub fn new(limit_bytes: Option<u64>) -> Arc<Self> {
        let limit = limit_bytes.map_or(usize::MAX, |b| usize::try_from(b).unwrap_or(usize::MAX));
        if limit != usize::MAX {
            sluice_metrics::MEMORY_POOL_LIMIT_BYTES.set(i64::try_from(limit).unwrap_or(i64::MAX));
        }
        Arc::new(Self {
            limit,
            used: AtomicUsize::new(0),
        })
    }

    /// Bytes reserved by running queries now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    fn add(&self, bytes: usize) {
        publish(self.used.fetch_add(bytes, Ordering::Relaxed) + bytes);
    }

    fn sub(&self, bytes: usize) {
        let now = self.used.fetch_sub(bytes, Ordering::Relaxed) - bytes;
        publish(now);
    }

    fn try_add(&self, bytes: usize) -> std::result::Result<(), usize> {
        let previous = self
            .used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                used.checked_add(bytes).filter(|n| *n <= self.limit)
            })?;
        publish(previous + bytes);
        Ok(())
    }

    /// One query's pool, within this budget: at most `query_limit_bytes` (None: the
    /// budget is its only limit). Errors name `owner`.
    pub(crate) fn query_pool(
        self: &Arc<Self>,
        owner: &str,
        query_limit_bytes: Option<u64>,
    ) -> Arc<dyn MemoryPool> {
        let pool = QueryMemoryPool {
            owner: owner.to_string(),
            limit: query_limit_bytes
                .map_or(usize::MAX, |b| usize::try_from(b).unwrap_or(usize::MAX)),
            used: AtomicUsize::new(0),
            budget: Arc::clone(self),
        };
        // The error then names the largest consumers, which says what to change.
        Arc::new(TrackConsumersPool::new(
            pool,
            NonZeroUsize::new(3).expect("3 > 0"),
        ))
    }
}

fn publish(bytes: usize) {
    sluice_metrics::MEMORY_POOL_BYTES.set(i64::try_from(bytes).unwrap_or(i64::MAX));
}

/// One query's pool.
#[derive(Debug)]
struct QueryMemoryPool {
    owner: String,
    limit: usize,
    used: AtomicUsize,
    budget: Arc<MemoryBudget>,
}

impl std::fmt::Display for QueryMemoryPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "query pool of {} ({} bytes in use)",
            self.owner,
            self.reserved()
        )
    }
}

impl MemoryPool for QueryMemoryPool {
    fn name(&self) -> &str {
        "sluice-query"
    }

    fn grow(&self, _reservation: &MemoryReservation, additional: usize) {
        self.used.fetch_add(additional, Ordering::Relaxed);
        self.budget.add(additional);
    }

    fn shrink(&self, _reservation: &MemoryReservation, shrink: usize) {
        self.used.fetch_sub(shrink, Ordering::Relaxed);
        self.budget.sub(shrink);
    }

    fn try_grow(&self, _reservation: &MemoryReservation, additional: usize) -> Result<()> {
        self.used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                used.checked_add(additional).filter(|n| *n <= self.limit)
            })
            .map_err(|used| {
                resources_datafusion_err!(
                    "the query of {} needs more than {} MB of operator memory, its limit \
                     (query_memory_mb; {} MB in use, {} MB more asked)",
                    self.owner,
                    self.limit / MIB,
                    used / MIB,
                    additional.div_ceil(MIB)
                )
            })?;
        if self.budget.try_add(additional).is_err() {
            self.used.fetch_sub(additional, Ordering::Relaxed);
            return Err(resources_datafusion_err!(
                "Sluice's memory pool ({} MB, [server] memory_pool_mb) is taken by the \
                 queries running now; try again shortly, or narrow the query",
                self.budget.limit / MIB
            ));
        }
        Ok(())
    }

    fn reserved(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    fn memory_limit(&self) -> MemoryLimit {
        match self.limit.min(self.budget.limit) {
            usize::MAX => MemoryLimit::Infinite,
            n => MemoryLimit::Finite(n),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::execution::memory_pool::MemoryConsumer;

    #[test]
    fn a_query_is_held_to_its_limit_and_all_to_the_budget() {
        let budget = MemoryBudget::new(Some(10 * MIB as u64));
        let a = budget.query_pool("a", Some(6 * MIB as u64));
        let b = budget.query_pool("b", None);
        let ra = MemoryConsumer::new("sort").register(&a);
        let rb = MemoryConsumer::new("join").register(&b);

        ra.try_grow(5 * MIB).unwrap();
        let e = ra.try_grow(2 * MIB).unwrap_err().to_string();
        assert!(
            e.contains("the query of a needs more than 6 MB") && e.contains("query_memory_mb"),
            "{e}"
        );

        rb.try_grow(5 * MIB).unwrap();
        assert_eq!(budget.used(), 10 * MIB);
        let e = rb.try_grow(MIB).unwrap_err().to_string();
        assert!(e.contains("memory_pool_mb"), "{e}");
        assert_eq!(b.reserved(), 5 * MIB, "a refused grow takes nothing");

        ra.shrink(5 * MIB);
        rb.try_grow(MIB).unwrap();
        drop(rb);
        drop(ra);
        assert_eq!(budget.used(), 0);
    }
}
