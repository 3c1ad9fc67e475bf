//! The per-peer state machine of the membership actor: dialling, heartbeats,
//! misses and the re-dial back-off, as pure logic.
//!
//! Time and randomness come in as arguments (`now`, `jitter` in `[0, 1)`) and
//! the machine answers with [`Action`]s for the actor to perform, so every
//! schedule here is tested without sockets, sleeps or a runtime. It must never
//! do I/O.
//!
//! ```text
//!            dial due                      session ready
//!   Down ─────────────────> Connecting ─────────────────────> Connected
//!    ^  <─────────────────     │                               │   ^
//!    │   dial failed, or       │ session ready                 │   │ pong
//!    │   handshake timed out   v                     miss      v   │
//!    │   (back-off)        Connected            Connected ───> Suspect
//!    │                                                           │
//!    └─────── session lost, or `misses` heartbeats missed ───────┘
//! ```
//!
//! Heartbeats: while connected, one ping is sent every `heartbeat`; each
//! period ends in exactly one verdict — a pong (the peer is `Connected`), a
//! failed call, or a ping still unanswered when the next is due (a miss: the
//! peer is `Suspect`). `misses` misses in a row drop the peer. A peer that
//! hangs just after answering is therefore dropped at most
//! `heartbeat × (misses + 1)` later.
//!
//! Why not `candela_actors::fsm`: that core describes the seed's machines by
//! their transition tables and draws them; this one is driven by clocks and
//! counters (due times, miss counts, back-off exponents), which a table would
//! only hide behind guards.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// The timings of the machine (from `[cluster]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// Time between heartbeats, and the longest wait for one.
    pub heartbeat: Duration,
    /// Misses in a row that drop the peer.
    pub misses: u32,
    /// First re-dial delay (before jitter).
    pub reconnect_min: Duration,
    /// Longest re-dial delay (before jitter).
    pub reconnect_max: Duration,
    /// Longest wait from a dial to a ready session.
    pub handshake: Duration,
}

impl Timing {
    /// The timings for `heartbeat` and `misses`: the handshake gets as long as
    /// a failing peer would (`heartbeat × misses`).
    pub fn new(
        heartbeat: Duration,
        misses: u32,
        reconnect_min: Duration,
        reconnect_max: Duration,
    ) -> Self {
        Self {
            heartbeat,
            misses: misses.max(1),
            reconnect_min,
            reconnect_max: reconnect_max.max(reconnect_min),
            handshake: heartbeat.saturating_mul(misses.max(1)),
        }
    }

    /// The delay before the next dial after `failures + 1` losses or failed
    /// dials in a row: `reconnect_min × 2^failures`, at most `reconnect_max`, then jittered to
    /// between half and all of it (so peers that lost each other at the same
    /// moment do not dial in lockstep).
    pub fn backoff(&self, failures: u32, jitter: f64) -> Duration {
        let full = self
            .reconnect_min
            .saturating_mul(1u32 << failures.min(20))
            .min(self.reconnect_max);
        let jitter = jitter.clamp(0.0, 1.0);
        full.mul_f64(0.5 + 0.5 * jitter)
    }
}

/// Where a peer stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PeerState {
    /// A dial is under way; no ready session yet.
    Connecting,
    /// A ready session, and the last heartbeat was answered.
    Connected,
    /// A ready session, but the last heartbeat(s) went unanswered.
    Suspect,
    /// No session; a dial is scheduled (for a configured peer).
    Down,
}

/// Why the machine dropped a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// `misses` heartbeats in a row went unanswered.
    MissedHeartbeats(u32),
}

impl std::fmt::Display for DropReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::MissedHeartbeats(n) => write!(f, "missed {n} heartbeats in a row"),
        }
    }
}

/// What the actor must do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Open a connection to the peer.
    Dial,
    /// The dial did not produce a ready session in time: close whatever
    /// half-open session it left.
    AbandonDial,
    /// Send heartbeat `seq`; report its answer with `on_pong` / `on_ping_failed`.
    Ping {
        /// The heartbeat's number.
        seq: u64,
    },
    /// Close the peer's session.
    Disconnect(DropReason),
}

/// One peer's machine.
#[derive(Debug, Clone)]
pub struct PeerMachine {
    timing: Timing,
    redial: bool,
    state: PeerState,
    since: Instant,
    dial_at: Option<Instant>,
    dial_deadline: Instant,
    failures: u32,
    next_ping: Instant,
    in_flight: Option<u64>,
    seq: u64,
    misses: u32,
    last_rtt: Option<Duration>,
    sessions: u32,
}

impl PeerMachine {
    /// A peer not yet connected. A configured peer (`redial`) is dialled at
    /// once; a peer that only ever dials us (`redial = false`) waits for it.
    pub fn new(timing: Timing, now: Instant, redial: bool) -> Self {
        Self {
            timing,
            redial,
            state: PeerState::Down,
            since: now,
            dial_at: redial.then_some(now),
            dial_deadline: now,
            failures: 0,
            next_ping: now,
            in_flight: None,
            seq: 0,
            misses: 0,
            last_rtt: None,
            sessions: 0,
        }
    }

    /// The current state.
    pub fn state(&self) -> PeerState {
        self.state
    }

    /// When the current state began.
    pub fn since(&self) -> Instant {
        self.since
    }

    /// Heartbeats missed in a row.
    pub fn misses(&self) -> u32 {
        self.misses
    }

    /// The round trip of the last answered heartbeat.
    pub fn last_rtt(&self) -> Option<Duration> {
        self.last_rtt
    }

    /// Sessions that became ready after the first one.
    pub fn reconnects(&self) -> u32 {
        self.sessions.saturating_sub(1)
    }

    /// Failed dial attempts since the last ready session.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// When the next dial is due, if one is scheduled.
    pub fn dial_at(&self) -> Option<Instant> {
        self.dial_at
    }

    /// Whether the peer has a ready session.
    pub fn is_up(&self) -> bool {
        matches!(self.state, PeerState::Connected | PeerState::Suspect)
    }

    fn enter(&mut self, state: PeerState, now: Instant) {
        if self.state != state {
            self.state = state;
            self.since = now;
        }
    }

    fn go_down(&mut self, now: Instant, jitter: f64) {
        self.enter(PeerState::Down, now);
        self.in_flight = None;
        self.misses = 0;
        self.dial_at = self
            .redial
            .then(|| now + self.timing.backoff(self.failures.saturating_sub(1), jitter));
    }

    /// Advances the clocks: dials that are due, handshakes that took too
    /// long, heartbeats that are due (and the misses they reveal).
    pub fn poll(&mut self, now: Instant, jitter: f64) -> Vec<Action> {
        match self.state {
            PeerState::Down => match self.dial_at {
                Some(at) if now >= at => {
                    self.dial_at = None;
                    self.enter(PeerState::Connecting, now);
                    self.dial_deadline = now + self.timing.handshake;
                    vec![Action::Dial]
                }
                _ => vec![],
            },
            PeerState::Connecting if now >= self.dial_deadline => {
                self.failures += 1;
                self.go_down(now, jitter);
                vec![Action::AbandonDial]
            }
            PeerState::Connecting => vec![],
            PeerState::Connected | PeerState::Suspect if now >= self.next_ping => {
                if self.in_flight.take().is_some() {
                    if let Some(drop) = self.miss(now, jitter) {
                        return vec![drop];
                    }
                }
                self.seq += 1;
                self.in_flight = Some(self.seq);
                // Keep the cadence, but never fire a burst after a stall.
                self.next_ping = (self.next_ping + self.timing.heartbeat).max(now);
                if self.next_ping == now {
                    self.next_ping = now + self.timing.heartbeat;
                }
                vec![Action::Ping { seq: self.seq }]
            }
            PeerState::Connected | PeerState::Suspect => vec![],
        }
    }

    fn miss(&mut self, now: Instant, jitter: f64) -> Option<Action> {
        self.misses += 1;
        if self.misses >= self.timing.misses {
            let misses = self.misses;
            self.go_down(now, jitter);
            Some(Action::Disconnect(DropReason::MissedHeartbeats(misses)))
        } else {
            self.enter(PeerState::Suspect, now);
            None
        }
    }

    /// The dial could not even open a connection.
    pub fn on_dial_failed(&mut self, now: Instant, jitter: f64) {
        if self.state == PeerState::Connecting {
            self.failures += 1;
            self.go_down(now, jitter);
        }
    }

    /// A session with the peer is ready (ours or one the peer dialled).
    /// The first heartbeat goes out at once.
    pub fn on_session_ready(&mut self, now: Instant) {
        if self.is_up() {
            return;
        }
        self.enter(PeerState::Connected, now);
        self.sessions += 1;
        self.failures = 0;
        self.misses = 0;
        self.in_flight = None;
        self.dial_at = None;
        self.next_ping = now;
    }

    /// The peer's session closed (the peer died, or the network dropped it).
    pub fn on_session_lost(&mut self, now: Instant, jitter: f64) {
        if self.is_up() {
            self.go_down(now, jitter);
        }
    }

    /// Heartbeat `seq` was answered after `rtt`.
    pub fn on_pong(&mut self, seq: u64, rtt: Duration, now: Instant) {
        if self.in_flight == Some(seq) {
            self.in_flight = None;
            self.misses = 0;
            self.last_rtt = Some(rtt);
            self.enter(PeerState::Connected, now);
        }
    }

    /// Whether heartbeat `seq` is the one awaited (older answers are stale).
    pub fn awaiting(&self, seq: u64) -> bool {
        self.in_flight == Some(seq)
    }

    /// Heartbeat `seq` failed (timed out, or could not be sent).
    pub fn on_ping_failed(&mut self, seq: u64, now: Instant, jitter: f64) -> Option<Action> {
        if self.in_flight == Some(seq) {
            self.in_flight = None;
            self.miss(now, jitter)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn timing() -> Timing {
        Timing::new(ms(100), 3, ms(50), ms(400))
    }

    /// Polls every 10 ms from `from` to `to`, collecting (time offset, action).
    fn run(m: &mut PeerMachine, t0: Instant, from: u64, to: u64) -> Vec<(u64, Action)> {
        let mut out = vec![];
        let mut t = from;
        while t <= to {
            for a in m.poll(t0 + ms(t), 0.0) {
                out.push((t, a));
            }
            t += 10;
        }
        out
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_and_jitters_within_half() {
        let t = timing();
        let full: Vec<_> = (0..6).map(|f| t.backoff(f, 1.0)).collect();
        assert_eq!(full, [ms(50), ms(100), ms(200), ms(400), ms(400), ms(400)]);
        assert_eq!(t.backoff(0, 0.0), ms(25));
        assert_eq!(t.backoff(3, 0.5), ms(300));
        assert_eq!(t.backoff(100, 1.0), ms(400), "no overflow");
        for j in [0.0, 0.3, 0.99] {
            let d = t.backoff(2, j);
            assert!(d >= ms(100) && d <= ms(200), "{d:?}");
        }
    }

    #[test]
    fn a_configured_peer_is_dialled_at_once_and_connects() {
        let t0 = Instant::now();
        let mut m = PeerMachine::new(timing(), t0, true);
        assert_eq!(m.poll(t0, 0.0), vec![Action::Dial]);
        assert_eq!(m.state(), PeerState::Connecting);
        assert_eq!(m.poll(t0 + ms(10), 0.0), vec![]);
        m.on_session_ready(t0 + ms(20));
        assert_eq!(m.state(), PeerState::Connected);
        assert_eq!(m.poll(t0 + ms(20), 0.0), vec![Action::Ping { seq: 1 }]);
        m.on_pong(1, ms(3), t0 + ms(23));
        assert_eq!(m.last_rtt(), Some(ms(3)));
        assert_eq!(m.reconnects(), 0);
    }

    #[test]
    fn an_unconfigured_peer_is_never_dialled() {
        let t0 = Instant::now();
        let mut m = PeerMachine::new(timing(), t0, false);
        assert!(run(&mut m, t0, 0, 2_000).is_empty());
        m.on_session_ready(t0);
        m.on_session_lost(t0 + ms(5), 0.0);
        assert_eq!(m.state(), PeerState::Down);
        assert!(run(&mut m, t0, 10, 2_000).is_empty());
    }

    #[test]
    fn failed_dials_back_off_exponentially() {
        let t0 = Instant::now();
        let mut m = PeerMachine::new(timing(), t0, true);
        let mut dials = vec![];
        let mut t = 0;
        while t <= 2_000 {
            for a in m.poll(t0 + ms(t), 1.0) {
                if a == Action::Dial {
                    dials.push(t);
                    m.on_dial_failed(t0 + ms(t), 1.0);
                }
            }
            t += 10;
        }
        let gaps: Vec<u64> = dials.windows(2).map(|w| w[1] - w[0]).collect();
        assert_eq!(&gaps[..5], &[50, 100, 200, 400, 400], "{dials:?}");
    }

    #[test]
    fn a_handshake_that_never_completes_is_abandoned_and_retried() {
        let t0 = Instant::now();
        let mut m = PeerMachine::new(timing(), t0, true);
        let actions = run(&mut m, t0, 0, 400);
        // Dial at 0, handshake deadline 300 ms (3 × 100), abandon, retry after 25 ms.
        assert_eq!(
            actions,
            vec![
                (0, Action::Dial),
                (300, Action::AbandonDial),
                (330, Action::Dial)
            ]
        );
        assert_eq!(m.failures(), 1);
    }

    #[test]
    fn answered_heartbeats_keep_the_peer_connected() {
        let t0 = Instant::now();
        let mut m = PeerMachine::new(timing(), t0, true);
        m.poll(t0, 0.0);
        m.on_session_ready(t0);
        let mut t = 0;
        let mut pings = 0;
        while t <= 1_000 {
            for a in m.poll(t0 + ms(t), 0.0) {
                let Action::Ping { seq } = a else {
                    panic!("unexpected {a:?}")
                };
                pings += 1;
                m.on_pong(seq, ms(1), t0 + ms(t + 1));
            }
            assert_eq!(m.state(), PeerState::Connected);
            t += 10;
        }
        assert_eq!(pings, 11, "one per 100 ms, the first at once");
    }

    #[test]
    fn a_hung_peer_is_dropped_within_misses_plus_one_periods() {
        let t0 = Instant::now();
        let mut m = PeerMachine::new(timing(), t0, true);
        m.poll(t0, 0.0);
        m.on_session_ready(t0);
        // Answer the first ping, then the peer hangs.
        assert_eq!(m.poll(t0, 0.0), vec![Action::Ping { seq: 1 }]);
        m.on_pong(1, ms(1), t0 + ms(1));
        let actions = run(&mut m, t0, 10, 1_000);
        assert_eq!(
            &actions[..4],
            &[
                (100, Action::Ping { seq: 2 }),
                (200, Action::Ping { seq: 3 }),
                (300, Action::Ping { seq: 4 }),
                (400, Action::Disconnect(DropReason::MissedHeartbeats(3))),
            ]
        );
        // 400 ms = heartbeat × (misses + 1), the documented bound.
        // Then it is re-dialled after the back-off.
        assert_eq!(actions[4].1, Action::Dial);
        assert_eq!(m.state(), PeerState::Connecting);
    }

    #[test]
    fn misses_make_a_peer_suspect_and_a_pong_clears_them() {
        let t0 = Instant::now();
        let mut m = PeerMachine::new(timing(), t0, true);
        m.poll(t0, 0.0);
        m.on_session_ready(t0);
        assert_eq!(m.poll(t0, 0.0), vec![Action::Ping { seq: 1 }]);
        assert_eq!(m.on_ping_failed(1, t0 + ms(50), 0.0), None);
        assert_eq!(m.state(), PeerState::Suspect);
        assert_eq!(m.misses(), 1);
        assert_eq!(m.poll(t0 + ms(100), 0.0), vec![Action::Ping { seq: 2 }]);
        assert!(m.awaiting(2) && !m.awaiting(1));
        // A late answer to an old heartbeat changes nothing.
        m.on_pong(1, ms(90), t0 + ms(101));
        assert_eq!(m.state(), PeerState::Suspect);
        m.on_pong(2, ms(2), t0 + ms(102));
        assert_eq!(m.state(), PeerState::Connected);
        assert_eq!(m.misses(), 0);
    }

    #[test]
    fn failed_calls_count_as_misses_too() {
        let t0 = Instant::now();
        let mut m = PeerMachine::new(timing(), t0, true);
        m.poll(t0, 0.0);
        m.on_session_ready(t0);
        let mut dropped = None;
        let mut t = 0;
        while t <= 1_000 && dropped.is_none() {
            for a in m.poll(t0 + ms(t), 0.0) {
                if let Action::Ping { seq } = a {
                    dropped = m.on_ping_failed(seq, t0 + ms(t + 1), 0.0);
                }
            }
            t += 10;
        }
        assert_eq!(
            dropped,
            Some(Action::Disconnect(DropReason::MissedHeartbeats(3)))
        );
        assert_eq!(t, 210, "third failed ping at 200 ms");
    }

    #[test]
    fn a_lost_session_is_redialled_and_counted_as_a_reconnect() {
        let t0 = Instant::now();
        let mut m = PeerMachine::new(timing(), t0, true);
        m.poll(t0, 0.0);
        m.on_session_ready(t0);
        m.on_session_lost(t0 + ms(500), 0.0);
        assert_eq!(m.state(), PeerState::Down);
        assert_eq!(m.dial_at(), Some(t0 + ms(525)));
        assert_eq!(m.poll(t0 + ms(520), 0.0), vec![]);
        assert_eq!(m.poll(t0 + ms(525), 0.0), vec![Action::Dial]);
        m.on_session_ready(t0 + ms(530));
        assert_eq!(m.reconnects(), 1);
        // A second ready event for the same session changes nothing.
        m.on_session_ready(t0 + ms(531));
        assert_eq!(m.reconnects(), 1);
    }

    #[test]
    fn a_peer_that_dials_us_while_we_back_off_is_connected() {
        let t0 = Instant::now();
        let mut m = PeerMachine::new(timing(), t0, true);
        m.poll(t0, 0.0);
        m.on_dial_failed(t0, 0.0);
        m.on_session_ready(t0 + ms(5));
        assert_eq!(m.state(), PeerState::Connected);
        assert_eq!(m.dial_at(), None);
        assert_eq!(m.failures(), 0);
    }
}
