//! A supervisor that restarts failed children: the seed's `RESET` path.
//!
//! ractor has no restart strategies in its core, so this one is ours (the
//! third-party `ractor-supervisor` does not build with the `cluster` feature).
//! Each child is described by a [`ChildSpec`] whose `start` function spawns it
//! linked to the supervisor under a fixed name. When a child fails or stops:
//!
//! * the supervisor waits a back-off (doubling from `backoff_min` up to
//!   `backoff_max` with each failure in a row, back to `backoff_min` once the
//!   child has run for `backoff_max`), then starts it again under the same
//!   name with fresh state, telling it how many restarts came before (so its
//!   run can begin with `RESET`);
//! * **restart intensity** (OTP's `intensity`/`period`): if a child fails more
//!   than `max_restarts` times within `window` *of its own running time*, the
//!   supervisor gives up: it stops every child and fails itself, escalating
//!   to its own supervisor (or, at the top, to the node) instead of looping.
//!   The window counts only the time the child ran, never the back-off
//!   delays between its runs, so a child that fails as soon as it starts
//!   reaches the limit after `max_restarts + 1` failures whatever the
//!   back-off (with a wall-clock window and a doubling back-off, a limit of
//!   10 in 60 s could never be reached);
//! * a failure the child marks [`Transient`] (its environment is away: the
//!   database or the broker is down) is restarted with the same back-off
//!   but does not count towards the limit: waiting out an outage is not a
//!   crash loop. A child that cannot *start* counts like any failure, unless
//!   its start error is [`Transient`] too.
//!
//! Restarts are counted per child and visible through [`SupervisorMsg::Status`].
//! [`SupervisorMsg::Reset`] restarts a child on request (the admin endpoint's
//! manual RESET).
//!
//! Once running, the supervisor never waits for a child to start: a child's
//! `pre_start` may wait a long time for its environment (a producer makes
//! its topic sure while the broker is away), and a supervisor blocked on it
//! would answer no `Status`, `Reset` or `Remove` and handle no sibling's
//! failure until it ended. Restarts and added children start in a task of
//! their own that reports back ([`SupervisorMsg`]'s internal `Started`);
//! what must never happen is two instances of one child started at once, or
//! an instance left running that no supervisor knows of (a child removed or
//! a supervisor stopped while it started is stopped as soon as it runs).

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ractor::{
    Actor, ActorCell, ActorProcessingErr, ActorRef, RpcReplyPort, SpawnErr, SupervisionEvent,
};
use serde::Serialize;

/// Starts a child linked to `supervisor`; `restarts` counts earlier restarts.
pub type StartFn = Arc<
    dyn Fn(ActorCell, u32) -> Pin<Box<dyn Future<Output = Result<ActorCell, SpawnErr>> + Send>>
        + Send
        + Sync,
>;

/// A supervised child.
#[derive(Clone)]
pub struct ChildSpec {
    /// The child's registry name (it is restarted under the same name).
    pub name: String,
    /// Spawns the child, linked to the given supervisor.
    pub start: StartFn,
}

impl ChildSpec {
    /// A child that is the actor `A` spawned under `name` from a template of
    /// its arguments; `mark_restart` tells each new instance how many restarts
    /// came before it (so its run can begin with `RESET`).
    pub fn of<A>(
        name: &str,
        template: A::Arguments,
        mark_restart: fn(&mut A::Arguments, u32),
    ) -> Self
    where
        A: Actor + Default,
        A::Arguments: Clone + Sync,
    {
        let child_name = name.to_owned();
        ChildSpec {
            name: name.to_owned(),
            start: Arc::new(move |sup, restarts| {
                let mut args = template.clone();
                mark_restart(&mut args, restarts);
                let name = child_name.clone();
                Box::pin(async move {
                    Actor::spawn_linked(Some(name), A::default(), args, sup)
                        .await
                        .map(|(actor, _)| actor.get_cell())
                })
            }),
        }
    }
}

/// A child's failure (or start failure) that is its environment's, not its
/// own: the supervisor restarts it after the back-off without counting it
/// towards the restart-intensity limit. Return it (boxed) from a handler or
/// from `pre_start`.
#[derive(Debug, thiserror::Error)]
#[error("{0} (transient)")]
pub struct Transient(pub String);

/// Whether a failure is [`Transient`].
pub fn is_transient(err: &(dyn std::error::Error + 'static)) -> bool {
    err.downcast_ref::<Transient>().is_some()
}

/// When to restart and when to give up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartPolicy {
    /// Most failures of one child within `window` of its running time before
    /// escalating (the limit is passed by the next one).
    pub max_restarts: u32,
    /// The window for `max_restarts`, in the child's running time.
    pub window: Duration,
    /// First back-off.
    pub backoff_min: Duration,
    /// Longest back-off.
    pub backoff_max: Duration,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        Self {
            max_restarts: 5,
            window: Duration::from_secs(60),
            backoff_min: Duration::from_millis(200),
            backoff_max: Duration::from_secs(10),
        }
    }
}

/// What the supervisor reports of one child.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChildStatus {
    /// The child's name.
    pub name: String,
    /// Whether it is running now.
    pub running: bool,
    /// Restarts since the supervisor started.
    pub restarts: u32,
    /// Why it last stopped, if it did.
    pub last_failure: Option<String>,
}

/// Why a supervisor did not add a child.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, serde::Deserialize)]
pub enum SupervisorError {
    /// A child of that name is supervised already (perhaps being restarted).
    #[error("`{name}` is already supervised")]
    AlreadySupervised {
        /// The child's name.
        name: String,
    },
    /// The child did not start.
    #[error("starting `{name}`: {reason}")]
    Start {
        /// The child's name.
        name: String,
        /// Why.
        reason: String,
    },
}

/// Messages to a supervisor.
pub enum SupervisorMsg {
    /// Each child's status.
    Status(RpcReplyPort<Vec<ChildStatus>>),
    /// Restart the named child now (a manual RESET); answers whether it exists.
    Reset(String, RpcReplyPort<bool>),
    /// Add a child and start it; answers once it runs (or why not). A name
    /// already supervised is refused.
    Add(ChildSpec, RpcReplyPort<Result<(), SupervisorError>>),
    /// Stop the named child and forget it (no restart); answers whether it
    /// was supervised, once it has stopped (an `Add` of the same name sent
    /// before that answer finds the name still taken).
    Remove(String, RpcReplyPort<bool>),
    /// Internal: a back-off elapsed, start the child again.
    StartDue(String),
    /// Internal: the start numbered `start` of the named child ended.
    Started {
        /// The child's name.
        name: String,
        /// Which start this is (see `Child::starting`).
        start: u64,
        /// The running child and when it began to run, or why it did not
        /// start.
        result: Result<(ActorCell, Instant), SpawnErr>,
        /// Answered when the supervisor takes the report: a report left in
        /// the mailbox of a supervisor that stopped is never taken, and its
        /// sender then stops the instance itself.
        taken: tokio::sync::oneshot::Sender<()>,
    },
}

impl ractor::Message for SupervisorMsg {}

/// The supervisor actor.
pub struct Supervisor;

/// The supervisor's arguments.
pub struct SupervisorArgs {
    /// Children, started in order.
    pub children: Vec<ChildSpec>,
    /// Restart policy for every child.
    pub policy: RestartPolicy,
}

struct Child {
    spec: ChildSpec,
    cell: Option<ActorCell>,
    restarts: u32,
    /// When the running instance started.
    started: Option<Instant>,
    /// How long the earlier instances ran, in all.
    uptime: Duration,
    /// The counted failures, as points of `uptime`.
    recent: VecDeque<Duration>,
    /// Failures in a row (the back-off's exponent).
    consecutive: u32,
    last_failure: Option<String>,
    /// The start under way, if one is: its number (unique in this
    /// supervisor), so that only its own report is taken.
    starting: Option<u64>,
    /// Who asked to add this child, answered once its first start ends.
    adding: Option<RpcReplyPort<Result<(), SupervisorError>>>,
}

impl Child {
    fn new(spec: ChildSpec) -> Self {
        Child {
            spec,
            cell: None,
            restarts: 0,
            started: None,
            uptime: Duration::ZERO,
            recent: VecDeque::new(),
            consecutive: 0,
            last_failure: None,
            starting: None,
            adding: None,
        }
    }

    fn running(&mut self, cell: ActorCell) {
        self.running_since(cell, Instant::now());
    }

    fn running_since(&mut self, cell: ActorCell, since: Instant) {
        self.cell = Some(cell);
        self.started = Some(since);
    }

    /// The instance to stop: the running one, or one whose start ended but
    /// is not reported yet (it holds the child's name and runs).
    fn instance(&mut self) -> Option<ActorCell> {
        self.cell.take().or_else(|| {
            self.starting?;
            ractor::registry::where_is(self.spec.name.clone())
                .filter(|cell| cell.get_status() == ractor::ActorStatus::Running)
        })
    }
}

/// The supervisor's state.
pub struct SupervisorState {
    children: Vec<Child>,
    policy: RestartPolicy,
    /// The number of the next start.
    next_start: u64,
    /// Removals waiting for a start to end (by its number), to stop what
    /// it started before answering.
    removing: std::collections::HashMap<u64, RpcReplyPort<bool>>,
    /// Instances that stopped before their start was reported (the
    /// supervision event outran the report): id, why, and whether
    /// transiently. Kept only while a start is under way.
    early_exits: Vec<(ractor::ActorId, String, bool)>,
}

impl Actor for Supervisor {
    type Msg = SupervisorMsg;
    type State = SupervisorState;
    type Arguments = SupervisorArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<SupervisorMsg>,
        args: SupervisorArgs,
    ) -> Result<SupervisorState, ActorProcessingErr> {
        let mut children = Vec::with_capacity(args.children.len());
        for spec in args.children {
            let mut child = Child::new(spec);
            // A child that cannot start (a dependency is down) is retried
            // like one that failed, rather than failing the supervisor.
            match (child.spec.start)(myself.get_cell(), 0).await {
                Ok(cell) => child.running(cell),
                Err(err) => {
                    tracing::warn!(child = %child.spec.name, error = %err, "child failed to start; retrying");
                    let transient = start_error_is_transient(&err);
                    child.last_failure = Some(err.to_string());
                    if let Err(give_up) =
                        schedule_restart(&myself, &mut child, &args.policy, transient)
                    {
                        children.push(child);
                        stop_all(&mut children).await;
                        return Err(give_up);
                    }
                }
            }
            children.push(child);
        }
        Ok(SupervisorState {
            children,
            policy: args.policy,
            next_start: 0,
            removing: std::collections::HashMap::new(),
            early_exits: Vec::new(),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<SupervisorMsg>,
        message: SupervisorMsg,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            SupervisorMsg::Status(reply) => {
                let _ = reply.send(
                    state
                        .children
                        .iter()
                        .map(|c| ChildStatus {
                            name: c.spec.name.clone(),
                            running: c.cell.is_some(),
                            restarts: c.restarts,
                            last_failure: c.last_failure.clone(),
                        })
                        .collect(),
                );
            }
            SupervisorMsg::Reset(name, reply) => {
                let child = state.children.iter_mut().find(|c| c.spec.name == name);
                let found = child.is_some();
                if let Some(child) = child {
                    tracing::info!(child = %name, "manual reset");
                    if let Some(cell) = &child.cell {
                        // Its termination event triggers the restart.
                        cell.stop(Some("manual reset".into()));
                    }
                    // Starting or waiting out its back-off: the instance to
                    // come is fresh already.
                }
                let _ = reply.send(found);
            }
            SupervisorMsg::Remove(name, reply) => {
                let Some(at) = state.children.iter().position(|c| c.spec.name == name) else {
                    let _ = reply.send(false);
                    return Ok(());
                };
                // Forgotten first: its termination event finds no child.
                let mut child = state.children.remove(at);
                tracing::info!(child = %name, "child removed");
                if let Some(adding) = child.adding.take() {
                    let _ = adding.send(Err(SupervisorError::Start {
                        name: name.clone(),
                        reason: "removed before it started".to_owned(),
                    }));
                }
                if let Some(start) = child.starting {
                    // Answered once that start ends and what it started stops.
                    state.removing.insert(start, reply);
                } else {
                    stop_then_answer(name, child.cell.take(), "removed", Some(reply));
                }
            }
            SupervisorMsg::Add(spec, reply) => {
                if state.children.iter().any(|c| c.spec.name == spec.name) {
                    let _ = reply.send(Err(SupervisorError::AlreadySupervised { name: spec.name }));
                    return Ok(());
                }
                let mut child = Child::new(spec);
                child.adding = Some(reply);
                begin_start(&myself, &mut child, &mut state.next_start);
                state.children.push(child);
            }
            SupervisorMsg::StartDue(name) => {
                let Some(child) = state.children.iter_mut().find(|c| c.spec.name == name) else {
                    return Ok(());
                };
                if child.cell.is_some() || child.starting.is_some() {
                    return Ok(());
                }
                begin_start(&myself, child, &mut state.next_start);
            }
            SupervisorMsg::Started {
                name,
                start,
                result,
                taken,
            } => {
                let _ = taken.send(());
                let Some(at) = state
                    .children
                    .iter()
                    .position(|c| c.starting == Some(start))
                else {
                    // Removed while it started: nothing of it may keep running.
                    let waiting = state.removing.remove(&start);
                    let cell = result.ok().map(|(cell, _)| cell);
                    if cell.is_some() {
                        tracing::info!(child = %name, "started after it was removed; stopping it");
                    }
                    stop_then_answer(name, cell, "removed", waiting);
                    return Ok(());
                };
                let child = &mut state.children[at];
                child.starting = None;
                // Its supervision event may have come before this report.
                let early = match &result {
                    Ok((cell, _)) => {
                        let id = cell.get_id();
                        let at = state
                            .early_exits
                            .iter()
                            .position(|(exited, ..)| *exited == id);
                        at.map(|i| state.early_exits.swap_remove(i))
                    }
                    Err(_) => None,
                };
                if state.children.iter().all(|c| c.starting.is_none()) {
                    // What is kept can concern no start any more.
                    state.early_exits.clear();
                }
                let child = &mut state.children[at];
                match result {
                    Ok((cell, since)) => {
                        if let Some(adding) = child.adding.take() {
                            tracing::info!(child = %name, "child added");
                            let _ = adding.send(Ok(()));
                        } else {
                            tracing::info!(child = %name, restarts = child.restarts, "child restarted");
                            metrics::counter!(crate::telemetry::ACTOR_RESTARTS, "child" => name.clone())
                                .increment(1);
                        }
                        child.running_since(cell, since);
                        if let Some((_, reason, transient)) = early {
                            return child_exited(&myself, state, at, reason, transient).await;
                        }
                    }
                    Err(err) => {
                        if let Some(adding) = child.adding.take() {
                            // An added child that does not start is not added.
                            let _ = adding.send(Err(SupervisorError::Start {
                                name,
                                reason: err.to_string(),
                            }));
                            state.children.remove(at);
                            return Ok(());
                        }
                        // Failing to start counts as another failure.
                        tracing::warn!(child = %name, error = %err, "child failed to start again");
                        let transient = start_error_is_transient(&err);
                        child.last_failure = Some(err.to_string());
                        if let Err(give_up) =
                            schedule_restart(&myself, child, &state.policy, transient)
                        {
                            stop_all(&mut state.children).await;
                            return Err(give_up);
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Stopping (not killed): the children stop too, in their start
    /// order, each after its current message (a consumer finishes and
    /// commits its batch), not restarted.
    async fn post_stop(
        &self,
        _myself: ActorRef<SupervisorMsg>,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        stop_in_order(&mut state.children).await;
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<SupervisorMsg>,
        event: SupervisionEvent,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        let (cell, reason, transient) = match &event {
            SupervisionEvent::ActorFailed(cell, err) => {
                (cell, err.to_string(), is_transient(err.as_ref()))
            }
            SupervisionEvent::ActorTerminated(cell, _, reason) => (
                cell,
                reason.clone().unwrap_or_else(|| "stopped".to_owned()),
                false,
            ),
            _ => return Ok(()),
        };
        let id = cell.get_id();
        if let Some(at) = state
            .children
            .iter()
            .position(|c| c.cell.as_ref().is_some_and(|own| own.get_id() == id))
        {
            return child_exited(&myself, state, at, reason, transient).await;
        }
        // Perhaps an instance whose start is not reported yet: kept for
        // the report while a start is under way.
        if state.children.iter().any(|c| c.starting.is_some()) {
            state.early_exits.push((id, reason, transient));
        }
        Ok(())
    }
}

/// The running child at `at` stopped: counts it and schedules its restart,
/// or gives up past the restart intensity.
async fn child_exited(
    myself: &ActorRef<SupervisorMsg>,
    state: &mut SupervisorState,
    at: usize,
    reason: String,
    transient: bool,
) -> Result<(), ActorProcessingErr> {
    let child = &mut state.children[at];
    tracing::warn!(child = %child.spec.name, %reason, transient, "child stopped; restarting");
    child.cell = None;
    child.last_failure = Some(reason);
    if let Err(give_up) = schedule_restart(myself, child, &state.policy, transient) {
        stop_all(&mut state.children).await;
        return Err(give_up);
    }
    Ok(())
}

/// Starts `child` in a task of its own, which reports back with
/// [`SupervisorMsg::Started`]; the supervisor goes on answering meanwhile.
/// If the supervisor is gone by then, the new instance is stopped.
fn begin_start(myself: &ActorRef<SupervisorMsg>, child: &mut Child, next_start: &mut u64) {
    let start = *next_start;
    *next_start += 1;
    child.starting = Some(start);
    let name = child.spec.name.clone();
    let start_fn = Arc::clone(&child.spec.start);
    let restarts = child.restarts;
    let myself = myself.clone();
    tokio::spawn(async move {
        // A start function that panics is a start that failed, not a
        // report that never comes (the child would never be started again).
        let result = match tokio::spawn(start_fn(myself.get_cell(), restarts)).await {
            Ok(started) => started.map(|cell| (cell, Instant::now())),
            Err(join) => Err(SpawnErr::StartupFailed(
                format!("the start of `{name}` panicked: {join}").into(),
            )),
        };
        let spawned = result.as_ref().ok().map(|(cell, _)| cell.clone());
        let (taken, was_taken) = tokio::sync::oneshot::channel();
        let report = SupervisorMsg::Started {
            name,
            start,
            result,
            taken,
        };
        let reported = myself.send_message(report).is_ok() && was_taken.await.is_ok();
        if let (false, Some(cell)) = (reported, spawned) {
            tracing::info!(child = ?cell.get_name(), "its supervisor stopped while it started; stopping it");
            cell.stop(Some("its supervisor stopped".into()));
        }
    });
}

/// Stops `cell` (if any) in a task of its own, waiting a bounded time
/// before killing it, then answers `reply` (if any) with `true`.
fn stop_then_answer(
    name: String,
    cell: Option<ActorCell>,
    reason: &'static str,
    reply: Option<RpcReplyPort<bool>>,
) {
    tokio::spawn(async move {
        if let Some(cell) = cell {
            stop_or_kill(&name, cell, reason).await;
        }
        if let Some(reply) = reply {
            let _ = reply.send(true);
        }
    });
}

/// Whether a child's start failed for a [`Transient`] reason.
fn start_error_is_transient(err: &SpawnErr) -> bool {
    match err {
        SpawnErr::StartupFailed(e) => is_transient(e.as_ref()),
        _ => false,
    }
}

/// How long a stopping supervisor waits for each child to finish its
/// current message and stop, before killing it.
pub const SHUTDOWN_CHILD_TIMEOUT: Duration = Duration::from_secs(10);

/// Stops every running child in the order they were started (a platform
/// starts its intake first: it stops first, then what drains it), each
/// after its current message, waiting a bounded time for each.
async fn stop_in_order(children: &mut [Child]) {
    for child in children.iter_mut() {
        if let Some(cell) = child.instance() {
            tracing::info!(child = %child.spec.name, "stopping (shutdown)");
            stop_or_kill(&child.spec.name, cell, "shutdown").await;
        }
    }
}

/// Stops every running child and waits (a bounded time) for each: a
/// supervisor that gives up leaves nothing of its own running.
async fn stop_all(children: &mut [Child]) {
    for child in children.iter_mut() {
        if let Some(cell) = child.instance() {
            tracing::warn!(child = %child.spec.name, "stopping: the supervisor gives up");
            stop_or_kill(&child.spec.name, cell, "the supervisor gives up").await;
        }
    }
}

/// Stops `cell` after its current message, killing it if it has not
/// stopped within [`SHUTDOWN_CHILD_TIMEOUT`].
async fn stop_or_kill(name: &str, cell: ActorCell, reason: &str) {
    if cell
        .stop_and_wait(Some(reason.into()), Some(SHUTDOWN_CHILD_TIMEOUT))
        .await
        .is_err()
    {
        tracing::warn!(child = %name, timeout = ?SHUTDOWN_CHILD_TIMEOUT, "did not stop in time: killed");
        cell.kill();
    }
}

/// Counts a failure (unless transient), escalates past the intensity limit,
/// otherwise schedules the start after the back-off.
fn schedule_restart(
    myself: &ActorRef<SupervisorMsg>,
    child: &mut Child,
    policy: &RestartPolicy,
    transient: bool,
) -> Result<(), ActorProcessingErr> {
    let ran = child.started.take().map_or(Duration::ZERO, |t| t.elapsed());
    child.uptime = child.uptime.saturating_add(ran);
    if ran >= policy.backoff_max {
        // It ran well for a while: this failure is the first of a new run.
        child.consecutive = 0;
    }
    if !transient {
        let now = child.uptime;
        while child
            .recent
            .front()
            .is_some_and(|t| now.saturating_sub(*t) > policy.window)
        {
            child.recent.pop_front();
        }
        child.recent.push_back(now);
        if child.recent.len() > policy.max_restarts as usize {
            tracing::error!(
                child = %child.spec.name,
                failures = child.recent.len(),
                max_restarts = policy.max_restarts,
                window_ms = policy.window.as_millis() as u64,
                last_failure = child.last_failure.as_deref().unwrap_or(""),
                "restart intensity exceeded; the supervisor gives up"
            );
            return Err(format!(
                "child `{}` failed {} times within {:?} of running time (limit {}): {}",
                child.spec.name,
                child.recent.len(),
                policy.window,
                policy.max_restarts,
                child.last_failure.as_deref().unwrap_or("")
            )
            .into());
        }
    }
    let backoff = policy
        .backoff_min
        .saturating_mul(1 << child.consecutive.min(16))
        .min(policy.backoff_max);
    child.consecutive = child.consecutive.saturating_add(1);
    child.restarts += 1;
    let name = child.spec.name.clone();
    myself.send_after(backoff, move || SupervisorMsg::StartDue(name));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A child that fails when told to.
    struct Fragile;

    enum FragileMsg {
        Fail,
        Restarts(RpcReplyPort<u32>),
    }
    impl ractor::Message for FragileMsg {}

    impl Actor for Fragile {
        type Msg = FragileMsg;
        type State = u32;
        type Arguments = u32;

        async fn pre_start(
            &self,
            _: ActorRef<FragileMsg>,
            restarts: u32,
        ) -> Result<u32, ActorProcessingErr> {
            Ok(restarts)
        }

        async fn handle(
            &self,
            _: ActorRef<FragileMsg>,
            msg: FragileMsg,
            restarts: &mut u32,
        ) -> Result<(), ActorProcessingErr> {
            match msg {
                FragileMsg::Fail => Err("told to fail".into()),
                FragileMsg::Restarts(reply) => {
                    let _ = reply.send(*restarts);
                    Ok(())
                }
            }
        }
    }

    fn fragile(name: &str) -> ChildSpec {
        let n = name.to_owned();
        ChildSpec {
            name: name.to_owned(),
            start: Arc::new(move |sup, restarts| {
                let n = n.clone();
                Box::pin(async move {
                    Actor::spawn_linked(Some(n), Fragile, restarts, sup)
                        .await
                        .map(|(a, _)| a.get_cell())
                })
            }),
        }
    }

    async fn child(name: &str) -> ActorRef<FragileMsg> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(cell) = ractor::registry::where_is(name) {
                return cell.into();
            }
            assert!(Instant::now() < deadline, "{name} did not come back");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The actor holding `name` once it is not `failed` any more (its
    /// replacement).
    async fn replaced(name: &str, failed: ractor::ActorId) -> ActorRef<FragileMsg> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(cell) = ractor::registry::where_is(name) {
                if cell.get_id() != failed {
                    return cell.into();
                }
            }
            assert!(Instant::now() < deadline, "{name} was not replaced");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn restarts_of(child: &ActorRef<FragileMsg>, prev: u32) -> u32 {
        // Poll until the restarted child reports a new count.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Ok(n) = ractor::call_t!(child, FragileMsg::Restarts, 1_000) {
                if n != prev {
                    return n;
                }
            }
            assert!(Instant::now() < deadline, "no restart seen");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn restarts_under_the_same_name_then_escalates() {
        let policy = RestartPolicy {
            max_restarts: 2,
            window: Duration::from_secs(30),
            backoff_min: Duration::from_millis(10),
            backoff_max: Duration::from_millis(50),
        };
        let (sup, handle) = Actor::spawn(
            None,
            Supervisor,
            SupervisorArgs {
                children: vec![fragile("fragile-a")],
                policy,
            },
        )
        .await
        .unwrap();

        for expected in 1..=2 {
            let c = child("fragile-a").await;
            let failed = c.get_id();
            c.cast(FragileMsg::Fail).unwrap();
            // The event, not a pause: the name is held by another actor.
            let c = replaced("fragile-a", failed).await;
            assert_eq!(restarts_of(&c, expected - 1).await, expected);
        }
        let status = ractor::call_t!(sup, SupervisorMsg::Status, 1_000).unwrap();
        assert_eq!(status[0].restarts, 2);
        assert!(status[0]
            .last_failure
            .as_deref()
            .unwrap()
            .contains("told to fail"));

        // A third failure within the window exceeds the limit: the supervisor fails.
        child("fragile-a").await.cast(FragileMsg::Fail).unwrap();
        tokio::time::timeout(Duration::from_secs(5), handle)
            .await
            .expect("supervisor escalated")
            .unwrap();
        assert_eq!(sup.get_status(), ractor::ActorStatus::Stopped);
    }

    /// A child that fails as soon as it starts, transiently or not, as its
    /// arguments say (a crash loop, or an outage).
    struct Looping;

    struct Fail;
    impl ractor::Message for Fail {}

    impl Actor for Looping {
        type Msg = Fail;
        type State = Arc<dyn Fn() -> bool + Send + Sync>;
        type Arguments = Arc<dyn Fn() -> bool + Send + Sync>;

        async fn pre_start(
            &self,
            myself: ActorRef<Fail>,
            transient: Self::Arguments,
        ) -> Result<Self::State, ActorProcessingErr> {
            myself.cast(Fail)?;
            Ok(transient)
        }

        async fn handle(
            &self,
            _: ActorRef<Fail>,
            _: Fail,
            transient: &mut Self::State,
        ) -> Result<(), ActorProcessingErr> {
            if transient() {
                Err(Box::new(Transient("the database is away".into())))
            } else {
                Err("a batch that always fails".into())
            }
        }
    }

    fn looping(name: &str, transient: Arc<dyn Fn() -> bool + Send + Sync>) -> ChildSpec {
        let n = name.to_owned();
        ChildSpec {
            name: name.to_owned(),
            start: Arc::new(move |sup, _| {
                let (n, t) = (n.clone(), Arc::clone(&transient));
                Box::pin(async move {
                    Actor::spawn_linked(Some(n), Looping, t, sup)
                        .await
                        .map(|(a, _)| a.get_cell())
                })
            }),
        }
    }

    async fn status_of(sup: &ActorRef<SupervisorMsg>, name: &str) -> ChildStatus {
        ractor::call_t!(sup, SupervisorMsg::Status, 1_000)
            .unwrap()
            .into_iter()
            .find(|c| c.name == name)
            .unwrap()
    }

    #[tokio::test]
    async fn a_crash_loop_escalates_whatever_the_back_off() {
        // The back-off between runs is longer than the window: with a
        // wall-clock window this would restart for ever. The window counts
        // running time only, so the fourth failure passes the limit of 3.
        let policy = RestartPolicy {
            max_restarts: 3,
            window: Duration::from_millis(500),
            backoff_min: Duration::from_millis(600),
            backoff_max: Duration::from_millis(600),
        };
        let (sup, handle) = Actor::spawn(
            None,
            Supervisor,
            SupervisorArgs {
                children: vec![
                    looping("looping-a", Arc::new(|| false)),
                    fragile("bystander-a"),
                ],
                policy,
            },
        )
        .await
        .unwrap();
        let bystander = child("bystander-a").await;
        tokio::time::timeout(Duration::from_secs(30), handle)
            .await
            .expect("the supervisor gave up")
            .unwrap();
        assert_eq!(sup.get_status(), ractor::ActorStatus::Stopped);
        // Giving up stops every child, the healthy one too.
        tokio::time::timeout(Duration::from_secs(5), bystander.get_cell().wait(None))
            .await
            .expect("the bystander was stopped")
            .unwrap();
        assert!(ractor::registry::where_is("looping-a").is_none());
    }

    #[tokio::test]
    async fn transient_failures_are_retried_without_escalating() {
        let policy = RestartPolicy {
            max_restarts: 2,
            window: Duration::from_secs(60),
            backoff_min: Duration::from_millis(5),
            backoff_max: Duration::from_millis(20),
        };
        // Transient for its first 8 runs (an outage), then a crash loop.
        let runs = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let r = Arc::clone(&runs);
        let transient = Arc::new(move || r.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < 8);
        let (sup, handle) = Actor::spawn(
            None,
            Supervisor,
            SupervisorArgs {
                children: vec![looping("looping-b", transient)],
                policy,
            },
        )
        .await
        .unwrap();
        // 8 transient failures (more than the limit of 2), then 3 counted ones.
        tokio::time::timeout(Duration::from_secs(30), handle)
            .await
            .expect("the supervisor gave up")
            .unwrap();
        assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 11);
        assert_eq!(sup.get_status(), ractor::ActorStatus::Stopped);
    }

    #[tokio::test]
    async fn transient_failures_alone_never_escalate() {
        let policy = RestartPolicy {
            max_restarts: 1,
            window: Duration::from_secs(60),
            backoff_min: Duration::from_millis(1),
            backoff_max: Duration::from_millis(2),
        };
        let (sup, _h) = Actor::spawn(
            None,
            Supervisor,
            SupervisorArgs {
                children: vec![looping("looping-c", Arc::new(|| true))],
                policy,
            },
        )
        .await
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let s = status_of(&sup, "looping-c").await;
            if s.restarts >= 20 {
                assert!(s.last_failure.unwrap().contains("transient"));
                break;
            }
            assert!(Instant::now() < deadline, "only {} restarts", s.restarts);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(sup.get_status(), ractor::ActorStatus::Running);
        sup.stop(None);
    }

    #[tokio::test]
    async fn manual_reset_restarts_a_healthy_child() {
        let (sup, _h) = Actor::spawn(
            None,
            Supervisor,
            SupervisorArgs {
                children: vec![fragile("fragile-b")],
                policy: RestartPolicy {
                    backoff_min: Duration::from_millis(5),
                    ..RestartPolicy::default()
                },
            },
        )
        .await
        .unwrap();
        assert!(ractor::call_t!(sup, SupervisorMsg::Reset, 1_000, "fragile-b".to_owned()).unwrap());
        assert!(!ractor::call_t!(sup, SupervisorMsg::Reset, 1_000, "nobody".to_owned()).unwrap());
        let c = child("fragile-b").await;
        assert_eq!(restarts_of(&c, 0).await, 1);
        sup.stop(None);
    }

    /// A child whose start waits at a gate the test holds (a producer
    /// making its topic sure while the broker is away): each start says it
    /// began, then waits for a permit.
    struct Gated;

    #[derive(Clone)]
    struct Gate {
        began: tokio::sync::mpsc::UnboundedSender<u32>,
        permits: Arc<tokio::sync::Semaphore>,
    }

    impl Actor for Gated {
        type Msg = FragileMsg;
        type State = u32;
        type Arguments = (Gate, u32);

        async fn pre_start(
            &self,
            _: ActorRef<FragileMsg>,
            (gate, restarts): (Gate, u32),
        ) -> Result<u32, ActorProcessingErr> {
            let _ = gate.began.send(restarts);
            gate.permits.acquire().await?.forget();
            Ok(restarts)
        }

        async fn handle(
            &self,
            myself: ActorRef<FragileMsg>,
            msg: FragileMsg,
            restarts: &mut u32,
        ) -> Result<(), ActorProcessingErr> {
            // Once started, it is a fragile child.
            Fragile.handle(myself, msg, restarts).await
        }
    }

    /// A gated child, the gate, and the starts' reports.
    fn gated(name: &str) -> (ChildSpec, Gate, tokio::sync::mpsc::UnboundedReceiver<u32>) {
        let (began, starts) = tokio::sync::mpsc::unbounded_channel();
        let gate = Gate {
            began,
            permits: Arc::new(tokio::sync::Semaphore::new(0)),
        };
        let n = name.to_owned();
        let g = gate.clone();
        let spec = ChildSpec {
            name: name.to_owned(),
            start: Arc::new(move |sup, restarts| {
                let (n, g) = (n.clone(), g.clone());
                Box::pin(async move {
                    Actor::spawn_linked(Some(n), Gated, (g, restarts), sup)
                        .await
                        .map(|(a, _)| a.get_cell())
                })
            }),
        };
        (spec, gate, starts)
    }

    async fn began(starts: &mut tokio::sync::mpsc::UnboundedReceiver<u32>) -> u32 {
        tokio::time::timeout(Duration::from_secs(10), starts.recv())
            .await
            .expect("a start began")
            .expect("the gate is held")
    }

    fn quick() -> RestartPolicy {
        RestartPolicy {
            backoff_min: Duration::from_millis(5),
            backoff_max: Duration::from_millis(20),
            ..RestartPolicy::default()
        }
    }

    #[tokio::test]
    async fn a_child_that_takes_long_to_restart_blocks_nothing() {
        let (spec, gate, mut starts) = gated("gated-a");
        gate.permits.add_permits(1);
        let (sup, _h) = Actor::spawn(
            None,
            Supervisor,
            SupervisorArgs {
                children: vec![spec, fragile("sibling-a")],
                policy: quick(),
            },
        )
        .await
        .unwrap();
        assert_eq!(began(&mut starts).await, 0);

        // It fails; its restart waits at the gate.
        let first = child("gated-a").await;
        let failed = first.get_id();
        first.cast(FragileMsg::Fail).unwrap();
        assert_eq!(began(&mut starts).await, 1);

        // Meanwhile the supervisor answers, and looks after the sibling.
        let status = ractor::call_t!(sup, SupervisorMsg::Status, 5_000)
            .expect("the supervisor answers while a child starts");
        let gated_status = status.iter().find(|c| c.name == "gated-a").unwrap();
        assert!(!gated_status.running);
        assert_eq!(gated_status.restarts, 1);
        let sibling = child("sibling-a").await;
        let sibling_id = sibling.get_id();
        sibling.cast(FragileMsg::Fail).unwrap();
        let sibling = replaced("sibling-a", sibling_id).await;
        assert_eq!(restarts_of(&sibling, 0).await, 1);
        assert!(
            ractor::call_t!(sup, SupervisorMsg::Reset, 5_000, "gated-a".to_owned()).unwrap(),
            "a child being started is still supervised"
        );
        // A back-off that elapses meanwhile starts no second instance.
        sup.cast(SupervisorMsg::StartDue("gated-a".to_owned()))
            .unwrap();

        // The gate opens: the restarted child runs, once.
        gate.permits.add_permits(1);
        let second = replaced("gated-a", failed).await;
        assert_eq!(restarts_of(&second, 0).await, 1);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !status_of(&sup, "gated-a").await.running {
            assert!(Instant::now() < deadline, "the restart was not reported");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(starts.try_recv().is_err(), "a second start began");
        sup.stop(None);
    }

    #[tokio::test]
    async fn a_child_removed_while_it_starts_does_not_outlive_its_removal() {
        let (spec, gate, mut starts) = gated("gated-b");
        let (sup, _h) = Actor::spawn(
            None,
            Supervisor,
            SupervisorArgs {
                children: vec![],
                policy: quick(),
            },
        )
        .await
        .unwrap();
        // Adding waits for the start, the supervisor does not.
        let adding = {
            let sup = sup.clone();
            tokio::spawn(async move { ractor::call!(sup, SupervisorMsg::Add, spec) })
        };
        assert_eq!(began(&mut starts).await, 0);
        let status = ractor::call_t!(sup, SupervisorMsg::Status, 5_000)
            .expect("the supervisor answers while a child is added");
        assert_eq!(status.len(), 1);
        assert!(!status[0].running);

        // Removed before its start ends: the removal answers once the
        // instance, when it runs, has stopped again.
        let removing = {
            let sup = sup.clone();
            tokio::spawn(
                async move { ractor::call!(sup, SupervisorMsg::Remove, "gated-b".to_owned()) },
            )
        };
        let added = tokio::time::timeout(Duration::from_secs(10), adding)
            .await
            .expect("the addition was answered")
            .unwrap()
            .unwrap();
        assert!(
            matches!(added, Err(SupervisorError::Start { .. })),
            "{added:?}"
        );
        gate.permits.add_permits(1);
        let removed = tokio::time::timeout(Duration::from_secs(10), removing)
            .await
            .expect("the removal was answered")
            .unwrap()
            .unwrap();
        assert!(removed);
        assert!(ractor::registry::where_is("gated-b").is_none());
        assert!(ractor::call_t!(sup, SupervisorMsg::Status, 5_000)
            .unwrap()
            .is_empty());
        sup.stop(None);
    }

    #[tokio::test]
    async fn a_child_still_starting_when_its_supervisor_stops_is_stopped() {
        let (spec, gate, mut starts) = gated("gated-c");
        gate.permits.add_permits(1);
        let (sup, handle) = Actor::spawn(
            None,
            Supervisor,
            SupervisorArgs {
                children: vec![spec],
                policy: quick(),
            },
        )
        .await
        .unwrap();
        began(&mut starts).await;
        let first = child("gated-c").await;
        first.cast(FragileMsg::Fail).unwrap();
        assert_eq!(began(&mut starts).await, 1);
        sup.stop(None);
        tokio::time::timeout(Duration::from_secs(10), handle)
            .await
            .expect("the supervisor stopped")
            .unwrap();
        gate.permits.add_permits(1);
        let deadline = Instant::now() + Duration::from_secs(10);
        while ractor::registry::where_is("gated-c").is_some() {
            assert!(Instant::now() < deadline, "an orphan instance runs on");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn a_start_that_panics_is_a_failed_start_and_is_retried() {
        // Its first restart panics in the start function itself (not in
        // pre_start, whose panics ractor catches); the next one works.
        let panicked = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let p = Arc::clone(&panicked);
        let spec = ChildSpec {
            name: "panicky-a".to_owned(),
            start: Arc::new(move |sup, restarts| {
                let p = Arc::clone(&p);
                Box::pin(async move {
                    if restarts == 1 && !p.swap(true, std::sync::atomic::Ordering::SeqCst) {
                        panic!("a start function that panics");
                    }
                    Actor::spawn_linked(Some("panicky-a".to_owned()), Fragile, restarts, sup)
                        .await
                        .map(|(a, _)| a.get_cell())
                })
            }),
        };
        let (sup, _h) = Actor::spawn(
            None,
            Supervisor,
            SupervisorArgs {
                children: vec![spec],
                policy: quick(),
            },
        )
        .await
        .unwrap();
        let first = child("panicky-a").await;
        let failed = first.get_id();
        first.cast(FragileMsg::Fail).unwrap();
        let again = replaced("panicky-a", failed).await;
        assert!(panicked.load(std::sync::atomic::Ordering::SeqCst));
        assert_eq!(restarts_of(&again, 0).await, 2);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let status = status_of(&sup, "panicky-a").await;
            if status.running {
                assert_eq!(status.restarts, 2);
                break;
            }
            assert!(Instant::now() < deadline, "not running: {status:?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(sup.get_status(), ractor::ActorStatus::Running);
        sup.stop(None);
    }
}
