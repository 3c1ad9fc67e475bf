//! The membership snapshot: what `MembershipMsg::Status` answers and the
//! status endpoint serves as JSON. Plain data, no behaviour.

use serde::{Deserialize, Serialize};

use crate::cluster::peer::PeerState;

/// What membership knows, for the status endpoint and for tests.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterStatus {
    /// This node.
    pub node: String,
    /// Every peer: the configured ones, and any other that dialled us.
    pub peers: Vec<PeerStatus>,
    /// The node server's authenticated sessions.
    pub sessions: Vec<SessionStatus>,
    /// Every cluster-wide name visible from here.
    pub names: Vec<NameStatus>,
}

impl ClusterStatus {
    /// The peers in `state`, by name.
    pub fn peers_in(&self, state: PeerState) -> Vec<&str> {
        self.peers
            .iter()
            .filter(|p| p.state == state)
            .map(|p| p.name.as_str())
            .collect()
    }
}

/// One peer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PeerStatus {
    /// Its node name.
    pub name: String,
    /// Where it is dialled (configured peers only).
    pub address: Option<String>,
    /// Whether it is in `cluster.peers` (others are not re-dialled).
    pub configured: bool,
    /// Where it stands.
    pub state: PeerState,
    /// For how long, in milliseconds.
    pub for_ms: u64,
    /// Heartbeats missed in a row.
    pub misses: u32,
    /// The last answered heartbeat's round trip, in milliseconds.
    pub last_rtt_ms: Option<f64>,
    /// Sessions after the first one.
    pub reconnects: u32,
    /// Failed dials since the last ready session.
    pub failed_dials: u32,
}

/// One session of the node server.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionStatus {
    /// The node server's id for the session (and for the peer's actors).
    pub node_id: u64,
    /// The peer's node name, once it said it.
    pub peer: Option<String>,
    /// The peer's address.
    pub address: String,
    /// `inbound` (the peer dialled) or `outbound`.
    pub direction: String,
}

/// One cluster-wide name.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NameStatus {
    /// The name.
    pub name: String,
    /// Its holders (more than one is a collision).
    pub holders: Vec<Holder>,
}

/// An actor holding a name.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Holder {
    /// The node it runs on, when known.
    pub node: Option<String>,
    /// Its pid on that node.
    pub pid: u64,
    /// The actor id as this node sees it (`<session>.<pid>`, `0.<pid>` when
    /// local); it changes with every session, so never keep it.
    pub actor: String,
}
