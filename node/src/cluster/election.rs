//! One active coordinator among the nodes with the `coordinator` role.
//!
//! Every such node runs a Coordinator (cluster name `coordinator/<node>`,
//! role group `coordinators`); only one holds the cluster name
//! `coordinator`, which every requester resolves. The rule is deterministic
//! over the current membership: **the lowest node name among the reachable
//! nodes whose coordinator runs**. Each node's election (`election/<node>`)
//! watches the process groups (a coordinator starting or stopping, a node
//! connecting or going away: events, not polling) and gives the name to its
//! own coordinator when the rule picks it, or takes the name back when it
//! does not. When the active coordinator's node dies, its memberships end
//! with its session (at once after a crash, after the heartbeats for a hung
//! node), and the next node by name takes over at its next event.
//!
//! While two nodes see different memberships (a partition), both may hold
//! the name: [`names::resolve_cell`] then picks, among the holders, the one
//! the same rule picks, and both may act. That is safe: the dynamic
//! instruments are a durable registry with the instrument as key, topic
//! creation is idempotent, a consumer already on a topic is reused, and
//! history published twice changes no bar.
//!
//! What must never happen: a node holding the name for a coordinator that
//! is not running, or two nodes holding it while they see the same
//! membership.

use std::time::Duration;

use candela_actors::coordinator::directory::{COORDINATORS, COORDINATOR_NAME};
use ractor::{pg, Actor, ActorProcessingErr, ActorRef, SupervisionEvent};

use super::names::{self, NAMES_SCOPE, ROLES_SCOPE};

/// The prefix of coordinators' cluster names.
const PREFIX: &str = "coordinator/";

/// How often the election looks again even without an event.
const SAFETY_NET: Duration = Duration::from_secs(5);

/// The node of a coordinator's cluster name.
pub fn node_of(name: &str) -> Option<&str> {
    name.strip_prefix(PREFIX)
}

/// Which node's coordinator is active among `candidates` (node names): the
/// lowest.
pub fn winner<'a>(candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates.into_iter().min()
}

/// The election actor of one node.
pub struct Election;

/// Messages to the election (local).
pub enum ElectionMsg {
    /// Look at the membership and act.
    Evaluate,
}

impl ractor::Message for ElectionMsg {}

/// The election's state: its node, and what it last said.
pub struct ElectionState {
    node: String,
    active: bool,
    /// The active node it last logged.
    said: Option<String>,
}

impl Actor for Election {
    type Msg = ElectionMsg;
    type State = ElectionState;
    type Arguments = String;

    async fn pre_start(
        &self,
        myself: ActorRef<ElectionMsg>,
        node: String,
    ) -> Result<ElectionState, ActorProcessingErr> {
        pg::monitor_scope(ROLES_SCOPE.to_owned(), myself.get_cell());
        myself.send_interval(SAFETY_NET, || ElectionMsg::Evaluate);
        myself.cast(ElectionMsg::Evaluate)?;
        Ok(ElectionState {
            node,
            active: false,
            said: None,
        })
    }

    async fn post_stop(
        &self,
        myself: ActorRef<ElectionMsg>,
        state: &mut ElectionState,
    ) -> Result<(), ActorProcessingErr> {
        pg::demonitor_scope(ROLES_SCOPE.to_owned(), myself.get_id());
        if let Some(mine) = own_coordinator(&state.node) {
            pg::leave_scoped(
                NAMES_SCOPE.to_owned(),
                COORDINATOR_NAME.to_owned(),
                vec![mine],
            );
        }
        Ok(())
    }

    async fn handle(
        &self,
        _myself: ActorRef<ElectionMsg>,
        message: ElectionMsg,
        state: &mut ElectionState,
    ) -> Result<(), ActorProcessingErr> {
        let ElectionMsg::Evaluate = message;
        evaluate(state);
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        _myself: ActorRef<ElectionMsg>,
        event: SupervisionEvent,
        state: &mut ElectionState,
    ) -> Result<(), ActorProcessingErr> {
        if let SupervisionEvent::ProcessGroupChanged(_) = event {
            evaluate(state);
        }
        Ok(())
    }
}

/// This node's coordinator, if it runs.
fn own_coordinator(node: &str) -> Option<ractor::ActorCell> {
    ractor::registry::where_is(format!("{PREFIX}{node}"))
}

/// Gives the name to this node's coordinator, or takes it back, as the rule
/// says.
fn evaluate(state: &mut ElectionState) {
    let candidates: Vec<String> = names::role_members(COORDINATORS)
        .iter()
        .filter_map(|c| c.get_name())
        .filter_map(|n| node_of(&n).map(str::to_owned))
        .collect();
    let chosen = winner(candidates.iter().map(String::as_str)).map(str::to_owned);
    let mine = own_coordinator(&state.node);
    let holders = names::holders(COORDINATOR_NAME);
    match mine {
        Some(cell) if chosen.as_deref() == Some(state.node.as_str()) => {
            if !holders.contains(&cell.get_id()) {
                pg::join_scoped(
                    NAMES_SCOPE.to_owned(),
                    COORDINATOR_NAME.to_owned(),
                    vec![cell],
                );
            }
            if state.said.as_deref() != Some(state.node.as_str()) {
                tracing::info!(node = %state.node, ?candidates, "this node's coordinator is the active one");
                state.said = Some(state.node.clone());
            }
            state.active = true;
        }
        Some(cell) => {
            if holders.contains(&cell.get_id()) {
                pg::leave_scoped(
                    NAMES_SCOPE.to_owned(),
                    COORDINATOR_NAME.to_owned(),
                    vec![cell],
                );
            }
            if chosen.is_some() && state.said != chosen {
                tracing::info!(node = %state.node, active = ?chosen, "this node's coordinator is a standby");
                state.said = chosen;
            }
            state.active = false;
        }
        None => state.active = false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lowest_node_name_wins() {
        assert_eq!(winner(["node-c", "node-a", "node-b"]), Some("node-a"));
        assert_eq!(winner(Vec::<&str>::new()), None);
        assert_eq!(node_of("coordinator/node-b"), Some("node-b"));
        assert_eq!(node_of("producer/node-b"), None);
    }
}
