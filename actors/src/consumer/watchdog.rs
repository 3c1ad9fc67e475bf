//! The consumer watchdog's judgement, pure: from successive looks at a
//! consumer's counters, whether it is stuck. A consumer is stuck when a
//! batch has been in flight (received, not finished) for longer than the
//! threshold while its finished-batch count did not move: its database call
//! or its dead-letter write hangs. The node's watchdog task
//! (`node/src/platform.rs`) looks, reports and restarts.
//!
//! What must never happen: a consumer that makes progress, however slowly
//! each batch goes, judged stuck (any finished batch restarts the clock), or
//! an idle consumer (nothing in flight) judged stuck.

use std::collections::BTreeMap;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

/// What the watchdog found about one consumer, for the admin view.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StallRecord {
    /// Times it was found stuck and restarted.
    pub stalls: u64,
    /// When it was last found stuck, ms since the Unix epoch.
    pub last_at_ms: Option<u64>,
}

static STALLS: LazyLock<Mutex<BTreeMap<String, StallRecord>>> = LazyLock::new(Default::default);

/// Records that the watchdog found `consumer` stuck (the node's watchdog
/// task calls it before the restart).
pub fn record_stall(consumer: &str) {
    let at_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let mut table = STALLS.lock().unwrap_or_else(|e| e.into_inner());
    let record = table.entry(consumer.to_owned()).or_default();
    record.stalls += 1;
    record.last_at_ms = Some(at_ms);
}

/// What the watchdog found about `consumer` in this process.
pub fn stalls(consumer: &str) -> StallRecord {
    STALLS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(consumer)
        .copied()
        .unwrap_or_default()
}

/// What the watchdog remembers of one consumer.
#[derive(Debug, Clone, Copy, Default)]
pub struct Watch {
    batches: u64,
    since: Option<Instant>,
}

impl Watch {
    /// One look at `batches` (finished) and `in_flight` (messages of the
    /// batch being processed) at `now`: how long the consumer has been stuck
    /// if that is longer than `threshold`, else `None`. After a stuck
    /// answer the clock restarts (the consumer is being restarted).
    pub fn look(
        &mut self,
        batches: u64,
        in_flight: u64,
        now: Instant,
        threshold: Duration,
    ) -> Option<Duration> {
        if in_flight == 0 || batches != self.batches {
            self.batches = batches;
            self.since = (in_flight > 0).then_some(now);
            return None;
        }
        let since = *self.since.get_or_insert(now);
        let stuck = now.saturating_duration_since(since);
        if stuck > threshold {
            self.since = Some(now);
            Some(stuck)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Duration = Duration::from_secs(10);

    #[test]
    fn a_batch_in_flight_past_the_threshold_is_stuck_once_per_threshold() {
        let t0 = Instant::now();
        let mut w = Watch::default();
        assert_eq!(w.look(5, 100, t0, T), None);
        assert_eq!(w.look(5, 100, t0 + Duration::from_secs(9), T), None);
        assert_eq!(
            w.look(5, 100, t0 + Duration::from_secs(11), T),
            Some(Duration::from_secs(11))
        );
        // The clock restarted with the restart.
        assert_eq!(w.look(5, 100, t0 + Duration::from_secs(15), T), None);
        assert!(w.look(5, 100, t0 + Duration::from_secs(22), T).is_some());
    }

    #[test]
    fn progress_or_idleness_is_never_stuck() {
        let t0 = Instant::now();
        let mut w = Watch::default();
        // Slow batches that finish: each finished batch restarts the clock.
        for k in 0..10u64 {
            assert_eq!(w.look(k, 100, t0 + Duration::from_secs(8 * k), T), None);
        }
        // Idle for a long time: nothing in flight.
        let mut w = Watch::default();
        for k in 0..10u64 {
            assert_eq!(w.look(3, 0, t0 + Duration::from_secs(60 * k), T), None);
        }
    }
}
