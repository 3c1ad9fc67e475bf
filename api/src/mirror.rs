//! What this node knows of the cache's hours without asking it: the
//! versions of the hours of 1-minute bars it read, kept current by the
//! cache's events ([`candela_actors::store::watch`]), so that
//! `GET /api/v1/ohlcv` can answer from the node's encoded hours
//! ([`crate::series::HourMemo`]) with no round trip while none of them moved.
//!
//! * A read through the Datastore **teaches** the mirror the versions it
//!   saw (and the cache's mark), but only if no event of the instrument
//!   arrived while it was under way ([`Ticket`]): a change after the read
//!   whose event came before its answer would otherwise be overwritten by
//!   the older versions.
//! * An event **moves** a known hour to its new version (then the memo,
//!   which holds the old one, no longer serves it: the next request reads
//!   that hour again); a mark that moved makes the instrument unknown.
//! * Nothing is known while the subscription is not in place
//!   ([`CacheEvent::Live`] … [`CacheEvent::Lost`]); every (re)subscription
//!   starts from nothing.
//! * What a read taught is trusted for `trust` only (an hour is read again
//!   after that), a bound on staleness should an event ever be lost
//!   without the subscription ending.
//!
//! What must never happen: an hour served at a version the cache has moved
//! away from, once the event saying so has arrived; a version learned from
//! a read that an event overtook; memory growing with anything but the
//! instruments and hours asked for (both bounded).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use candela_actors::domain::Instrument;
use candela_actors::store::watch::{CacheEvent, CacheListener};
use candela_actors::store::{hour_of, HourRange, HOUR_SECS};

/// The most instruments it knows (past this, it forgets them all).
const MAX_INSTRUMENTS: usize = 10_000;
/// The most hours it knows, over every instrument (past this, it forgets
/// everything): about 10 MB.
const MAX_HOURS: usize = 250_000;
/// The most hours one lookup walks.
const MAX_WALK: i64 = 1_000;

/// The versions of the cache's hours this node knows. Shared by every
/// request of a node (`Arc`); hears the cache's events as a
/// [`CacheListener`].
pub struct Mirror {
    trust: Duration,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Events heard.
    heard: u64,
    /// The subscription is in place.
    live: bool,
    /// Moves on with every (re)subscription, loss and reset of all.
    epoch: u64,
    instruments: HashMap<Instrument, Known>,
    /// Hours known, over every instrument.
    hours: usize,
}

#[derive(Default)]
struct Known {
    /// Events heard of the instrument.
    seq: u64,
    /// The cache's mark, as a read saw it (none: unknown).
    complete_from: Option<i64>,
    /// Hour → (version, 0 for an hour without bars; when a read saw it).
    hours: BTreeMap<i64, (i64, Instant)>,
}

/// Taken before a read: the read may teach only if it is still current
/// when the answer comes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket {
    epoch: u64,
    seq: u64,
}

impl std::fmt::Debug for Mirror {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.lock();
        f.debug_struct("Mirror")
            .field("live", &s.live)
            .field("instruments", &s.instruments.len())
            .finish()
    }
}

impl Mirror {
    /// A mirror that trusts what a read taught for `trust`.
    pub fn new(trust: Duration) -> Self {
        Self {
            trust,
            state: Mutex::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every change under the lock is a whole insert or removal.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the subscription is in place.
    pub fn is_live(&self) -> bool {
        self.lock().live
    }

    /// How many events it has heard.
    pub fn heard(&self) -> u64 {
        self.lock().heard
    }

    /// How many events of `instrument` it has heard since it last forgot
    /// everything.
    pub fn heard_of(&self, instrument: &Instrument) -> u64 {
        self.lock().instruments.get(instrument).map_or(0, |k| k.seq)
    }

    /// A ticket for a read of `instrument` about to start (none while the
    /// subscription is not in place: such a read teaches nothing).
    pub fn ticket(&self, instrument: &Instrument) -> Option<Ticket> {
        let s = self.lock();
        s.live.then(|| Ticket {
            epoch: s.epoch,
            seq: s.instruments.get(instrument).map_or(0, |k| k.seq),
        })
    }

    /// Learns what a read of `instrument` from `from` on answered (taken
    /// with `ticket`), at `now`: the mark, and the version of each hour it
    /// walked up to the last one it returned (an hour in between without
    /// bars is known as such; hours after the last one returned are not
    /// learned: the read may have stopped there, at its limit or at the
    /// present of a node whose clock is behind). Nothing if an event came
    /// meanwhile.
    pub fn learn(
        &self,
        instrument: &Instrument,
        ticket: Ticket,
        range: &HourRange,
        from: i64,
        now: Instant,
    ) {
        let mut s = self.lock();
        if !s.live || s.epoch != ticket.epoch {
            return;
        }
        if s.instruments.get(instrument).map_or(0, |k| k.seq) != ticket.seq {
            return;
        }
        if !s.instruments.contains_key(instrument) && s.instruments.len() >= MAX_INSTRUMENTS {
            s.forget_all();
            return;
        }
        let Some(last) = range.hours.last().map(|h| h.hour) else {
            return;
        };
        let trust = self.trust;
        let known = s.instruments.entry(instrument.clone()).or_default();
        let before = known.hours.len();
        if known.complete_from != Some(range.complete_from) {
            // Another mark: what was learned under the old one goes.
            known.hours.clear();
            known.complete_from = Some(range.complete_from);
        }
        // What is no longer trusted goes first.
        known
            .hours
            .retain(|_, (_, seen)| now.saturating_duration_since(*seen) < trust);
        let mut returned = range.hours.iter().peekable();
        let mut hour = hour_of(from);
        while hour <= last && hour - hour_of(from) <= MAX_WALK * HOUR_SECS {
            while returned.next_if(|h| h.hour < hour).is_some() {}
            match returned.peek() {
                // An hour with bars but no version (written before versions
                // existed): nothing would say when it changes.
                Some(h) if h.hour == hour && h.version == 0 => {
                    known.hours.remove(&hour);
                }
                Some(h) if h.hour == hour => {
                    known.hours.insert(hour, (h.version, now));
                }
                _ => {
                    known.hours.insert(hour, (0, now));
                }
            }
            hour += HOUR_SECS;
        }
        let after = known.hours.len();
        s.hours = (s.hours + after).saturating_sub(before);
        if s.hours > MAX_HOURS {
            s.forget_all();
        }
    }

    /// The versions of every hour of `instrument`'s `from..=to` (0: an hour
    /// without bars), if all are known and trusted at `now` and the cache
    /// holds the range (its mark is at or before `from`).
    pub fn versions(
        &self,
        instrument: &Instrument,
        from: i64,
        to: i64,
        now: Instant,
    ) -> Option<Vec<(i64, i64)>> {
        match self.known_prefix(instrument, from, to, now)? {
            (hours, true) => Some(hours),
            (_, false) => None,
        }
    }

    /// The versions of the hours of `instrument`'s `from..=to` from the
    /// first on, as far as they are known and trusted at `now` (at most
    /// [`MAX_WALK`]), and whether that is all of them; `None` when the first
    /// is not, or the cache does not hold the range (its mark is after
    /// `from`). A request whose limit is reached within the prefix needs
    /// no more (a read cut by its limit teaches only up to the cut).
    pub fn known_prefix(
        &self,
        instrument: &Instrument,
        from: i64,
        to: i64,
        now: Instant,
    ) -> Option<(Vec<(i64, i64)>, bool)> {
        if to < from {
            return None;
        }
        let s = self.lock();
        if !s.live {
            return None;
        }
        let known = s.instruments.get(instrument)?;
        if known.complete_from? > from {
            return None;
        }
        let mut out = Vec::new();
        let mut hour = hour_of(from);
        while hour <= to {
            let trusted = known
                .hours
                .get(&hour)
                .filter(|(_, seen)| now.saturating_duration_since(*seen) < self.trust);
            match trusted {
                Some((version, _)) if out.len() < MAX_WALK as usize => out.push((hour, *version)),
                _ => break,
            }
            hour += HOUR_SECS;
        }
        if out.is_empty() {
            return None;
        }
        let whole = hour > to;
        Some((out, whole))
    }
}

impl CacheListener for Mirror {
    fn event(&self, event: CacheEvent) {
        let mut s = self.lock();
        s.heard += 1;
        match event {
            CacheEvent::Live => {
                s.live = true;
                s.forget_all();
            }
            CacheEvent::Lost => {
                s.live = false;
                s.forget_all();
            }
            CacheEvent::Reset(None) => s.forget_all(),
            CacheEvent::Reset(Some(instrument)) => {
                let dropped = s.heard(instrument).map_or(0, |known| {
                    known.complete_from = None;
                    std::mem::take(&mut known.hours).len()
                });
                s.hours = s.hours.saturating_sub(dropped);
            }
            CacheEvent::Mark { instrument, from } => {
                let dropped = s.heard(instrument).map_or(0, |known| {
                    // The cache holds less: what it still holds is as it was.
                    if known.complete_from.is_none_or(|cf| cf >= from) {
                        return 0;
                    }
                    known.complete_from = Some(from);
                    let before = known.hours.len();
                    known.hours.retain(|h, _| h + HOUR_SECS > from);
                    before - known.hours.len()
                });
                s.hours = s.hours.saturating_sub(dropped);
            }
            CacheEvent::Hours { instrument, hours } => {
                if let Some(known) = s.heard(instrument) {
                    for (hour, version) in hours {
                        // Events come in the order of the changes: the
                        // latest is the cache's (an hour not known stays so).
                        if let Some((v, _)) = known.hours.get_mut(&hour) {
                            *v = version;
                        }
                    }
                }
            }
        }
    }
}

impl State {
    /// Forgets everything; a read under way teaches nothing.
    fn forget_all(&mut self) {
        self.epoch += 1;
        self.instruments.clear();
        self.hours = 0;
    }

    /// Notes an event of `instrument` (a read under way learns nothing
    /// from before it, known or not); its entry, if it may have one.
    fn heard(&mut self, instrument: Instrument) -> Option<&mut Known> {
        if !self.instruments.contains_key(&instrument) && self.instruments.len() >= MAX_INSTRUMENTS
        {
            // Too many to tell apart: a read under way must not teach.
            self.forget_all();
            return None;
        }
        let known = self.instruments.entry(instrument).or_default();
        known.seq += 1;
        Some(known)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candela_actors::store::CachedHour;

    const H: i64 = 1_700_002_800; // an hour's start

    fn btc() -> Instrument {
        Instrument::new("Coinbase", "BTC", "USD")
    }

    fn range(complete_from: i64, hours: &[(i64, i64)]) -> HourRange {
        HourRange {
            complete_from,
            hours: hours
                .iter()
                .map(|&(hour, version)| CachedHour {
                    hour,
                    version,
                    bars: None,
                })
                .collect(),
        }
    }

    fn live() -> Mirror {
        let m = Mirror::new(Duration::from_secs(2));
        m.event(CacheEvent::Live);
        m
    }

    #[test]
    fn nothing_is_known_without_the_subscription() {
        let m = Mirror::new(Duration::from_secs(2));
        assert_eq!(m.ticket(&btc()), None);
        let m = live();
        let now = Instant::now();
        let t = m.ticket(&btc()).unwrap();
        m.learn(&btc(), t, &range(H, &[(H, 5)]), H, now);
        assert_eq!(m.versions(&btc(), H, H + 600, now), Some(vec![(H, 5)]));
        m.event(CacheEvent::Lost);
        assert_eq!(m.versions(&btc(), H, H + 600, now), None);
        m.event(CacheEvent::Live);
        assert_eq!(
            m.versions(&btc(), H, H + 600, now),
            None,
            "a new subscription starts from nothing"
        );
    }

    #[test]
    fn a_read_overtaken_by_an_event_teaches_nothing() {
        let m = live();
        let now = Instant::now();
        let t = m.ticket(&btc()).unwrap();
        // A change after the read, heard before its answer.
        m.event(CacheEvent::Hours {
            instrument: btc(),
            hours: vec![(H, 9)],
        });
        m.learn(&btc(), t, &range(H, &[(H, 5)]), H, now);
        assert_eq!(m.versions(&btc(), H, H + 600, now), None);
        // The same for a read of an instrument known before.
        let t = m.ticket(&btc()).unwrap();
        m.learn(&btc(), t, &range(H, &[(H, 9)]), H, now);
        assert_eq!(m.versions(&btc(), H, H + 600, now), Some(vec![(H, 9)]));
        let t = m.ticket(&btc()).unwrap();
        m.event(CacheEvent::Reset(Some(btc())));
        m.learn(&btc(), t, &range(H, &[(H, 9)]), H, now);
        assert_eq!(m.versions(&btc(), H, H + 600, now), None);
        // And a read across a loss and a new subscription.
        let t = m.ticket(&btc()).unwrap();
        m.event(CacheEvent::Lost);
        m.event(CacheEvent::Live);
        m.learn(&btc(), t, &range(H, &[(H, 9)]), H, now);
        assert_eq!(m.versions(&btc(), H, H + 600, now), None);
    }

    #[test]
    fn events_move_versions_and_marks() {
        let m = live();
        let now = Instant::now();
        let t = m.ticket(&btc()).unwrap();
        // Three hours: bars in the first and the last.
        m.learn(&btc(), t, &range(H, &[(H, 5), (H + 7_200, 6)]), H + 60, now);
        let all = Some(vec![(H, 5), (H + 3_600, 0), (H + 7_200, 6)]);
        assert_eq!(m.versions(&btc(), H + 60, H + 7_500, now), all);
        assert_eq!(
            m.versions(&btc(), H - 60, H + 7_500, now),
            None,
            "before the mark"
        );
        assert_eq!(
            m.versions(&btc(), H, H + 11_000, now),
            None,
            "an hour not read"
        );
        // The empty hour takes its first bar, the first hour changes (to a
        // lower version: the cache's counter began again; the event is the
        // latest word).
        m.event(CacheEvent::Hours {
            instrument: btc(),
            hours: vec![(H + 3_600, 7), (H, 4)],
        });
        assert_eq!(
            m.versions(&btc(), H + 60, H + 7_500, now),
            Some(vec![(H, 4), (H + 3_600, 7), (H + 7_200, 6)])
        );
        // A trim moves the mark into the second hour: the first is gone,
        // the rest is as it was.
        m.event(CacheEvent::Mark {
            instrument: btc(),
            from: H + 3_660,
        });
        assert_eq!(m.versions(&btc(), H + 60, H + 7_500, now), None);
        assert_eq!(
            m.versions(&btc(), H + 3_660, H + 7_500, now),
            Some(vec![(H + 3_600, 7), (H + 7_200, 6)])
        );
        // A mark that does not move forward changes nothing.
        m.event(CacheEvent::Mark {
            instrument: btc(),
            from: H,
        });
        assert!(m.versions(&btc(), H + 3_660, H + 7_500, now).is_some());
        m.event(CacheEvent::Reset(Some(Instrument::new(
            "Kraken", "ETH", "USD",
        ))));
        assert!(m.versions(&btc(), H + 3_660, H + 7_500, now).is_some());
        m.event(CacheEvent::Reset(Some(btc())));
        assert_eq!(m.versions(&btc(), H + 3_660, H + 7_500, now), None);
        let t = m.ticket(&btc()).unwrap();
        m.learn(&btc(), t, &range(H, &[(H, 5)]), H, now);
        m.event(CacheEvent::Reset(None));
        assert_eq!(m.versions(&btc(), H, H + 60, now), None);
        // A mark that moved while the first read of an instrument was under
        // way: that read teaches nothing.
        let eth = Instrument::new("Kraken", "ETH", "USD");
        let t = m.ticket(&eth).unwrap();
        m.event(CacheEvent::Reset(Some(eth.clone())));
        m.learn(&eth, t, &range(H, &[(H, 5)]), H, now);
        assert_eq!(m.versions(&eth, H, H + 60, now), None);
    }

    #[test]
    fn hours_after_the_last_returned_are_not_learned_and_trust_runs_out() {
        let m = live();
        let now = Instant::now();
        let t = m.ticket(&btc()).unwrap();
        m.learn(&btc(), t, &range(H, &[(H, 5)]), H, now);
        assert_eq!(m.versions(&btc(), H, H + 600, now), Some(vec![(H, 5)]));
        assert_eq!(m.versions(&btc(), H, H + 3_600, now), None);
        // What is known from the first hour on (a request whose limit is
        // reached there needs no more).
        assert_eq!(
            m.known_prefix(&btc(), H, H + 7_200, now),
            Some((vec![(H, 5)], false))
        );
        assert_eq!(
            m.known_prefix(&btc(), H, H + 60, now),
            Some((vec![(H, 5)], true))
        );
        assert_eq!(m.known_prefix(&btc(), H + 3_600, H + 7_200, now), None);
        assert_eq!(
            m.versions(&btc(), H, H + 600, now + Duration::from_secs(2)),
            None,
            "trusted for two seconds"
        );
    }
}
