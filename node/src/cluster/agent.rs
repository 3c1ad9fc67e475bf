//! The per-node agent: ractor has no remote spawn, so each node runs an agent,
//! named `agent/<node>` cluster-wide, that starts actors on its own node on
//! request from another.
//!
//! Today it starts Consumers for dynamic topics: the Coordinator, when no idle
//! one exists, asks the agent of a node with the `consumer` role (the role
//! group `agents/consumer`; agents of other nodes only join `agents` and
//! refuse). The agent adds the consumer to its node's dynamic supervisor
//! (`candela.dynamic/<node>`) under a fresh name `consumer-dynamic/<node>/<n>`,
//! registered cluster-wide, and answers with that name. The consumer starts
//! Idle; the Coordinator then tells it its topic by name.
//!
//! A consumer restarted by that supervisor is re-told its topic by the child
//! spec the agent gave the supervisor (see `consumer::dynamic`): the spec
//! holds the consumer's assignment, which outlives each instance.
//!
//! On a consumer node the agent also announces the node's running fixed
//! consumers for partition placement (see `super::placement`): it follows
//! [`RunningWorkers`] and joins or leaves `consumer-worker/<group>/<k>` as
//! each consumer's stream opens or closes.

use std::sync::Arc;
use std::time::Duration;

use candela_actors::call::{call, call_result, name_of, Failed};
use candela_actors::coordinator::directory::{CONSUMER_AGENTS, DYNAMIC_CONSUMERS};
use candela_actors::coordinator::{AgentError, AgentMsg};
use candela_actors::supervisor::{ChildSpec, SupervisorError, SupervisorMsg};
use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef};

use super::names;
use super::placement::{worker_role, RunningWorkers};

/// The role group every agent joins.
pub const AGENT_ROLE: &str = "agents";

/// Makes the child spec of a dynamic consumer with the given name.
pub type ConsumerFactory = Arc<dyn Fn(String) -> ChildSpec + Send + Sync>;

/// The agent's arguments.
#[derive(Clone)]
pub struct AgentArgs {
    /// This node's name.
    pub node: String,
    /// The supervisor dynamic consumers are added to.
    pub supervisor: ActorRef<SupervisorMsg>,
    /// Builds a consumer's spec; `None` on a node without the `consumer` role.
    pub consumers: Option<ConsumerFactory>,
    /// This node's running fixed consumers, announced with their group to
    /// the other nodes for partition placement ([`super::placement`]); `None`
    /// without the `consumer` role.
    pub fixed_workers: Option<RunningWorkers>,
    /// The fixed consumers' group (`consumer.group`).
    pub fixed_group: String,
    /// Longest wait for the supervisor to start a consumer.
    pub start_timeout: Duration,
    /// The most dynamic consumers this node runs.
    pub max_consumers: usize,
}

/// The child spec of the agent of `args.node`: named `agent/<node>`, in the
/// role group `agents`, and in `agents/consumer` when it can start consumers.
pub fn child_spec(args: AgentArgs) -> ChildSpec {
    let name = candela_actors::coordinator::directory::agent_name(&args.node);
    let extra: &'static [&'static str] = if args.consumers.is_some() {
        &[CONSUMER_AGENTS]
    } else {
        &[]
    };
    let spec = ChildSpec {
        name: name.clone(),
        start: Arc::new(move |sup, _| {
            let (name, args) = (name.clone(), args.clone());
            Box::pin(async move {
                Actor::spawn_linked(Some(name), Agent, args, sup)
                    .await
                    .map(|(a, _)| a.get_cell())
            })
        }),
    };
    names::named_child(spec, AGENT_ROLE, extra)
}

/// The agent actor.
pub struct Agent;

/// The agent's state.
pub struct AgentState {
    args: AgentArgs,
    next: u32,
    /// Follows the running fixed consumers; stopped with the agent.
    _announcer: Option<Announcer>,
}

/// The task that announces the running fixed consumers, aborted when the
/// agent's state goes (whether the agent stops or fails).
struct Announcer(tokio::task::JoinHandle<()>);

impl Drop for Announcer {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Keeps the agent's memberships of `consumer-worker/<group>/<k>` equal to
/// the running workers.
async fn announce(agent: ActorCell, node: String, group: String, running: RunningWorkers) {
    let mut rx = running.watch();
    let mut announced = std::collections::BTreeSet::new();
    loop {
        let now = rx.borrow_and_update().clone();
        for k in now.difference(&announced) {
            if let Err(err) = names::join_role(&agent, &worker_role(&group, *k)) {
                tracing::error!(%node, worker = k, error = %err, "cannot announce a running consumer");
            }
        }
        for k in announced.difference(&now) {
            names::leave_role(&agent, &worker_role(&group, *k));
        }
        if now != announced {
            tracing::info!(%node, %group, running = ?now, "announced the running fixed consumers");
        }
        announced = now;
        if rx.changed().await.is_err() {
            break;
        }
    }
}

/// What the cluster names of `node`'s dynamic consumers start with.
fn consumer_prefix(node: &str) -> String {
    format!("consumer-dynamic/{node}/")
}

/// The cluster name of dynamic consumer `n` of `node`.
pub fn consumer_name(node: &str, n: u32) -> String {
    format!("consumer-dynamic/{node}/{n}")
}

impl Actor for Agent {
    type Msg = AgentMsg;
    type State = AgentState;
    type Arguments = AgentArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<AgentMsg>,
        args: AgentArgs,
    ) -> Result<AgentState, ActorProcessingErr> {
        let announcer = args.fixed_workers.clone().map(|running| {
            Announcer(tokio::spawn(announce(
                myself.get_cell(),
                args.node.clone(),
                args.fixed_group.clone(),
                running,
            )))
        });
        tracing::info!(
            node = %args.node,
            consumers = args.consumers.is_some(),
            "agent started"
        );
        Ok(AgentState {
            args,
            next: 0,
            _announcer: announcer,
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<AgentMsg>,
        message: AgentMsg,
        state: &mut AgentState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            AgentMsg::StartDynamicConsumer(reply) => {
                let result = start_consumer(state).await;
                match &result {
                    Ok(name) => {
                        tracing::info!(node = %state.args.node, consumer = %name, "started a dynamic consumer")
                    }
                    Err(err) => {
                        tracing::warn!(node = %state.args.node, error = %err, "could not start a dynamic consumer")
                    }
                }
                let _ = reply.send(result);
            }
            AgentMsg::StopDynamicConsumer(name, reply) => {
                let result = stop_consumer(state, &name).await;
                tracing::info!(node = %state.args.node, consumer = %name, result = ?result, "stop a dynamic consumer");
                let _ = reply.send(result);
            }
        }
        Ok(())
    }
}

/// Stops (and forgets) this node's dynamic consumer `name`.
async fn stop_consumer(state: &mut AgentState, name: &str) -> Result<bool, AgentError> {
    let node = &state.args.node;
    let mine = name
        .strip_prefix(&consumer_prefix(node))
        .is_some_and(|n| n.parse::<u32>().is_ok());
    if !mine {
        return Err(AgentError::NotMine {
            node: node.clone(),
            name: name.to_owned(),
        });
    }
    let supervisor = state.args.supervisor.get_cell();
    call(
        &supervisor,
        &name_of(&supervisor),
        |reply| SupervisorMsg::Remove(name.to_owned(), reply),
        state.args.start_timeout,
    )
    .await
    .map_err(AgentError::Supervisor)
}

/// Adds a consumer under the first free name; answers with it.
async fn start_consumer(state: &mut AgentState) -> Result<String, AgentError> {
    let node = &state.args.node;
    let Some(factory) = state.args.consumers.clone() else {
        return Err(AgentError::NotAConsumerNode { node: node.clone() });
    };
    let supervisor = state.args.supervisor.get_cell();
    let running = call(
        &supervisor,
        &name_of(&supervisor),
        SupervisorMsg::Status,
        state.args.start_timeout,
    )
    .await
    .map_err(AgentError::Supervisor)?
    .len();
    if running >= state.args.max_consumers {
        return Err(AgentError::Full {
            node: node.clone(),
            max: state.args.max_consumers,
        });
    }
    // A restarted agent counts from 0 again: skip the names already in use.
    for _ in 0..1_000 {
        let n = state.next;
        state.next += 1;
        let name = consumer_name(node, n);
        if ractor::registry::where_is(name.clone()).is_some() || !names::holders(&name).is_empty() {
            continue;
        }
        let spec = names::named_child(factory(name.clone()), DYNAMIC_CONSUMERS, &[]);
        let added = call_result(
            &supervisor,
            &name_of(&supervisor),
            |reply| SupervisorMsg::Add(spec, reply),
            state.args.start_timeout,
        )
        .await;
        match added {
            Ok(()) => return Ok(name),
            // Still supervised (stopped and being restarted): the next name.
            Err(Failed::Refused {
                error: SupervisorError::AlreadySupervised { .. },
                ..
            }) => continue,
            Err(err) => return Err(AgentError::Supervisor(err.flatten())),
        }
    }
    Err(AgentError::NoFreeName { node: node.clone() })
}
