//! The probe: a tiny actor that answers "who are you?", for checking the name
//! service end to end (`POST /cluster/probes/{name}` on the status endpoint
//! registers one; `GET` calls it by name from any node).
//!
//! It is the smallest example of a cluster-named actor: a
//! `RactorClusterMessage` enum with serde payloads, and a `pre_start` that
//! registers the name, so a restarted probe is found again by the same name.

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use ractor_cluster::RactorClusterMessage;
use serde::{Deserialize, Serialize};

use super::names;

/// The role group every probe joins.
pub const PROBE_ROLE: &str = "probes";

/// What a probe says of itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeReply {
    /// The node it runs on.
    pub node: String,
    /// The name it holds.
    pub name: String,
    /// Its actor id, as its own node prints it.
    pub actor: String,
}

/// Messages to a probe (they cross nodes).
#[derive(RactorClusterMessage)]
pub enum ProbeMsg {
    /// Who are you?
    #[rpc]
    Whoami(RpcReplyPort<ProbeReply>),
}

/// The probe actor; its arguments are (this node's name, the cluster name to hold).
pub struct Probe;

impl Actor for Probe {
    type Msg = ProbeMsg;
    type State = ProbeReply;
    type Arguments = (String, String);

    async fn pre_start(
        &self,
        myself: ActorRef<ProbeMsg>,
        (node, name): (String, String),
    ) -> Result<ProbeReply, ActorProcessingErr> {
        names::register(&myself.get_cell(), PROBE_ROLE, &name)?;
        Ok(ProbeReply {
            node,
            name,
            actor: myself.get_id().to_string(),
        })
    }

    async fn handle(
        &self,
        _: ActorRef<ProbeMsg>,
        msg: ProbeMsg,
        me: &mut ProbeReply,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            ProbeMsg::Whoami(reply) => {
                let _ = reply.send(me.clone());
            }
        }
        Ok(())
    }
}
