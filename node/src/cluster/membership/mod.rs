//! The membership actor: one per node, it keeps this node connected to its
//! configured peers and notices when one fails.
//!
//! * It dials every configured peer (`ractor_cluster::client_connect`) and
//!   learns from the node server's events when a session is ready (ours, or
//!   one the peer dialled); only a ready session counts as connected.
//! * It heartbeats every connected peer: a timed `Ping` call to the peer's
//!   [`HeartbeatResponder`](super::heartbeat), found by its cluster name
//!   `membership/<peer>` at every beat. A peer that misses
//!   `heartbeat_misses` in a row is dropped (its session stopped), which ends
//!   its stand-ins and its process-group memberships here: a stopped (SIGSTOP)
//!   or wedged node is noticed, which ractor alone never does.
//! * After a loss it re-dials with jittered exponential back-off, and gives up
//!   on a dial whose handshake does not finish in `heartbeat × misses`.
//! * [`MembershipMsg::Status`] answers a [`ClusterStatus`] snapshot.
//!
//! The schedule itself (due dials, heartbeats, misses, back-off) is the pure
//! [`PeerMachine`]; this actor only performs its actions and feeds it events.
//! Dials and heartbeats run in tasks that report back by message, so the
//! mailbox never waits on the network.

mod io;
mod snapshot;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use candela_actors::call::CallError;
use ractor::concurrency::JoinHandle;
use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort};
use ractor_cluster::node::NodeServerSessionInformation;
use ractor_cluster::{NodeServerMessage, NodeSessionMessage};

use crate::cluster::names;
use crate::cluster::peer::{Action, PeerMachine, PeerState, Timing};
use crate::config::PeerAddr;
use io::{dial, direction, heartbeat, sessions, Forward};
pub use io::{peer_node, DialError};
pub use snapshot::{ClusterStatus, Holder, NameStatus, PeerStatus, SessionStatus};

/// The membership actor's registry name (local to each node).
pub const MEMBERSHIP_NAME: &str = "candela.membership";
/// The id of its subscription to the node server's events.
const SUBSCRIPTION_ID: &str = "candela.membership";

/// The membership actor.
pub struct Membership;

/// Its arguments.
#[derive(Clone)]
pub struct MembershipArgs {
    /// This node's name.
    pub node: String,
    /// The configured peers.
    pub peers: Vec<PeerAddr>,
    /// Heartbeat and back-off timings.
    pub timing: Timing,
    /// The node server.
    pub server: ActorRef<NodeServerMessage>,
    /// TLS for dialling peers (none: plain TCP, loopback development).
    pub tls: Option<crate::cluster::tls::Tls>,
}

/// A session event from the node server.
#[derive(Debug)]
pub enum SessionEvent {
    /// A TCP connection was opened (either direction).
    Opened(NodeServerSessionInformation),
    /// Its handshake (the cookie challenge) succeeded.
    Authenticated(NodeServerSessionInformation),
    /// Actors and process groups are exchanged: the peer is usable.
    Ready(NodeServerSessionInformation),
    /// The session closed.
    Disconnected(NodeServerSessionInformation),
}

/// Messages to the membership actor (local only).
pub enum MembershipMsg {
    /// Time passes: poll every peer's machine.
    Tick,
    /// The node server reports on a session.
    Session(SessionEvent),
    /// A dial finished opening its TCP connection, or failed to.
    Dialed {
        /// The peer.
        peer: String,
        /// The address dialled, or why it failed.
        result: Result<SocketAddr, DialError>,
    },
    /// A heartbeat came back, or failed.
    Heartbeat {
        /// The peer.
        peer: String,
        /// The heartbeat's number.
        seq: u64,
        /// The round trip, or why it failed.
        result: Result<Duration, CallError>,
    },
    /// A status snapshot.
    Status(RpcReplyPort<ClusterStatus>),
}

impl ractor::Message for MembershipMsg {}

struct Peer {
    address: Option<String>,
    machine: PeerMachine,
    /// The ready session in use.
    session: Option<ActorRef<NodeSessionMessage>>,
    /// The address of our latest dial, to find its half-open session.
    dialled: Option<SocketAddr>,
}

/// A session opened but not yet ready.
struct Pending {
    info: NodeServerSessionInformation,
    authenticated: bool,
    /// We closed it ourselves (its handshake took too long).
    abandoned: bool,
}

/// A session that closed during authentication, judged a little later: if
/// the peer is connected by then through another session it was only the
/// losing half of a simultaneous connect, otherwise it was refused.
struct Refusal {
    peer: String,
    address: String,
    direction: &'static str,
    at: Instant,
}

/// The actor's state.
pub struct MembershipState {
    args: MembershipArgs,
    peers: BTreeMap<String, Peer>,
    pending: HashMap<ActorId, Pending>,
    refusals: Vec<Refusal>,
    rng: fastrand::Rng,
    ticker: Option<JoinHandle<()>>,
}

impl Actor for Membership {
    type Msg = MembershipMsg;
    type State = MembershipState;
    type Arguments = MembershipArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<MembershipMsg>,
        args: MembershipArgs,
    ) -> Result<MembershipState, ActorProcessingErr> {
        let now = Instant::now();
        let peers = args
            .peers
            .iter()
            .map(|p| {
                (
                    p.name.clone(),
                    Peer {
                        address: Some(p.addr.clone()),
                        machine: PeerMachine::new(args.timing, now, true),
                        session: None,
                        dialled: None,
                    },
                )
            })
            .collect();
        args.server.cast(NodeServerMessage::SubscribeToEvents {
            id: SUBSCRIPTION_ID.into(),
            subscription: Box::new(Forward(myself.clone())),
        })?;
        let mut state = MembershipState {
            args,
            peers,
            pending: HashMap::new(),
            refusals: Vec::new(),
            rng: fastrand::Rng::new(),
            ticker: None,
        };
        // After a restart the sessions are still there: adopt them.
        for ses in sessions(&state.args.server).await? {
            state.ready(ses, now);
        }
        let tick = (state.args.timing.heartbeat / 10)
            .min(state.args.timing.reconnect_min / 2)
            .clamp(Duration::from_millis(5), Duration::from_millis(100));
        state.ticker = Some(myself.send_interval(tick, || MembershipMsg::Tick));
        tracing::info!(
            node = %state.args.node,
            peers = state.peers.len(),
            heartbeat_ms = state.args.timing.heartbeat.as_millis() as u64,
            misses = state.args.timing.misses,
            "membership started"
        );
        Ok(state)
    }

    async fn post_stop(
        &self,
        _: ActorRef<MembershipMsg>,
        state: &mut MembershipState,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(ticker) = state.ticker.take() {
            ticker.abort();
        }
        let _ = state
            .args
            .server
            .cast(NodeServerMessage::UnsubscribeToEvents(
                SUBSCRIPTION_ID.into(),
            ));
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<MembershipMsg>,
        msg: MembershipMsg,
        state: &mut MembershipState,
    ) -> Result<(), ActorProcessingErr> {
        let now = Instant::now();
        match msg {
            MembershipMsg::Tick => {
                let names: Vec<String> = state.peers.keys().cloned().collect();
                for name in names {
                    let jitter = state.rng.f64();
                    let Some(peer) = state.peers.get_mut(&name) else {
                        continue;
                    };
                    for action in peer.machine.poll(now, jitter) {
                        state.perform(&myself, &name, action);
                    }
                }
                state.judge_refusals(now);
            }
            MembershipMsg::Session(event) => state.session_event(event, now).await?,
            MembershipMsg::Dialed { peer, result } => {
                let jitter = state.rng.f64();
                let Some(p) = state.peers.get_mut(&peer) else {
                    return Ok(());
                };
                match result {
                    Ok(addr) => {
                        tracing::debug!(%peer, %addr, "connection opened; waiting for the handshake");
                        p.dialled = Some(addr);
                    }
                    Err(error) => {
                        p.machine.on_dial_failed(now, jitter);
                        tracing::info!(
                            %peer,
                            address = p.address.as_deref().unwrap_or("?"),
                            %error,
                            failed_dials = p.machine.failures(),
                            retry_in_ms = p.machine.dial_at().map(|t| t.saturating_duration_since(now).as_millis() as u64),
                            "dial failed"
                        );
                    }
                }
            }
            MembershipMsg::Heartbeat { peer, seq, result } => {
                let jitter = state.rng.f64();
                let Some(p) = state
                    .peers
                    .get_mut(&peer)
                    .filter(|p| p.machine.awaiting(seq))
                else {
                    // Stale: the peer was dropped, or a newer heartbeat is out.
                    return Ok(());
                };
                match result {
                    Ok(rtt) => {
                        if p.machine.state() == PeerState::Suspect {
                            tracing::info!(%peer, rtt_ms = rtt.as_secs_f64() * 1e3, "peer answers again");
                        }
                        p.machine.on_pong(seq, rtt, now);
                        metrics::histogram!(candela_actors::telemetry::CLUSTER_HEARTBEAT_SECONDS, "peer" => peer.clone())
                            .record(rtt.as_secs_f64());
                    }
                    Err(error) => {
                        let action = p.machine.on_ping_failed(seq, now, jitter);
                        tracing::warn!(%peer, seq, %error, misses = p.machine.misses(), "heartbeat missed");
                        if let Some(action) = action {
                            state.perform(&myself, &peer, action);
                        }
                    }
                }
            }
            MembershipMsg::Status(reply) => {
                let status = state.status(now).await?;
                let _ = reply.send(status);
            }
        }
        state.record_peers();
        Ok(())
    }
}

impl MembershipState {
    /// The peers gauge: how many peers are in each state.
    fn record_peers(&self) {
        for (label, s) in [
            ("connecting", PeerState::Connecting),
            ("connected", PeerState::Connected),
            ("suspect", PeerState::Suspect),
            ("down", PeerState::Down),
        ] {
            let n = self
                .peers
                .values()
                .filter(|p| p.machine.state() == s)
                .count();
            metrics::gauge!(candela_actors::telemetry::CLUSTER_PEERS, "state" => label)
                .set(n as f64);
        }
    }

    fn perform(&mut self, myself: &ActorRef<MembershipMsg>, name: &str, action: Action) {
        let Some(peer) = self.peers.get_mut(name) else {
            return;
        };
        match action {
            Action::Dial => {
                let Some(address) = peer.address.clone() else {
                    return;
                };
                tracing::debug!(peer = %name, %address, "dialling");
                let server = self.args.server.clone();
                let tls = self.args.tls.clone();
                let myself = myself.clone();
                let peer = name.to_owned();
                tokio::spawn(async move {
                    let result = dial(&server, &address, tls.as_ref()).await;
                    let _ = myself.cast(MembershipMsg::Dialed { peer, result });
                });
            }
            Action::AbandonDial => {
                // Warn once per outage, not at every attempt.
                let failed_dials = peer.machine.failures();
                let address = peer.address.as_deref().unwrap_or("?");
                if failed_dials <= 1 {
                    tracing::warn!(
                        peer = %name,
                        address,
                        handshake_ms = self.args.timing.handshake.as_millis() as u64,
                        "peer did not finish the handshake in time; closing the attempt"
                    );
                } else {
                    tracing::info!(peer = %name, address, failed_dials, "handshake timed out again");
                }
                if let Some(addr) = peer.dialled.take() {
                    let addr = addr.to_string();
                    for pending in self.pending.values_mut() {
                        if !pending.info.is_server && pending.info.peer_addr == addr {
                            pending.abandoned = true;
                            pending.info.actor.stop(Some("handshake_timeout".into()));
                        }
                    }
                }
            }
            Action::Ping { seq } => {
                let myself = myself.clone();
                let from = self.args.node.clone();
                let peer = name.to_owned();
                let timeout = self.args.timing.heartbeat;
                tokio::spawn(async move {
                    let result = heartbeat(&peer, from, seq, timeout).await;
                    let _ = myself.cast(MembershipMsg::Heartbeat { peer, seq, result });
                });
            }
            Action::Disconnect(reason) => {
                tracing::warn!(peer = %name, %reason, "dropping unresponsive peer");
                if let Some(session) = peer.session.take() {
                    session.stop(Some(format!("candela: {reason}")));
                }
            }
        }
    }

    async fn session_event(
        &mut self,
        event: SessionEvent,
        now: Instant,
    ) -> Result<(), ActorProcessingErr> {
        match event {
            SessionEvent::Opened(ses) => {
                tracing::debug!(address = %ses.peer_addr, direction = direction(&ses), "session opened");
                self.pending.insert(
                    ses.actor.get_id(),
                    Pending {
                        info: ses,
                        authenticated: false,
                        abandoned: false,
                    },
                );
            }
            SessionEvent::Authenticated(ses) => {
                tracing::debug!(peer = ?peer_node(&ses), address = %ses.peer_addr, "session authenticated");
                if let Some(pending) = self.pending.get_mut(&ses.actor.get_id()) {
                    pending.authenticated = true;
                }
            }
            SessionEvent::Ready(ses) => self.ready(ses, now),
            SessionEvent::Disconnected(ses) => self.disconnected(ses, now).await?,
        }
        Ok(())
    }

    fn ready(&mut self, ses: NodeServerSessionInformation, now: Instant) {
        self.pending.remove(&ses.actor.get_id());
        let Some(name) = peer_node(&ses) else {
            return;
        };
        if name == self.args.node {
            return;
        }
        let timing = self.args.timing;
        let peer = self.peers.entry(name.clone()).or_insert_with(|| {
            tracing::info!(peer = %name, address = %ses.peer_addr, "a node not in cluster.peers joined");
            Peer {
                address: None,
                machine: PeerMachine::new(timing, now, false),
                session: None,
                dialled: None,
            }
        });
        peer.session = Some(ses.actor.clone());
        peer.dialled = None;
        if !peer.machine.is_up() {
            peer.machine.on_session_ready(now);
            tracing::info!(
                peer = %name,
                address = %ses.peer_addr,
                direction = direction(&ses),
                node_id = ses.node_id,
                reconnects = peer.machine.reconnects(),
                "peer connected"
            );
        }
    }

    async fn disconnected(
        &mut self,
        ses: NodeServerSessionInformation,
        now: Instant,
    ) -> Result<(), ActorProcessingErr> {
        let id = ses.actor.get_id();
        let pending = self.pending.remove(&id);
        let name = peer_node(&ses);
        let current = name.as_ref().and_then(|n| {
            self.peers
                .get(n)
                .filter(|p| p.session.as_ref().is_some_and(|s| s.get_id() == id))
                .map(|_| n.clone())
        });
        let Some(name) = current else {
            match (pending, name) {
                (Some(p), _) if p.abandoned || p.authenticated => {
                    // Our own time-out, or the loser of a session election.
                    tracing::debug!(address = %ses.peer_addr, "half-open session closed");
                }
                (Some(_), Some(peer)) => self.refusals.push(Refusal {
                    peer,
                    address: ses.peer_addr.clone(),
                    direction: direction(&ses),
                    at: now,
                }),
                (Some(_), None) => tracing::info!(
                    address = %ses.peer_addr,
                    direction = direction(&ses),
                    "cluster session closed before the peer gave its name"
                ),
                (None, _) => {}
            }
            return Ok(());
        };
        // The session in use closed. Another one may have won an election
        // against it: adopt that one instead of reporting a loss.
        let other = sessions(&self.args.server)
            .await?
            .into_iter()
            .find(|s| s.actor.get_id() != id && peer_node(s).as_deref() == Some(name.as_str()));
        let jitter = self.rng.f64();
        let Some(peer) = self.peers.get_mut(&name) else {
            return Ok(());
        };
        if let Some(other) = other {
            tracing::debug!(peer = %name, node_id = other.node_id, "session replaced");
            peer.session = Some(other.actor);
            return Ok(());
        }
        peer.session = None;
        peer.machine.on_session_lost(now, jitter);
        tracing::warn!(
            peer = %name,
            address = %ses.peer_addr,
            retry_in_ms = peer.machine.dial_at().map(|t| t.saturating_duration_since(now).as_millis() as u64),
            "peer lost"
        );
        Ok(())
    }

    /// Warns of sessions refused during authentication whose peer is still
    /// not connected a heartbeat later (a wrong cookie, typically; ractor
    /// logs the precise reason, `auth_fail`).
    fn judge_refusals(&mut self, now: Instant) {
        let hold = self.args.timing.heartbeat;
        let peers = &self.peers;
        self.refusals.retain(|r| {
            if now.saturating_duration_since(r.at) < hold {
                return true;
            }
            if !peers.get(&r.peer).is_some_and(|p| p.machine.is_up()) {
                tracing::warn!(
                    peer = %r.peer,
                    address = %r.address,
                    direction = r.direction,
                    "cluster session refused during authentication (wrong cookie?)"
                );
            }
            false
        });
    }

    async fn status(&self, now: Instant) -> Result<ClusterStatus, ActorProcessingErr> {
        let sessions = sessions(&self.args.server).await?;
        let node_of: HashMap<u64, String> = sessions
            .iter()
            .filter_map(|s| peer_node(s).map(|n| (s.node_id, n)))
            .collect();
        let peers = self
            .peers
            .iter()
            .map(|(name, p)| PeerStatus {
                name: name.clone(),
                address: p.address.clone(),
                configured: p.address.is_some(),
                state: p.machine.state(),
                for_ms: now.saturating_duration_since(p.machine.since()).as_millis() as u64,
                misses: p.machine.misses(),
                last_rtt_ms: p.machine.last_rtt().map(|d| d.as_secs_f64() * 1e3),
                reconnects: p.machine.reconnects(),
                failed_dials: p.machine.failures(),
            })
            .collect();
        let names = names::all()
            .into_iter()
            .map(|(name, holders)| NameStatus {
                name,
                holders: holders
                    .into_iter()
                    .map(|id| Holder {
                        pid: id.pid(),
                        actor: id.to_string(),
                        node: if id.is_local() {
                            Some(self.args.node.clone())
                        } else {
                            node_of.get(&id.node()).cloned()
                        },
                    })
                    .collect(),
            })
            .collect();
        Ok(ClusterStatus {
            node: self.args.node.clone(),
            peers,
            sessions: sessions
                .iter()
                .map(|s| SessionStatus {
                    node_id: s.node_id,
                    peer: peer_node(s),
                    address: s.peer_addr.clone(),
                    direction: direction(s).into(),
                })
                .collect(),
            names,
        })
    }
}
