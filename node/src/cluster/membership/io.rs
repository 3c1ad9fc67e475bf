//! Membership's contact with the outside: the node server's session events
//! (forwarded as messages), its session list, dials and heartbeat calls. Each
//! function either casts to the actor or is awaited in a task of its own, so
//! the actor's mailbox never waits on the network.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use candela_actors::call::{call, CallError};
use ractor::{ActorProcessingErr, ActorRef};
use ractor_cluster::node::NodeServerSessionInformation;
use ractor_cluster::{NodeEventSubscription, NodeServerMessage};
use serde::{Deserialize, Serialize};

use super::{MembershipMsg, SessionEvent};
use crate::cluster::heartbeat::{responder_name, HeartbeatMsg, Ping};
use crate::cluster::names;
use crate::cluster::NODE_SERVER_NAME;

/// Longest wait for the node server's session list.
const SERVER_CALL: Duration = Duration::from_secs(2);

/// Forwards the node server's session events to the membership actor.
pub(super) struct Forward(pub(super) ActorRef<MembershipMsg>);

impl Forward {
    fn send(&self, event: SessionEvent) {
        // The actor may be restarting; it reads the sessions afresh when it starts.
        let _ = self.0.cast(MembershipMsg::Session(event));
    }
}

impl NodeEventSubscription for Forward {
    fn node_session_opened(&self, ses: NodeServerSessionInformation) {
        self.send(SessionEvent::Opened(ses));
    }
    fn node_session_disconnected(&self, ses: NodeServerSessionInformation) {
        self.send(SessionEvent::Disconnected(ses));
    }
    fn node_session_authenticated(&self, ses: NodeServerSessionInformation) {
        self.send(SessionEvent::Authenticated(ses));
    }
    fn node_session_ready(&self, ses: NodeServerSessionInformation) {
        self.send(SessionEvent::Ready(ses));
    }
}

/// The node name in a session's peer name (`name@host`).
pub fn peer_node(ses: &NodeServerSessionInformation) -> Option<String> {
    ses.peer_name.as_ref().map(|n| {
        n.name
            .split_once('@')
            .map_or(n.name.as_str(), |(name, _)| name)
            .to_owned()
    })
}

pub(super) fn direction(ses: &NodeServerSessionInformation) -> &'static str {
    if ses.is_server {
        "inbound"
    } else {
        "outbound"
    }
}

/// The node server's authenticated sessions.
pub(super) async fn sessions(
    server: &ActorRef<NodeServerMessage>,
) -> Result<Vec<NodeServerSessionInformation>, ActorProcessingErr> {
    let map = call(
        &server.get_cell(),
        NODE_SERVER_NAME,
        NodeServerMessage::GetSessions,
        SERVER_CALL,
    )
    .await?;
    let mut list: Vec<_> = map.into_values().collect();
    list.sort_by_key(|s| s.node_id);
    Ok(list)
}

/// Why a dial did not open a connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum DialError {
    /// The address could not be resolved.
    #[error("cannot resolve `{address}`: {reason}")]
    Resolve {
        /// The configured address.
        address: String,
        /// Why.
        reason: String,
    },
    /// The address resolves to nothing.
    #[error("`{address}` resolves to nothing")]
    Nowhere {
        /// The configured address.
        address: String,
    },
    /// The connection could not be opened or handed to the node server.
    #[error("connecting to {addr}: {reason}")]
    Connect {
        /// The address dialled.
        addr: SocketAddr,
        /// Why.
        reason: String,
    },
}

/// The longest a dial (TCP connection and TLS handshake) may take.
pub(super) const DIAL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Opens a TCP connection to `address` (TLS when `tls` is given: the
/// peer's certificate checked against the cluster's CA) and hands it to the
/// node server; answers the address actually dialled.
pub(super) async fn dial(
    server: &ActorRef<NodeServerMessage>,
    address: &str,
    tls: Option<&crate::cluster::tls::Tls>,
) -> Result<SocketAddr, DialError> {
    let addr = tokio::net::lookup_host(address)
        .await
        .map_err(|e| DialError::Resolve {
            address: address.to_owned(),
            reason: e.to_string(),
        })?
        .next()
        .ok_or_else(|| DialError::Nowhere {
            address: address.to_owned(),
        })?;
    let connect = async {
        match tls {
            Some(tls) => {
                ractor_cluster::client_connect_enc(
                    server,
                    addr,
                    tls.connector.clone(),
                    tls.server_name.clone(),
                )
                .await
            }
            None => ractor_cluster::client_connect(server, addr).await,
        }
    };
    // The connection and the TLS handshake, within a deadline: a peer that
    // accepts and says nothing must not hold a dial (and its socket) forever.
    let connected = tokio::time::timeout(DIAL_TIMEOUT, connect)
        .await
        .map_err(|_| DialError::Connect {
            addr,
            reason: format!(
                "no connection (and TLS handshake) within {} s",
                DIAL_TIMEOUT.as_secs()
            ),
        })?;
    connected.map_err(|e| DialError::Connect {
        addr,
        reason: match e {
            ractor_cluster::ClientConnectErr::Socket(e) => e.to_string(),
            ractor_cluster::ClientConnectErr::Encryption(e) => format!("TLS: {e}"),
            other => other.to_string(),
        },
    })?;
    Ok(addr)
}

/// One heartbeat to `peer`'s responder: the round trip, or why it failed
/// (at once when the responder's node session closes).
pub(super) async fn heartbeat(
    peer: &str,
    from: String,
    seq: u64,
    timeout: Duration,
) -> Result<Duration, CallError> {
    let name = responder_name(peer);
    let responder = names::resolve_cell(&name)?;
    let start = Instant::now();
    call(
        &responder,
        &name,
        |reply| HeartbeatMsg::Ping(Ping { from, seq }, reply),
        timeout,
    )
    .await?;
    Ok(start.elapsed())
}
