//! Each principal's concurrent queries, held to its `max_concurrent_queries`. The other
//! limits travel with the query: time and rows in [`crate::results`], memory in its plan.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use sluice_auth::Principal;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::{Error, Result};

/// One semaphore per principal name.
#[derive(Debug, Default)]
pub(crate) struct ConcurrencyLimiter {
    slots: Mutex<HashMap<Arc<str>, Arc<Semaphore>>>,
}

impl ConcurrencyLimiter {
    /// A slot for one more query of `principal`, or a refusal if all its slots are taken.
    pub(crate) fn acquire(&self, principal: &Principal) -> Result<OwnedSemaphorePermit> {
        let max = principal.limits().max_concurrent_queries;
        let semaphore = {
            let mut slots = self.slots.lock().expect("slots lock");
            let semaphore = slots
                .entry(principal.name().into())
                .or_insert_with(|| Arc::new(Semaphore::new(max as usize)));
            Arc::clone(semaphore)
        };
        semaphore.try_acquire_owned().map_err(|_| {
            Error::Limit(format!(
                "{} already runs {max} queries, its limit (max_concurrent_queries); \
                 wait for one to finish",
                principal.name()
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_auth::{Limits, Role};

    #[test]
    fn slots_are_per_principal_and_come_back() {
        let limiter = ConcurrencyLimiter::default();
        let limits = Limits {
            max_concurrent_queries: 2,
            ..Limits::default()
        };
        let a = Principal::new("a", Role::Analyst, None).with_limits(limits);
        let b = Principal::new("b", Role::Analyst, None).with_limits(limits);
        let first = limiter.acquire(&a).unwrap();
        let _second = limiter.acquire(&a).unwrap();
        let refused = limiter.acquire(&a).unwrap_err().to_string();
        assert!(refused.contains("max_concurrent_queries"), "{refused}");
        assert!(limiter.acquire(&b).is_ok());
        drop(first);
        assert!(limiter.acquire(&a).is_ok());
    }
}
