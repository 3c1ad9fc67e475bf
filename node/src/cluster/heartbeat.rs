//! The heartbeat responder: answers the membership actors of other nodes.
//!
//! One per node, registered under the cluster name `membership/<node>` (role
//! `membership`), so a peer's membership actor finds it through the name
//! service and sends it a timed [`HeartbeatMsg::Ping`]. It is separate from the
//! membership actor because that one's messages (session events, status
//! snapshots) cannot cross nodes, and only actors whose every message can are
//! announced to peers. It must stay trivial: a heartbeat measures whether the
//! node's runtime answers, not whether its work is done.

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use ractor_cluster::RactorClusterMessage;
use serde::{Deserialize, Serialize};

use super::names;

/// The role group of heartbeat responders.
pub const MEMBERSHIP_ROLE: &str = "membership";

/// The cluster name of `node`'s responder.
pub fn responder_name(node: &str) -> String {
    format!("membership/{node}")
}

/// A heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ping {
    /// The asking node.
    pub from: String,
    /// The heartbeat's number.
    pub seq: u64,
}

/// The answer to a heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pong {
    /// The answering node.
    pub node: String,
    /// The heartbeat's number.
    pub seq: u64,
}

/// Messages to a responder (they cross nodes).
#[derive(RactorClusterMessage)]
pub enum HeartbeatMsg {
    /// Are you there?
    #[rpc]
    Ping(Ping, RpcReplyPort<Pong>),
}

/// The responder; its argument is this node's name.
pub struct HeartbeatResponder;

impl Actor for HeartbeatResponder {
    type Msg = HeartbeatMsg;
    type State = String;
    type Arguments = String;

    async fn pre_start(
        &self,
        myself: ActorRef<HeartbeatMsg>,
        node: String,
    ) -> Result<String, ActorProcessingErr> {
        names::register(&myself.get_cell(), MEMBERSHIP_ROLE, &responder_name(&node))?;
        Ok(node)
    }

    async fn handle(
        &self,
        _: ActorRef<HeartbeatMsg>,
        msg: HeartbeatMsg,
        node: &mut String,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            HeartbeatMsg::Ping(ping, reply) => {
                tracing::trace!(from = %ping.from, seq = ping.seq, "heartbeat");
                let _ = reply.send(Pong {
                    node: node.clone(),
                    seq: ping.seq,
                });
            }
        }
        Ok(())
    }
}
