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
    /// was supervised.
    Remove(String, RpcReplyPort<bool>),
    /// Internal: a back-off elapsed, start the child again.
    StartDue(String),
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
        }
    }

    fn running(&mut self, cell: ActorCell) {
        self.cell = Some(cell);
        self.started = Some(Instant::now());
    }
}

/// The supervisor's state.
pub struct SupervisorState {
    children: Vec<Child>,
    policy: RestartPolicy,
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
                stop_all(std::slice::from_mut(&mut child)).await;
                let _ = reply.send(true);
            }
            SupervisorMsg::Add(spec, reply) => {
                if state.children.iter().any(|c| c.spec.name == spec.name) {
                    let _ = reply.send(Err(SupervisorError::AlreadySupervised { name: spec.name }));
                    return Ok(());
                }
                match (spec.start)(myself.get_cell(), 0).await {
                    Ok(cell) => {
                        tracing::info!(child = %spec.name, "child added");
                        let mut child = Child::new(spec);
                        child.running(cell);
                        state.children.push(child);
                        let _ = reply.send(Ok(()));
                    }
                    Err(err) => {
                        let _ = reply.send(Err(SupervisorError::Start {
                            name: spec.name,
                            reason: err.to_string(),
                        }));
                    }
                }
            }
            SupervisorMsg::StartDue(name) => {
                let Some(child) = state.children.iter_mut().find(|c| c.spec.name == name) else {
                    return Ok(());
                };
                if child.cell.is_some() {
                    return Ok(());
                }
                match (child.spec.start)(myself.get_cell(), child.restarts).await {
                    Ok(cell) => {
                        tracing::info!(child = %name, restarts = child.restarts, "child restarted");
                        metrics::counter!(crate::telemetry::ACTOR_RESTARTS, "child" => name.clone())
                            .increment(1);
                        child.running(cell);
                    }
                    Err(err) => {
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
        let Some(child) = state.children.iter_mut().find(|c| {
            c.cell
                .as_ref()
                .is_some_and(|own| own.get_id() == cell.get_id())
        }) else {
            return Ok(());
        };
        tracing::warn!(child = %child.spec.name, %reason, transient, "child stopped; restarting");
        child.cell = None;
        child.last_failure = Some(reason);
        if let Err(give_up) = schedule_restart(&myself, child, &state.policy, transient) {
            stop_all(&mut state.children).await;
            return Err(give_up);
        }
        Ok(())
    }
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
        if let Some(cell) = child.cell.take() {
            tracing::info!(child = %child.spec.name, "stopping (shutdown)");
            if cell
                .stop_and_wait(Some("shutdown".into()), Some(SHUTDOWN_CHILD_TIMEOUT))
                .await
                .is_err()
            {
                tracing::warn!(child = %child.spec.name, timeout = ?SHUTDOWN_CHILD_TIMEOUT, "did not stop in time: killed");
                cell.kill();
            }
        }
    }
}

/// Stops every running child and waits (a bounded time) for each: a
/// supervisor that gives up leaves nothing of its own running.
async fn stop_all(children: &mut [Child]) {
    for child in children.iter_mut() {
        if let Some(cell) = child.cell.take() {
            tracing::warn!(child = %child.spec.name, "stopping: the supervisor gives up");
            if cell
                .stop_and_wait(
                    Some("the supervisor gives up".into()),
                    Some(Duration::from_secs(10)),
                )
                .await
                .is_err()
            {
                cell.kill();
            }
        }
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
}
