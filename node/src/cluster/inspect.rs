//! Live introspection across the cluster: what `GET /admin/cluster` shows.
//!
//! ractor's introspection (the pid registry, a cell's status, name and
//! supervisor; process groups) only sees the local process. So every node runs
//! an [`Inspector`]: an actor with the cluster name `inspect/<node>` (role
//! `inspectors`) that answers [`InspectMsg::Report`] with a [`NodeReport`] of
//! its own node: its sessions, and every local actor with its status, parent,
//! state machine (current state, recent run) and restart count.
//!
//! [`cluster_view`] assembles the whole picture on the asking node: its own
//! report, one timed call per connected peer (in parallel, each bounded by
//! the same time-out), the membership state of every peer, the process groups
//! with the node of each holder, and the Kafka topics from the broker's
//! metadata (also bounded). A peer that is not connected, or does not answer
//! in time, is listed as unreachable with the reason; the request never waits
//! longer than the time-out.
//!
//! The report's types come from `candela_api::admin` (serde + OpenAPI), so
//! what crosses the wire is exactly what the endpoint documents.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use candela_actors::call::{call, CallError};
use candela_actors::fsm::registry as machines;
use candela_actors::kafka::admin::list_topics;
use candela_actors::kafka::KafkaConfig;
use candela_actors::supervisor::{ChildStatus, SupervisorMsg};
use candela_api::admin::{
    ClusterView, GroupHolder, GroupView, NodeActorView, NodeReport, NodeView, PartitionRef,
    PlacementView, SessionView, StepDto, TopicView, TopicsView,
};
use candela_api::server::{BoxFuture, ClusterStatusFn};
use ractor::{pg, Actor, ActorCell, ActorProcessingErr, ActorRef, RpcReplyPort};
use ractor_cluster::RactorClusterMessage;

use super::membership::{ClusterStatus, MembershipMsg, MEMBERSHIP_NAME};
use super::names;
use super::peer::PeerState;

/// The inspector's local registry name.
pub const INSPECTOR_NAME: &str = "candela.inspect";
/// The role group of inspectors.
pub const INSPECTOR_ROLE: &str = "inspectors";
/// The longest wait for a local supervisor's or membership's answer while
/// building a report.
const LOCAL_TIMEOUT: Duration = Duration::from_secs(1);

/// The cluster name of `node`'s inspector.
pub fn inspector_name(node: &str) -> String {
    format!("inspect/{node}")
}

/// Messages to an inspector (they cross nodes).
#[derive(RactorClusterMessage)]
pub enum InspectMsg {
    /// Report on your node.
    #[rpc]
    Report(RpcReplyPort<NodeReport>),
}

/// The per-node inspector; its argument is this node's name.
pub struct Inspector;

impl Actor for Inspector {
    type Msg = InspectMsg;
    type State = String;
    type Arguments = String;

    async fn pre_start(
        &self,
        myself: ActorRef<InspectMsg>,
        node: String,
    ) -> Result<String, ActorProcessingErr> {
        names::register(&myself.get_cell(), INSPECTOR_ROLE, &inspector_name(&node))?;
        Ok(node)
    }

    async fn handle(
        &self,
        _: ActorRef<InspectMsg>,
        msg: InspectMsg,
        node: &mut String,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            InspectMsg::Report(reply) => {
                // Built in a task: the report waits on supervisors and
                // membership, and the mailbox should not.
                let node = node.clone();
                tokio::spawn(async move {
                    let report = local_report(&node).await;
                    tracing::debug!(node = %node, actors = report.actors.len(), "inspection report");
                    let _ = reply.send(report);
                });
            }
        }
        Ok(())
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// This node's membership snapshot, within [`LOCAL_TIMEOUT`].
async fn membership() -> Result<ClusterStatus, CallError> {
    let cell = ractor::registry::where_is(MEMBERSHIP_NAME)
        .ok_or_else(|| CallError::unreachable(MEMBERSHIP_NAME, "it is not running"))?;
    call(&cell, MEMBERSHIP_NAME, MembershipMsg::Status, LOCAL_TIMEOUT).await
}

/// Every local supervisor's children, by child name. Supervisors are found
/// by their message type, so one added later (a coordinator's, say) shows up
/// without being listed anywhere.
async fn supervised(cells: &[ActorCell]) -> HashMap<String, ChildStatus> {
    let mut calls = tokio::task::JoinSet::new();
    for cell in cells {
        if cell.is_message_type_of::<SupervisorMsg>() == Some(true) {
            let sup = cell.clone();
            calls.spawn(async move {
                call(&sup, &label(&sup), SupervisorMsg::Status, LOCAL_TIMEOUT).await
            });
        }
    }
    let mut children = HashMap::new();
    while let Some(done) = calls.join_next().await {
        match done {
            Ok(Ok(list)) => children.extend(list.into_iter().map(|c| (c.name.clone(), c))),
            Ok(Err(error)) => tracing::debug!(%error, "supervisor did not report"),
            Err(error) => tracing::warn!(%error, "supervisor report task failed"),
        }
    }
    children
}

fn label(cell: &ActorCell) -> String {
    cell.get_name().unwrap_or_else(|| cell.get_id().to_string())
}

/// This node's report: its sessions and every local actor.
pub async fn local_report(node: &str) -> NodeReport {
    let cells: Vec<ActorCell> = ractor::registry::get_all_pids()
        .into_iter()
        .filter(|c| c.get_id().is_local())
        .collect();
    let children = supervised(&cells).await;
    let mut runs: BTreeMap<String, _> = machines::all()
        .into_iter()
        .map(|(name, view)| (name, view.snapshot()))
        .collect();
    let sessions = match membership().await {
        Ok(status) => status
            .sessions
            .into_iter()
            .map(|s| SessionView {
                peer: s.peer,
                address: s.address,
                direction: s.direction,
            })
            .collect(),
        Err(error) => {
            tracing::debug!(%error, "inspection without sessions");
            Vec::new()
        }
    };

    let mut actors: Vec<NodeActorView> = cells
        .iter()
        .map(|cell| {
            let name = cell.get_name();
            let run = name.as_ref().and_then(|n| runs.remove(n));
            let child = name.as_ref().and_then(|n| children.get(n));
            let mut view = actor_view(name, run, child);
            view.id = cell.get_id().to_string();
            view.status = format!("{:?}", cell.get_status()).to_lowercase();
            view.parent = cell.try_get_supervisor().map(|p| label(&p));
            view
        })
        .collect();
    // Machines whose actor is not running now: between a failure and its
    // restart, or stopped for good.
    actors.extend(runs.into_iter().map(|(name, run)| {
        let child = children.get(&name);
        actor_view(Some(name), Some(run), child)
    }));
    actors.sort_by(|a, b| {
        (a.name.is_none(), &a.name, &a.id).cmp(&(b.name.is_none(), &b.name, &b.id))
    });
    NodeReport {
        node: node.to_owned(),
        sessions,
        actors,
        placements: placements(),
        backfill: candela_api::admin::local_backfill(),
    }
}

/// This process's placed Kafka consumers.
fn placements() -> Vec<PlacementView> {
    candela_actors::kafka::placement::placements()
        .into_iter()
        .map(|p| PlacementView {
            member: p.member,
            group: p.group,
            share: p.share.to_string(),
            partitions: p
                .partitions
                .into_iter()
                .map(|(topic, partition)| PartitionRef { topic, partition })
                .collect(),
        })
        .collect()
}

fn actor_view(
    name: Option<String>,
    run: Option<candela_actors::fsm::runtime::RunSnapshot>,
    child: Option<&ChildStatus>,
) -> NodeActorView {
    let (machine, state, in_error, transitions_total, rejected_total, recent) = match run {
        Some(r) => (
            Some(r.machine),
            Some(r.state),
            r.in_error,
            r.transitions_total,
            r.rejected_total,
            r.recent
                .into_iter()
                .map(|s| StepDto {
                    at_ms: s.at_ms,
                    from: s.from,
                    event: s.event,
                    to: s.to,
                })
                .collect(),
        ),
        None => (None, None, false, 0, 0, Vec::new()),
    };
    NodeActorView {
        id: String::new(),
        status: "not running".into(),
        parent: None,
        machine,
        state,
        in_error,
        restarts: child.map(|c| c.restarts),
        stalls: name
            .as_deref()
            .map_or(0, |n| candela_actors::consumer::watchdog::stalls(n).stalls),
        last_failure: child.and_then(|c| c.last_failure.clone()),
        transitions_total,
        rejected_total,
        recent,
        name,
    }
}

/// What [`cluster_view`] needs.
#[derive(Debug, Clone)]
pub struct ViewSettings {
    /// This node's name.
    pub node: String,
    /// The broker whose topics are listed; `None` for the in-process bus
    /// (no broker to ask).
    pub kafka: Option<KafkaConfig>,
    /// The longest wait for each peer's report and for the broker.
    pub timeout: Duration,
}

/// The cluster as this node sees it; bounded by `settings.timeout` (plus the
/// local report's own bounded calls).
pub async fn cluster_view(settings: &ViewSettings) -> ClusterView {
    let status = membership().await;
    let mut calls = tokio::task::JoinSet::new();
    if let Ok(status) = &status {
        for peer in &status.peers {
            if matches!(peer.state, PeerState::Connected | PeerState::Suspect) {
                let name = peer.name.clone();
                let timeout = settings.timeout;
                calls.spawn(async move {
                    let answer =
                        names::call_by_name(&inspector_name(&name), InspectMsg::Report, timeout)
                            .await
                            .map_err(|e| e.to_string());
                    (name, answer)
                });
            }
        }
    }
    let kafka = settings.kafka.clone();
    let timeout = settings.timeout;
    let topics = tokio::spawn(async move {
        match kafka {
            Some(kafka) => topics(&kafka, timeout).await,
            None => TopicsView {
                brokers: vec![],
                error: Some("the in-process bus: no broker to list topics of".into()),
                topics: vec![],
            },
        }
    });
    let local = local_report(&settings.node).await;

    let mut reports = HashMap::new();
    while let Some(done) = calls.join_next().await {
        if let Ok((peer, answer)) = done {
            reports.insert(peer, answer);
        }
    }
    let mut nodes = vec![NodeView {
        name: settings.node.clone(),
        membership: "self".into(),
        address: None,
        last_rtt_ms: None,
        reconnects: 0,
        reachable: true,
        error: None,
        sessions: local.sessions,
        actors: local.actors,
        placements: local.placements,
        backfill: local.backfill,
    }];
    let mut node_of: HashMap<u64, String> = HashMap::new();
    if let Ok(status) = &status {
        node_of = status
            .sessions
            .iter()
            .filter_map(|s| s.peer.clone().map(|p| (s.node_id, p)))
            .collect();
        for peer in &status.peers {
            let state = serde_json::to_value(peer.state)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_else(|| format!("{:?}", peer.state));
            let (reachable, error, sessions, actors, placements, backfill) = match reports
                .remove(&peer.name)
            {
                Some(Ok(report)) => (
                    true,
                    None,
                    report.sessions,
                    report.actors,
                    report.placements,
                    report.backfill,
                ),
                Some(Err(error)) => {
                    tracing::info!(peer = %peer.name, %error, "peer did not answer the inspection");
                    (false, Some(error), vec![], vec![], vec![], vec![])
                }
                None => (
                    false,
                    Some(format!("not connected ({state})")),
                    vec![],
                    vec![],
                    vec![],
                    vec![],
                ),
            };
            nodes.push(NodeView {
                name: peer.name.clone(),
                membership: state,
                address: peer.address.clone(),
                last_rtt_ms: peer.last_rtt_ms,
                reconnects: peer.reconnects,
                reachable,
                error,
                sessions,
                actors,
                placements,
                backfill,
            });
        }
    }
    let topics = topics.await.unwrap_or_else(|e| TopicsView {
        brokers: settings
            .kafka
            .as_ref()
            .map(|k| k.brokers.clone())
            .unwrap_or_default(),
        error: Some(format!("the metadata task failed: {e}")),
        topics: vec![],
    });
    ClusterView {
        node: settings.node.clone(),
        at_ms: now_ms(),
        nodes,
        groups: groups(&settings.node, &node_of),
        topics,
    }
}

/// Every non-empty process group, with the node of each holder.
fn groups(this: &str, node_of: &HashMap<u64, String>) -> Vec<GroupView> {
    let mut out: Vec<GroupView> = pg::which_scopes_and_groups()
        .into_iter()
        .map(|key| {
            let (scope, group) = (key.get_scope(), key.get_group());
            let mut holders: Vec<GroupHolder> = pg::get_scoped_members(&scope, &group)
                .into_iter()
                .map(|cell| {
                    let id = cell.get_id();
                    GroupHolder {
                        node: if id.is_local() {
                            Some(this.to_owned())
                        } else {
                            node_of.get(&id.node()).cloned()
                        },
                        pid: id.pid(),
                        name: cell.get_name(),
                    }
                })
                .collect();
            holders.sort_by(|a, b| (&a.node, a.pid).cmp(&(&b.node, b.pid)));
            GroupView {
                scope,
                group,
                holders,
            }
        })
        .collect();
    out.sort_by(|a, b| (&a.scope, &a.group).cmp(&(&b.scope, &b.group)));
    out
}

async fn topics(kafka: &KafkaConfig, timeout: Duration) -> TopicsView {
    let (error, topics) = match list_topics(kafka, timeout).await {
        Ok(list) => (
            None,
            list.into_iter()
                .map(|t| TopicView {
                    internal: t.name.starts_with("__"),
                    name: t.name,
                    partitions: t.partitions as u32,
                    error: t.error,
                })
                .collect(),
        ),
        Err(error) => (Some(error.to_string()), vec![]),
    };
    TopicsView {
        brokers: kafka.brokers.clone(),
        error,
        topics,
    }
}

/// The admin endpoint's hook: builds the view on every request.
pub fn admin_view(settings: ViewSettings) -> ClusterStatusFn {
    std::sync::Arc::new(move || -> BoxFuture<ClusterView> {
        let settings = settings.clone();
        Box::pin(async move { cluster_view(&settings).await })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candela_actors::supervisor::{ChildSpec, RestartPolicy, Supervisor, SupervisorArgs};

    /// An actor that does nothing.
    #[derive(Default)]
    struct Idle;

    enum IdleMsg {}
    impl ractor::Message for IdleMsg {}

    impl Actor for Idle {
        type Msg = IdleMsg;
        type State = ();
        type Arguments = ();

        async fn pre_start(&self, _: ActorRef<IdleMsg>, _: ()) -> Result<(), ActorProcessingErr> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn the_report_lists_supervised_actors_with_parent_and_restarts() {
        let (sup, _) = Actor::spawn(
            Some("test.inspect.sup".into()),
            Supervisor,
            SupervisorArgs {
                children: vec![ChildSpec::of::<Idle>("test.inspect.child", (), |_, _| {})],
                policy: RestartPolicy {
                    backoff_min: Duration::from_millis(1),
                    backoff_max: Duration::from_millis(1),
                    ..RestartPolicy::default()
                },
            },
        )
        .await
        .unwrap();
        let child = ractor::registry::where_is("test.inspect.child").unwrap();
        child.kill();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let actor = loop {
            let report = local_report("n").await;
            assert_eq!(report.node, "n");
            assert!(report.sessions.is_empty(), "no cluster layer here");
            assert!(report
                .actors
                .iter()
                .any(|a| a.name.as_deref() == Some("test.inspect.sup") && a.status == "running"));
            let found = report
                .actors
                .into_iter()
                .find(|a| a.name.as_deref() == Some("test.inspect.child"));
            if let Some(a) = found.filter(|a| a.restarts == Some(1) && a.status == "running") {
                break a;
            }
            assert!(std::time::Instant::now() < deadline, "no restart seen");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert_eq!(actor.parent.as_deref(), Some("test.inspect.sup"));
        assert!(actor.last_failure.is_some(), "{actor:?}");
        assert!(actor.machine.is_none());
        assert!(!actor.id.is_empty());
        sup.stop(None);
    }
}
