//! The cluster admin endpoint (`/admin/...`), protected by a bearer token:
//!
//! * `/admin/actors`: every supervised actor of this node with its machine's
//!   current state, recent run, rejected events and restart count;
//! * `/admin/actors/{name}/diagram`: one actor's diagram with its current
//!   state highlighted (DOT, SVG, Mermaid, TikZ); `.../reset`: a manual RESET;
//! * `/admin/cluster`: the whole cluster as this node sees it
//!   ([`ClusterView`]): every node with its membership state and sessions,
//!   every actor on every reachable node (machine, state, recent run,
//!   restarts), the process groups and their holders, and the Kafka topics.
//!   The node layer builds it (`candela_node::cluster::inspect`), asking each
//!   peer's inspector with a timed call, so an unreachable node is reported
//!   as such instead of holding the request.
//!
//! Without a configured token every admin request is refused. The view's
//! types are also what the per-node inspectors send each other (serde), so
//! the wire format and the OpenAPI schema cannot drift apart.

use std::sync::Arc;

use poem_openapi::auth::Bearer;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::{Json, PlainText};
use poem_openapi::{ApiResponse, Object, OpenApi, SecurityScheme};
use serde::{Deserialize, Serialize};

use candela_actors::fsm::catalog;
use candela_actors::fsm::diagram::Format;
use candela_actors::fsm::registry;
use candela_actors::supervisor::{ChildStatus, SupervisorMsg};

use crate::model::ErrorBody;
use crate::server::ApiState;

/// `Authorization: Bearer <token>`, the token from the node's configuration.
#[derive(SecurityScheme)]
#[oai(ty = "bearer")]
pub struct AdminToken(Bearer);

/// The admin API.
pub struct AdminApi {
    pub(crate) state: Arc<ApiState>,
}

/// One step of a run.
#[derive(Debug, Clone, Object, Serialize, Deserialize)]
pub struct StepDto {
    /// When, ms since the epoch.
    pub at_ms: u64,
    /// From state.
    pub from: String,
    /// Event.
    pub event: String,
    /// To state.
    pub to: String,
}

/// An actor of this node.
#[derive(Debug, Clone, Object)]
pub struct ActorDto {
    /// Its registry name.
    pub name: String,
    /// Its machine (`producer`, `datastore`, …).
    pub machine: String,
    /// The current state.
    pub state: String,
    /// Whether the current state is an error state.
    pub in_error: bool,
    /// Whether the actor is running now (false between a failure and its restart).
    pub running: bool,
    /// Restarts by its supervisor.
    pub restarts: u32,
    /// Why it last stopped, if it did.
    #[oai(skip_serializing_if_is_none)]
    pub last_failure: Option<String>,
    /// Transitions taken by this instance.
    pub transitions_total: u64,
    /// Events this instance refused.
    pub rejected_total: u64,
    /// Times the consumer watchdog found it stuck (a batch in flight past
    /// `consumer.stall_secs`) and restarted it (0 for other actors).
    pub stalls: u64,
    /// When the watchdog last found it stuck, ms since the epoch.
    #[oai(skip_serializing_if_is_none)]
    pub last_stall_ms: Option<u64>,
    /// The most recent steps, oldest first.
    pub recent: Vec<StepDto>,
}

/// One instrument's backfill on some node (`GET /admin/backfill`, and each
/// node of `GET /admin/cluster`).
#[derive(Debug, Clone, Object, Serialize, Deserialize, PartialEq)]
pub struct BackfillDto {
    /// The instrument, `MARKET:BASE-QUOTE`.
    pub instrument: String,
    /// Minutes the backfill covers.
    pub total_minutes: i64,
    /// Minutes fetched and published (or given up) so far.
    pub done_minutes: i64,
    /// Bars published.
    pub bars: u64,
    /// Chunks given up after every attempt failed.
    pub failed_chunks: u32,
    /// Estimated seconds left (absent before the first chunk is done).
    #[oai(skip_serializing_if_is_none)]
    pub eta_secs: Option<u64>,
    /// Whether it has ended.
    pub finished: bool,
}

impl From<candela_actors::producer::backfill::InstrumentProgress> for BackfillDto {
    fn from(p: candela_actors::producer::backfill::InstrumentProgress) -> Self {
        BackfillDto {
            instrument: p.instrument,
            total_minutes: p.total_minutes,
            done_minutes: p.done_minutes,
            bars: p.bars,
            failed_chunks: p.failed_chunks,
            eta_secs: p.eta_secs,
            finished: p.finished,
        }
    }
}

/// This process's backfills.
pub fn local_backfill() -> Vec<BackfillDto> {
    candela_actors::producer::backfill::progress()
        .into_iter()
        .map(Into::into)
        .collect()
}

/// The cluster as one node sees it (`GET /admin/cluster`).
#[derive(Debug, Clone, Object, Serialize, Deserialize)]
pub struct ClusterView {
    /// The node that answered.
    pub node: String,
    /// When the view was taken, ms since the epoch.
    pub at_ms: u64,
    /// This node first, then every peer it knows (configured or not).
    pub nodes: Vec<NodeView>,
    /// Every non-empty process group visible here, with its holders.
    pub groups: Vec<GroupView>,
    /// The Kafka topics, from the broker's metadata.
    pub topics: TopicsView,
}

/// One node of the cluster.
#[derive(Debug, Clone, Object, Serialize, Deserialize)]
pub struct NodeView {
    /// Its node name.
    pub name: String,
    /// `self` for the answering node, otherwise the peer's membership state
    /// there: `connected`, `suspect`, `connecting` or `down`.
    pub membership: String,
    /// Where it is dialled (configured peers).
    #[oai(skip_serializing_if_is_none)]
    pub address: Option<String>,
    /// The last answered heartbeat's round trip, in milliseconds.
    #[oai(skip_serializing_if_is_none)]
    pub last_rtt_ms: Option<f64>,
    /// Sessions to it after the first one.
    pub reconnects: u32,
    /// Whether its inspector answered in time.
    pub reachable: bool,
    /// Why it did not (not connected, timed out, no inspector).
    #[oai(skip_serializing_if_is_none)]
    pub error: Option<String>,
    /// Its own sessions, as it reported them.
    pub sessions: Vec<SessionView>,
    /// Every actor on it, as it reported them.
    pub actors: Vec<NodeActorView>,
    /// Its Kafka consumers placed on partitions by the platform, and what
    /// each reads now.
    pub placements: Vec<PlacementView>,
    /// Its history backfills (a producer node's), by instrument.
    #[serde(default)]
    pub backfill: Vec<BackfillDto>,
}

/// What one node's inspector reports about itself.
#[derive(Debug, Clone, Object, Serialize, Deserialize)]
pub struct NodeReport {
    /// The node.
    pub node: String,
    /// Its cluster sessions.
    pub sessions: Vec<SessionView>,
    /// Every local actor, and every machine whose actor is not running.
    pub actors: Vec<NodeActorView>,
    /// Its placed Kafka consumers (see [`PlacementView`]).
    pub placements: Vec<PlacementView>,
    /// Its history backfills, by instrument.
    #[serde(default)]
    pub backfill: Vec<BackfillDto>,
}

/// A Kafka consumer that the platform placed on its partitions (the fixed
/// consumers' share among every consumer node's workers, or a dynamic
/// topic's consumer reading all of it).
#[derive(Debug, Clone, Object, Serialize, Deserialize, PartialEq, Eq)]
pub struct PlacementView {
    /// The member, `<node>#<worker>` for a fixed consumer (empty for a
    /// dynamic topic's consumer).
    pub member: String,
    /// The consumer group.
    pub group: String,
    /// Its share, e.g. `2 of 3`: the second of three members.
    pub share: String,
    /// The partitions it reads now.
    pub partitions: Vec<PartitionRef>,
}

/// One partition of a topic.
#[derive(Debug, Clone, Object, Serialize, Deserialize, PartialEq, Eq)]
pub struct PartitionRef {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
}

/// One cluster session of a node.
#[derive(Debug, Clone, Object, Serialize, Deserialize)]
pub struct SessionView {
    /// The peer's node name, once it said it.
    #[oai(skip_serializing_if_is_none)]
    pub peer: Option<String>,
    /// The peer's address.
    pub address: String,
    /// `inbound` (the peer dialled) or `outbound`.
    pub direction: String,
}

/// One actor on some node.
#[derive(Debug, Clone, Object, Serialize, Deserialize)]
pub struct NodeActorView {
    /// Its id on its own node (`0.<pid>`), empty when it is not running.
    pub id: String,
    /// Its registry name, if it has one.
    #[oai(skip_serializing_if_is_none)]
    pub name: Option<String>,
    /// The runtime's status: `running`, `starting`, `stopping`, … or
    /// `not running` for a machine whose actor is between a failure and
    /// its restart (or gone).
    pub status: String,
    /// Its parent in the supervision tree (name, or id when unnamed).
    #[oai(skip_serializing_if_is_none)]
    pub parent: Option<String>,
    /// Its state machine (`producer`, `consumer`, …), if it runs one.
    #[oai(skip_serializing_if_is_none)]
    pub machine: Option<String>,
    /// The machine's current state.
    #[oai(skip_serializing_if_is_none)]
    pub state: Option<String>,
    /// Whether the current state is an error state.
    pub in_error: bool,
    /// Restarts by its supervisor (supervised actors only).
    #[oai(skip_serializing_if_is_none)]
    pub restarts: Option<u32>,
    /// Times the consumer watchdog found it stuck and restarted it.
    #[serde(default)]
    pub stalls: u64,
    /// Why it last stopped, if its supervisor saw it stop.
    #[oai(skip_serializing_if_is_none)]
    pub last_failure: Option<String>,
    /// Transitions taken by this instance of the machine.
    pub transitions_total: u64,
    /// Events this instance refused.
    pub rejected_total: u64,
    /// The machine's most recent steps, oldest first.
    pub recent: Vec<StepDto>,
}

/// A process group (`ractor::pg`): cluster names, roles, ….
#[derive(Debug, Clone, Object, Serialize, Deserialize)]
pub struct GroupView {
    /// Its scope (`candela.names`, `candela.roles`, …).
    pub scope: String,
    /// The group.
    pub group: String,
    /// Its members.
    pub holders: Vec<GroupHolder>,
}

/// A member of a process group.
#[derive(Debug, Clone, Object, Serialize, Deserialize)]
pub struct GroupHolder {
    /// The node it runs on, when known.
    #[oai(skip_serializing_if_is_none)]
    pub node: Option<String>,
    /// Its pid on that node.
    pub pid: u64,
    /// Its registry name, if it has one.
    #[oai(skip_serializing_if_is_none)]
    pub name: Option<String>,
}

/// The Kafka topics.
#[derive(Debug, Clone, Object, Serialize, Deserialize)]
pub struct TopicsView {
    /// The brokers asked.
    pub brokers: Vec<String>,
    /// Why the metadata could not be read (unreachable broker, time-out).
    #[oai(skip_serializing_if_is_none)]
    pub error: Option<String>,
    /// Every topic the broker reports.
    pub topics: Vec<TopicView>,
}

/// One Kafka topic.
#[derive(Debug, Clone, Object, Serialize, Deserialize)]
pub struct TopicView {
    /// Its name.
    pub name: String,
    /// Its partitions.
    pub partitions: u32,
    /// A broker-internal topic (`__consumer_offsets`, …).
    pub internal: bool,
    /// The broker's error for it, if any.
    #[oai(skip_serializing_if_is_none)]
    pub error: Option<String>,
}

/// A dynamic instrument: one the platform was asked for on demand and
/// serves since.
#[derive(Debug, Clone, Object)]
pub struct DynamicInstrumentDto {
    /// `MARKET:BASE-QUOTE`.
    pub instrument: String,
    /// Its dynamic topic.
    pub topic: String,
    /// The consumer group that reads it.
    pub group: String,
    /// When it was created, Unix seconds.
    pub created_at: i64,
    /// `active` or `removing`.
    pub state: String,
}

/// Answer of the admin endpoints.
#[derive(ApiResponse)]
pub enum AdminResponse<
    T: poem_openapi::payload::Payload + poem_openapi::ApiResponse + poem::IntoResponse + Send,
> {
    /// The answer.
    #[oai(status = 200)]
    Ok(T),
    /// No or wrong token.
    #[oai(status = 401)]
    Unauthorized(Json<ErrorBody>),
    /// No such actor, or no cluster layer.
    #[oai(status = 404)]
    NotFound(Json<ErrorBody>),
    /// A parameter is wrong.
    #[oai(status = 400)]
    BadRequest(Json<ErrorBody>),
    /// Something needed is not available (e.g. Graphviz for SVG).
    #[oai(status = 503)]
    Unavailable(Json<ErrorBody>),
}

fn err<
    T: poem_openapi::payload::Payload + poem_openapi::ApiResponse + poem::IntoResponse + Send,
>(
    make: fn(Json<ErrorBody>) -> AdminResponse<T>,
    code: &str,
    message: impl Into<String>,
) -> AdminResponse<T> {
    make(Json(ErrorBody::new(code, message)))
}

/// Whether `given` equals the configured token `expected`, compared in
/// constant time (for every endpoint that takes the admin token).
pub fn token_matches(given: &str, expected: &str) -> bool {
    let (given, want) = (given.as_bytes(), expected.as_bytes());
    given.len() == want.len()
        && given
            .iter()
            .zip(want)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

impl AdminApi {
    /// Whether `token` is the configured one (compared in constant time).
    fn authorized(&self, token: &AdminToken) -> Result<(), String> {
        let Some(expected) = self.state.admin.token.as_deref() else {
            return Err("the admin endpoint is disabled: no admin token is configured".into());
        };
        if token_matches(&token.0.token, expected) {
            Ok(())
        } else {
            Err("wrong admin token".into())
        }
    }

    async fn children(&self) -> Vec<ChildStatus> {
        let mut out = Vec::new();
        for name in &self.state.admin.supervisors {
            if let Some(cell) = ractor::registry::where_is(name.clone()) {
                let sup: ractor::ActorRef<SupervisorMsg> = cell.into();
                if let Ok(children) = ractor::call_t!(sup, SupervisorMsg::Status, 2_000) {
                    out.extend(children);
                }
            }
        }
        out
    }
}

#[OpenApi(prefix_path = "/admin")]
impl AdminApi {
    /// This node's history backfills: per instrument, minutes done of the
    /// total, bars published, estimated time left.
    #[oai(path = "/backfill", method = "get")]
    async fn backfill(&self, token: AdminToken) -> AdminResponse<Json<Vec<BackfillDto>>> {
        if let Err(why) = self.authorized(&token) {
            return err(AdminResponse::Unauthorized, "unauthorized", why);
        }
        AdminResponse::Ok(Json(local_backfill()))
    }

    /// Every actor of this node: machine, current state, recent run, restarts.
    #[oai(path = "/actors", method = "get")]
    async fn actors(&self, token: AdminToken) -> AdminResponse<Json<Vec<ActorDto>>> {
        if let Err(why) = self.authorized(&token) {
            return err(AdminResponse::Unauthorized, "unauthorized", why);
        }
        let children = self.children().await;
        let actors = registry::all()
            .into_iter()
            .filter(|(name, _)| children.iter().any(|c| &c.name == name))
            .map(|(name, view)| {
                let snap = view.snapshot();
                let child = children.iter().find(|c| c.name == name);
                let stalls = candela_actors::consumer::watchdog::stalls(&name);
                ActorDto {
                    running: ractor::registry::where_is(name.clone()).is_some(),
                    restarts: child.map_or(0, |c| c.restarts),
                    last_failure: child.and_then(|c| c.last_failure.clone()),
                    name,
                    machine: snap.machine,
                    state: snap.state,
                    in_error: snap.in_error,
                    transitions_total: snap.transitions_total,
                    rejected_total: snap.rejected_total,
                    stalls: stalls.stalls,
                    last_stall_ms: stalls.last_at_ms,
                    recent: snap
                        .recent
                        .into_iter()
                        .map(|s| StepDto {
                            at_ms: s.at_ms,
                            from: s.from,
                            event: s.event,
                            to: s.to,
                        })
                        .collect(),
                }
            })
            .collect();
        AdminResponse::Ok(Json(actors))
    }

    /// One actor's state-machine diagram with its current state highlighted.
    #[oai(path = "/actors/:name/diagram", method = "get")]
    async fn diagram(
        &self,
        token: AdminToken,
        /// The actor's registry name (URL-encoded, e.g. `producer%2Fnode-a`).
        name: Path<String>,
        /// `dot` (default), `svg`, `mermaid` or `tikz`.
        format: Query<Option<crate::model::DiagramFormat>>,
    ) -> AdminResponse<PlainText<String>> {
        if let Err(why) = self.authorized(&token) {
            return err(AdminResponse::Unauthorized, "unauthorized", why);
        }
        let Some(view) = registry::get(&name.0) else {
            return err(
                AdminResponse::NotFound,
                "not_found",
                format!("no actor named `{}` on this node", name.0),
            );
        };
        let snap = view.snapshot();
        let Some((_, diagram)) = catalog::find(&snap.machine) else {
            return err(
                AdminResponse::NotFound,
                "not_found",
                format!("no machine `{}`", snap.machine),
            );
        };
        let diagram = match diagram.highlight(&snap.state) {
            Ok(d) => d,
            Err(e) => return err(AdminResponse::NotFound, "not_found", e.to_string()),
        };
        use crate::model::DiagramFormat;
        let format = match format.0.unwrap_or(DiagramFormat::Dot) {
            DiagramFormat::Svg => {
                return match svg(&diagram.render(Format::Dot)).await {
                    Ok(svg) => AdminResponse::Ok(PlainText(svg)),
                    Err(why) => err(AdminResponse::Unavailable, "unavailable", why),
                };
            }
            DiagramFormat::Dot => Format::Dot,
            DiagramFormat::Mermaid => Format::Mermaid,
            DiagramFormat::Tikz => Format::Tikz,
        };
        AdminResponse::Ok(PlainText(diagram.render(format)))
    }

    /// A manual RESET: the actor's supervisor restarts it with fresh state.
    #[oai(path = "/actors/:name/reset", method = "post")]
    async fn reset(
        &self,
        token: AdminToken,
        name: Path<String>,
    ) -> AdminResponse<PlainText<String>> {
        if let Err(why) = self.authorized(&token) {
            return err(AdminResponse::Unauthorized, "unauthorized", why);
        }
        for sup in &self.state.admin.supervisors {
            if let Some(cell) = ractor::registry::where_is(sup.clone()) {
                let sup: ractor::ActorRef<SupervisorMsg> = cell.into();
                if let Ok(true) = ractor::call_t!(sup, SupervisorMsg::Reset, 2_000, name.0.clone())
                {
                    tracing::info!(actor = %name.0, "manual reset requested");
                    return AdminResponse::Ok(PlainText(format!("reset {}", name.0)));
                }
            }
        }
        err(
            AdminResponse::NotFound,
            "not_found",
            format!("no supervised actor named `{}` on this node", name.0),
        )
    }

    /// The dynamic instruments (those asked for on demand), from the active
    /// coordinator's registry.
    #[oai(path = "/dynamic", method = "get")]
    async fn dynamic(&self, token: AdminToken) -> AdminResponse<Json<Vec<DynamicInstrumentDto>>> {
        if let Err(why) = self.authorized(&token) {
            return err(AdminResponse::Unauthorized, "unauthorized", why);
        }
        let Some(dynamic) = &self.state.admin.dynamic else {
            return err(
                AdminResponse::Unavailable,
                "unavailable",
                "no coordinator is reachable from this node",
            );
        };
        match (dynamic.list)().await {
            Ok(records) => AdminResponse::Ok(Json(
                records
                    .into_iter()
                    .map(|r| DynamicInstrumentDto {
                        instrument: r.instrument.to_string(),
                        topic: r.topic,
                        group: r.group,
                        created_at: r.created_at,
                        state: match r.state {
                            candela_actors::store::dynamic::DynamicState::Active => "active",
                            candela_actors::store::dynamic::DynamicState::Removing => "removing",
                        }
                        .into(),
                    })
                    .collect(),
            )),
            Err(why) => err(AdminResponse::Unavailable, "unavailable", why),
        }
    }

    /// Removes a dynamic instrument: its producer stops streaming it, its
    /// consumer stops, its record goes (its stored bars stay). Asked for
    /// again, it is created again.
    #[oai(path = "/dynamic/:instrument", method = "delete")]
    async fn remove_dynamic(
        &self,
        token: AdminToken,
        /// `MARKET:BASE-QUOTE`.
        instrument: Path<crate::params::InstrumentParam>,
    ) -> AdminResponse<PlainText<String>> {
        if let Err(why) = self.authorized(&token) {
            return err(AdminResponse::Unauthorized, "unauthorized", why);
        }
        let parsed = instrument.0 .0;
        let Some(dynamic) = &self.state.admin.dynamic else {
            return err(
                AdminResponse::Unavailable,
                "unavailable",
                "no coordinator is reachable from this node",
            );
        };
        match (dynamic.remove)(parsed.clone()).await {
            Ok(true) => {
                tracing::info!(instrument = %parsed, "dynamic instrument removed (admin)");
                AdminResponse::Ok(PlainText(format!("removed {parsed}")))
            }
            Ok(false) => err(
                AdminResponse::NotFound,
                "not_found",
                format!("{parsed} is not a dynamic instrument"),
            ),
            Err(why) => err(AdminResponse::Unavailable, "unavailable", why),
        }
    }

    /// The whole cluster as this node sees it: nodes with their membership
    /// state and sessions, every actor on every reachable node (machine,
    /// state, recent run, restarts), process groups, Kafka topics. A node
    /// that does not answer in time is listed with `reachable: false`.
    #[oai(path = "/cluster", method = "get")]
    async fn cluster(&self, token: AdminToken) -> AdminResponse<Json<ClusterView>> {
        if let Err(why) = self.authorized(&token) {
            return err(AdminResponse::Unauthorized, "unauthorized", why);
        }
        match &self.state.admin.cluster_status {
            Some(view) => AdminResponse::Ok(Json(view().await)),
            None => err(
                AdminResponse::NotFound,
                "not_found",
                "this node runs without the cluster layer (candela run)",
            ),
        }
    }
}

/// Renders DOT to SVG with Graphviz.
async fn svg(dot: &str) -> Result<String, String> {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new("dot")
        .arg("-Tsvg")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("Graphviz `dot` is not available: {e}"))?;
    let mut stdin = child.stdin.take().ok_or("no stdin")?;
    stdin
        .write_all(dot.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    drop(stdin);
    let out = child.wait_with_output().await.map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!(
            "dot failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    String::from_utf8(out.stdout).map_err(|e| e.to_string())
}
