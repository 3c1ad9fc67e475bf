//! Exponential back-off with jitter, for reconnects and REST retries.
//!
//! The n-th wait is `min * 2^n`, capped at `max`, plus up to a quarter more
//! at random (still capped), and never shorter than `min`: many clients
//! dropped at once by a server deploy then do not come back in lockstep.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Distinguishes back-offs created in the same nanosecond.
static INSTANCES: AtomicU64 = AtomicU64::new(0);

/// SplitMix64: a tiny, good-enough generator for jitter.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Successive waits of an exponential back-off.
#[derive(Debug, Clone)]
pub struct Backoff {
    min_ms: u64,
    max_ms: u64,
    attempt: u32,
    rng: u64,
}

impl Backoff {
    /// A back-off between `min_ms` and `max_ms`.
    pub fn new(min_ms: u64, max_ms: u64) -> Self {
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x5eed);
        Self {
            min_ms,
            max_ms: max_ms.max(min_ms),
            attempt: 0,
            rng: seed ^ INSTANCES.fetch_add(1, Ordering::Relaxed).rotate_left(32),
        }
    }

    /// The next wait; each call doubles the base.
    pub fn next_delay(&mut self) -> Duration {
        let base = self
            .min_ms
            .saturating_mul(1u64 << self.attempt.min(30))
            .min(self.max_ms);
        self.attempt = self.attempt.saturating_add(1);
        let jitter = if base >= 4 {
            splitmix64(&mut self.rng) % (base / 4 + 1)
        } else {
            0
        };
        Duration::from_millis((base + jitter).clamp(self.min_ms, self.max_ms))
    }

    /// The longest wait, for refusals that ask the client to slow down.
    pub fn max_delay(&mut self) -> Duration {
        self.attempt = self.attempt.saturating_add(1);
        Duration::from_millis(self.max_ms)
    }

    /// Back to the shortest wait, after a connection that worked.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_from_min_to_max_with_bounded_jitter() {
        let mut b = Backoff::new(100, 1_000);
        let waits: Vec<u64> = (0..8).map(|_| b.next_delay().as_millis() as u64).collect();
        assert!((100..=125).contains(&waits[0]), "{waits:?}");
        assert!((200..=250).contains(&waits[1]), "{waits:?}");
        assert!(waits.iter().all(|w| (100..=1_000).contains(w)), "{waits:?}");
        assert_eq!(waits[7], 1_000);
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(125));
        assert_eq!(b.max_delay(), Duration::from_millis(1_000));
    }
}
