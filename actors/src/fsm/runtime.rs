//! A running machine: the current state of one actor instance, validated
//! against its table, with a bounded record of its run.
//!
//! The actor owns its [`Fsm`] and fires events on it; the admin endpoint holds
//! a [`RunView`] (a cheap shared handle) and reads [`RunSnapshot`]s from it
//! without going through the actor's mailbox, so a busy or stuck actor can still
//! be inspected.

use std::collections::VecDeque;
use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::mealy::{Mealy, Rejected};
use super::spec::{MachineSpec, Named};

/// How many steps a run keeps unless told otherwise.
pub const DEFAULT_HISTORY: usize = 64;

/// One recorded transition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepRecord {
    /// When it happened, in milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// The state before.
    pub from: String,
    /// The event.
    pub event: String,
    /// The state after.
    pub to: String,
    /// What the actor did (λ).
    pub effect: String,
}

/// The most recent event that the machine refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejectedRecord {
    /// When, in milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// The state the machine was in (and stayed in).
    pub state: String,
    /// The refused event.
    pub event: String,
}

/// What the admin endpoint shows of a running machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunSnapshot {
    /// The machine, e.g. `producer`.
    pub machine: String,
    /// The actor instance, e.g. `producer/node-a`.
    pub instance: String,
    /// The current state.
    pub state: String,
    /// Whether the current state is an error state.
    pub in_error: bool,
    /// The most recent steps, oldest first (at most `capacity`).
    pub recent: Vec<StepRecord>,
    /// How many steps `recent` keeps at most.
    pub capacity: usize,
    /// Every transition taken since the instance started.
    pub transitions_total: u64,
    /// Every event refused since the instance started.
    pub rejected_total: u64,
    /// The last refused event, if any.
    pub last_rejected: Option<RejectedRecord>,
}

#[derive(Debug)]
struct RunLog {
    snapshot: RunSnapshot,
    recent: VecDeque<StepRecord>,
}

/// A shared, read-only handle on a machine's run.
#[derive(Debug, Clone)]
pub struct RunView(Arc<RwLock<RunLog>>);

impl RunView {
    /// A copy of the run as it is now.
    pub fn snapshot(&self) -> RunSnapshot {
        let log = self.0.read().unwrap_or_else(|e| e.into_inner());
        let mut snap = log.snapshot.clone();
        snap.recent = log.recent.iter().cloned().collect();
        snap
    }
}

/// A running instance of the machine `M`.
#[derive(Debug)]
pub struct Fsm<M: MachineSpec> {
    machine: Mealy<M::State, M::Event, M::Effect>,
    state: M::State,
    log: Arc<RwLock<RunLog>>,
}

impl<M: MachineSpec> Fsm<M> {
    /// A fresh instance in `M`'s initial state, keeping [`DEFAULT_HISTORY`] steps.
    pub fn new(instance: impl Into<String>) -> Self {
        Self::with_history(instance, DEFAULT_HISTORY)
    }

    /// A fresh instance keeping at most `capacity` steps (at least one).
    pub fn with_history(instance: impl Into<String>, capacity: usize) -> Self {
        let state = M::initial();
        let capacity = capacity.max(1);
        let snapshot = RunSnapshot {
            machine: M::NAME.to_owned(),
            instance: instance.into(),
            state: state.name().to_owned(),
            in_error: M::is_error(state),
            recent: Vec::new(),
            capacity,
            transitions_total: 0,
            rejected_total: 0,
            last_rejected: None,
        };
        let instance = snapshot.instance.clone();
        let fsm = Self {
            machine: M::machine(),
            state,
            log: Arc::new(RwLock::new(RunLog {
                snapshot,
                recent: VecDeque::with_capacity(capacity),
            })),
        };
        super::registry::register(&instance, fsm.view());
        fsm
    }

    /// A fresh instance replacing one that failed: the supervisor's restart is
    /// the seed's `RESET`, so the new run starts with the step
    /// `Error --RESET--> initial`, recorded like any other.
    pub fn after_reset(instance: impl Into<String>, capacity: usize, reset: M::Event) -> Self {
        let mut fsm = Self::with_history(instance, capacity);
        if let Some(&(from, event, to, effect)) = M::transitions()
            .iter()
            .find(|(from, event, to, _)| *event == reset && M::is_error(*from) && *to == fsm.state)
        {
            fsm.record(from, event, to, effect);
        }
        fsm
    }

    /// The current state.
    pub fn state(&self) -> M::State {
        self.state
    }

    /// Whether the current state is an error state.
    pub fn in_error(&self) -> bool {
        M::is_error(self.state)
    }

    /// Whether `event` would be accepted now.
    pub fn can_fire(&self, event: M::Event) -> bool {
        self.machine.delta(self.state, event).is_ok()
    }

    /// Takes the transition for `event`, records it and returns its effect.
    ///
    /// An event the current state has no transition for leaves the state as it
    /// is, is counted and logged, and comes back as [`Rejected`].
    pub fn fire(&mut self, event: M::Event) -> Result<M::Effect, Rejected<M::State, M::Event>> {
        match self.machine.step(self.state, event) {
            Ok((to, &effect)) => {
                let from = self.state;
                self.state = to;
                self.record(from, event, to, effect);
                Ok(effect)
            }
            Err(rejected) => {
                metrics::counter!(
                    crate::telemetry::FSM_REJECTED,
                    "machine" => M::NAME,
                    "state" => self.state.name()
                )
                .increment(1);
                let mut log = self.log.write().unwrap_or_else(|e| e.into_inner());
                log.snapshot.rejected_total += 1;
                log.snapshot.last_rejected = Some(RejectedRecord {
                    at_ms: now_ms(),
                    state: self.state.name().to_owned(),
                    event: event.name().to_owned(),
                });
                tracing::warn!(
                    machine = M::NAME,
                    instance = %log.snapshot.instance,
                    state = self.state.name(),
                    event = event.name(),
                    "event rejected: no transition"
                );
                Err(rejected)
            }
        }
    }

    /// A shared handle for reading the run from elsewhere.
    pub fn view(&self) -> RunView {
        RunView(Arc::clone(&self.log))
    }

    /// A copy of the run as it is now.
    pub fn snapshot(&self) -> RunSnapshot {
        self.view().snapshot()
    }

    fn record(&mut self, from: M::State, event: M::Event, to: M::State, effect: M::Effect) {
        let step = StepRecord {
            at_ms: now_ms(),
            from: from.name().to_owned(),
            event: event.name().to_owned(),
            to: to.name().to_owned(),
            effect: effect.name().to_owned(),
        };
        metrics::counter!(
            crate::telemetry::FSM_TRANSITIONS,
            "machine" => M::NAME,
            "from" => from.name(),
            "to" => to.name()
        )
        .increment(1);
        let mut log = self.log.write().unwrap_or_else(|e| e.into_inner());
        if from != to {
            let instance = log.snapshot.instance.clone();
            metrics::gauge!(crate::telemetry::ACTOR_STATE, "machine" => M::NAME, "instance" => instance.clone(), "state" => from.name())
                .set(0.0);
            metrics::gauge!(crate::telemetry::ACTOR_STATE, "machine" => M::NAME, "instance" => instance, "state" => to.name())
                .set(1.0);
        }
        tracing::debug!(
            machine = M::NAME,
            instance = %log.snapshot.instance,
            from = step.from,
            event = step.event,
            to = step.to,
            "transition"
        );
        if log.recent.len() == log.snapshot.capacity {
            log.recent.pop_front();
        }
        log.recent.push_back(step);
        log.snapshot.transitions_total += 1;
        log.snapshot.state = to.name().to_owned();
        log.snapshot.in_error = M::is_error(to);
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machines::producer::{Effect, Event, Producer, State};

    #[test]
    fn fires_records_and_rejects() {
        let mut fsm = Fsm::<Producer>::with_history("producer/test", 3);
        assert_eq!(fsm.fire(Event::FetchData), Ok(Effect::Fetch));
        assert_eq!(fsm.state(), State::FetchingData);
        let err = fsm.fire(Event::PublishSuccess).unwrap_err();
        assert_eq!(err.state, State::FetchingData);
        assert_eq!(
            fsm.state(),
            State::FetchingData,
            "a rejected event changes nothing"
        );
        fsm.fire(Event::DataReadyFixed).unwrap();
        fsm.fire(Event::PublishFailure).unwrap();
        assert!(fsm.in_error());
        fsm.fire(Event::Reset).unwrap();

        let snap = fsm.snapshot();
        assert_eq!(snap.state, "Idle");
        assert_eq!(snap.transitions_total, 4);
        assert_eq!(snap.rejected_total, 1);
        assert_eq!(
            snap.last_rejected.as_ref().unwrap().event,
            "PUBLISH_SUCCESS"
        );
        // bounded: the oldest step (FETCH_DATA) was dropped
        let events: Vec<_> = snap.recent.iter().map(|s| s.event.as_str()).collect();
        assert_eq!(events, ["DATA_READY(fixed)", "PUBLISH_FAILURE", "RESET"]);
    }

    #[test]
    fn view_follows_the_running_machine() {
        let mut fsm = Fsm::<Producer>::new("p");
        let view = fsm.view();
        assert_eq!(view.snapshot().state, "Idle");
        fsm.fire(Event::CreateDynamicTopic).unwrap();
        assert_eq!(view.snapshot().state, "Creating Dynamic Topic");
        fsm.fire(Event::CreateTopicFailure).unwrap();
        assert!(view.snapshot().in_error);
    }

    #[test]
    fn a_restart_records_reset() {
        let fsm = Fsm::<Producer>::after_reset("p", 8, Event::Reset);
        let snap = fsm.snapshot();
        assert_eq!(snap.state, "Idle");
        assert_eq!(snap.recent.len(), 1);
        assert_eq!(snap.recent[0].from, "Error");
        assert_eq!(snap.recent[0].event, "RESET");
    }
}
