//! The cluster layer: nodes that find each other, notice failures, and share
//! a name service.
//!
//! ractor_cluster gives sessions between nodes, remote stand-ins and
//! synchronised process groups; it has no cluster-wide names, no reconnect
//! and no detection of a hung peer. This module adds them:
//!
//! * [`peer`]: the pure per-peer machine (dials, heartbeats, misses, back-off);
//! * [`membership`]: the actor that runs one machine per peer;
//! * [`heartbeat`]: the actor that answers other nodes' heartbeats;
//! * [`inspect`]: the per-node inspector and the cluster-wide admin view
//!   (every actor on every node, groups, topics);
//! * [`names`]: cluster-wide names on process groups (`register`, `resolve`,
//!   `call_by_name`);
//! * [`probe`]: a tiny named actor for checking names end to end;
//! * [`agent`]: the per-node agent that starts actors (dynamic consumers) on
//!   request from other nodes;
//! * [`placement`]: each fixed consumer's share of the tick topic's
//!   partitions, from the live consumer nodes;
//! * [`status`]: the optional HTTP status endpoint.
//!
//! The tree [`start`] builds on each node:
//!
//! ```text
//! NodeServer "candela.node_server"       (ractor_cluster; sessions are its children)
//! Supervisor "candela.cluster"
//!  ├── HeartbeatResponder "candela.heartbeat"    cluster name membership/<node>
//!  ├── Membership         "candela.membership"   dials, heartbeats, reconnects
//!  └── Inspector          "candela.inspect"      cluster name inspect/<node>
//! ```
//!
//! Every node must run the same ractor version (`=0.16.5`): the wire format
//! matches message variants by name and checks no protocol version. Nodes
//! connect only to the peers they list (no transitive connections), so list
//! every other node on every node: names and heartbeats need a full mesh.

pub mod acceptor;
pub mod agent;
pub mod election;
pub mod heartbeat;
pub mod inspect;
pub mod membership;
pub mod names;
pub mod peer;
pub mod placement;
pub mod probe;
pub mod status;
pub mod tls;

use std::sync::Arc;
use std::time::Duration;

use candela_actors::call::{call, CallError};
use candela_actors::supervisor::{
    ChildSpec, RestartPolicy, Supervisor, SupervisorArgs, SupervisorMsg,
};
use ractor::concurrency::JoinHandle;
use ractor::{Actor, ActorRef};
use ractor_cluster::node::NodeConnectionMode;
use ractor_cluster::{NodeServer, NodeServerMessage};

use crate::config::Config;
use heartbeat::HeartbeatResponder;
use inspect::{Inspector, INSPECTOR_NAME};
use membership::{ClusterStatus, Membership, MembershipArgs, MembershipMsg, MEMBERSHIP_NAME};
use peer::Timing;

/// The node server's registry name.
pub const NODE_SERVER_NAME: &str = "candela.node_server";
/// The cluster supervisor's registry name.
pub const SUPERVISOR_NAME: &str = "candela.cluster";
/// The heartbeat responder's registry name.
pub const HEARTBEAT_NAME: &str = "candela.heartbeat";

/// Why the cluster layer could not start or answer.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The node server did not start (typically: the address is in use).
    #[error("cannot start the cluster server on {addr}: {reason}")]
    Listen {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        reason: String,
    },
    /// The membership actors did not start.
    #[error("cannot start cluster membership: {0}")]
    Start(String),
    /// The TLS files could not be used.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// The transport settings are refused (plain TCP off loopback, TLS
    /// without its files).
    #[error("{0}")]
    Transport(String),
    /// TLS is required but not configured.
    #[error("cluster.transport is \"tls\" but [cluster.tls] is missing (ca, cert, key; `candela certs` makes development ones)")]
    NoTls,
    /// The cookie is too short to be a secret.
    #[error("the cluster cookie has {0} bytes; it must have at least {min}", min = crate::config::MIN_COOKIE_BYTES)]
    WeakCookie(usize),
    /// The membership actor is not running (it may be restarting).
    #[error("cluster membership is not running")]
    NotRunning,
    /// The membership actor did not answer.
    #[error("cluster membership: {0}")]
    Unanswered(CallError),
}

/// A running cluster layer.
pub struct Cluster {
    node: String,
    server: ActorRef<NodeServerMessage>,
    server_handle: JoinHandle<()>,
    supervisor: ActorRef<SupervisorMsg>,
    supervisor_handle: JoinHandle<()>,
    /// The TLS listener's task (aborted with the cluster).
    acceptor: Option<JoinHandle<()>>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(task) = &self.acceptor {
            task.abort();
        }
    }
}

/// Starts the node server on `cluster.listen` with `cookie`, then the
/// heartbeat responder and membership under a supervisor.
pub async fn start(config: &Config, cookie: String) -> Result<Cluster, ClusterError> {
    if cookie.trim().len() < crate::config::MIN_COOKIE_BYTES {
        return Err(ClusterError::WeakCookie(cookie.trim().len()));
    }
    let node = config.node.name.clone();
    let c = &config.cluster;
    let listen = c.listen;
    c.check_transport()
        .map_err(|e| ClusterError::Transport(e.to_string()))?;
    let tls = match c.transport {
        crate::config::Transport::Plain => None,
        crate::config::Transport::Tls => {
            Some(tls::load(c.tls.as_ref().ok_or(ClusterError::NoTls)?)?)
        }
    };
    // The node server's own listener (which would run TLS handshakes one at
    // a time, without a deadline, and binds its port itself) sits on an
    // unused loopback port, and `acceptor` serves `listen`.
    let own = std::net::SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, 0));
    let server = NodeServer::new(
        own.port(),
        cookie,
        node.clone(),
        listen.ip().to_string(),
        tls.as_ref()
            .map(|t| ractor_cluster::IncomingEncryptionMode::Tls(t.acceptor.clone())),
        Some(NodeConnectionMode::Isolated),
    )
    .with_listen_addr(own.ip());
    let (server, server_handle) = Actor::spawn(Some(NODE_SERVER_NAME.into()), server, ())
        .await
        .map_err(|e| ClusterError::Listen {
            addr: listen,
            reason: e.to_string(),
        })?;
    let acceptor = match acceptor::start(
        listen,
        tls.as_ref().map(|t| t.acceptor.clone()),
        server.clone(),
        acceptor::HANDSHAKE_TIMEOUT,
    )
    .await
    {
        Ok(task) => Some(task),
        Err(e) => {
            server.stop(None);
            return Err(ClusterError::Listen {
                addr: listen,
                reason: e.to_string(),
            });
        }
    };
    tracing::info!(node = %node, %listen, transport = if tls.is_some() { "tls" } else { "plain" }, "cluster server listening");

    let timing = Timing::new(
        Duration::from_millis(c.heartbeat_ms),
        c.heartbeat_misses,
        Duration::from_millis(c.reconnect_min_ms),
        Duration::from_millis(c.reconnect_max_ms),
    );
    let args = MembershipArgs {
        node: node.clone(),
        peers: c.peers(),
        timing,
        server: server.clone(),
        tls,
    };
    let responder_node = node.clone();
    let inspector_node = node.clone();
    let children = vec![
        ChildSpec {
            name: HEARTBEAT_NAME.into(),
            start: Arc::new(move |sup, _| {
                let node = responder_node.clone();
                Box::pin(async move {
                    Actor::spawn_linked(Some(HEARTBEAT_NAME.into()), HeartbeatResponder, node, sup)
                        .await
                        .map(|(a, _)| a.get_cell())
                })
            }),
        },
        ChildSpec {
            name: MEMBERSHIP_NAME.into(),
            start: Arc::new(move |sup, _| {
                let args = args.clone();
                Box::pin(async move {
                    Actor::spawn_linked(Some(MEMBERSHIP_NAME.into()), Membership, args, sup)
                        .await
                        .map(|(a, _)| a.get_cell())
                })
            }),
        },
        ChildSpec {
            name: INSPECTOR_NAME.into(),
            start: Arc::new(move |sup, _| {
                let node = inspector_node.clone();
                Box::pin(async move {
                    Actor::spawn_linked(Some(INSPECTOR_NAME.into()), Inspector, node, sup)
                        .await
                        .map(|(a, _)| a.get_cell())
                })
            }),
        },
    ];
    let spawned = Actor::spawn(
        Some(SUPERVISOR_NAME.into()),
        Supervisor,
        SupervisorArgs {
            children,
            policy: RestartPolicy::default(),
        },
    )
    .await;
    let (supervisor, supervisor_handle) = match spawned {
        Ok(s) => s,
        Err(e) => {
            if let Some(task) = &acceptor {
                task.abort();
            }
            server.stop(None);
            return Err(ClusterError::Start(e.to_string()));
        }
    };
    Ok(Cluster {
        node,
        server,
        server_handle,
        supervisor,
        supervisor_handle,
        acceptor,
    })
}

/// A status snapshot from this node's membership actor.
pub async fn status() -> Result<ClusterStatus, ClusterError> {
    let cell = ractor::registry::where_is(MEMBERSHIP_NAME).ok_or(ClusterError::NotRunning)?;
    call(
        &cell,
        MEMBERSHIP_NAME,
        MembershipMsg::Status,
        Duration::from_secs(5),
    )
    .await
    .map_err(ClusterError::Unanswered)
}

impl Cluster {
    /// This node's name.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The node server (for `GetSessions`, or to dial by hand).
    pub fn server(&self) -> &ActorRef<NodeServerMessage> {
        &self.server
    }

    /// Waits until the node server or the cluster supervisor stops (which
    /// only happens on a fault the supervisor could not repair), and says which.
    pub async fn stopped(&mut self) -> &'static str {
        tokio::select! {
            _ = &mut self.server_handle => "the cluster server stopped",
            _ = &mut self.supervisor_handle => "the cluster supervisor gave up",
        }
    }

    /// Stops membership, then the node server (closing every session).
    pub async fn shutdown(mut self) {
        if let Some(task) = self.acceptor.take() {
            task.abort();
        }
        let _ = self
            .supervisor
            .stop_and_wait(Some("shutdown".into()), Some(Duration::from_secs(5)))
            .await;
        let _ = self
            .server
            .stop_and_wait(Some("shutdown".into()), Some(Duration::from_secs(5)))
            .await;
    }
}
