//! Per-object retry delays, as controller-runtime's default rate limiter
//! keeps them: a transient error is retried after a few milliseconds, each
//! further error of the same object doubles the delay up to a cap of
//! minutes, and a success starts the object over. A broken object then
//! costs one retry every few minutes, not one every few seconds forever.

use std::{collections::HashMap, sync::Mutex, time::Duration};

/// The first retry delay.
pub const FIRST: Duration = Duration::from_millis(5);
/// The longest retry delay.
pub const CAP: Duration = Duration::from_secs(300);

/// Consecutive failures per key (an object's uid).
#[derive(Default)]
pub struct Backoff(Mutex<HashMap<String, u32>>);

impl Backoff {
    /// The delay before retrying `key` after another failure.
    pub fn failed(&self, key: &str) -> Duration {
        let Ok(mut failures) = self.0.lock() else {
            return CAP;
        };
        let count = failures.entry(key.to_string()).or_default();
        let delay = FIRST
            .checked_mul(2u32.saturating_pow(*count))
            .map_or(CAP, |d| d.min(CAP));
        *count = count.saturating_add(1);
        delay
    }

    /// `key` succeeded (or was deleted): its next failure is retried fast again.
    pub fn reset(&self, key: &str) {
        if let Ok(mut failures) = self.0.lock() {
            failures.remove(key);
        }
    }

    /// How many keys are failing now.
    pub fn len(&self) -> usize {
        self.0.lock().map_or(0, |f| f.len())
    }

    /// Whether no key is failing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_per_object_to_the_cap_and_reset_on_success() {
        let backoff = Backoff::default();
        let delays: Vec<Duration> = (0..4).map(|_| backoff.failed("a")).collect();
        assert_eq!(
            delays,
            [5, 10, 20, 40].map(Duration::from_millis),
            "doubling from {FIRST:?}"
        );
        assert_eq!(backoff.failed("b"), FIRST, "each object has its own delay");
        for _ in 0..100 {
            backoff.failed("a");
        }
        assert_eq!(backoff.failed("a"), CAP);
        backoff.reset("a");
        assert_eq!(backoff.failed("a"), FIRST);
        backoff.reset("a");
        backoff.reset("b");
        assert!(backoff.is_empty());
    }
}
