//! The cluster admin endpoint (`/admin/...`), protected by a bearer token:
//! every actor of this node with its machine's current state, recent run,
//! rejected events and restart count; one actor's diagram with its current
//! state highlighted (DOT, SVG, Mermaid, TikZ); a manual RESET; and the
//! cluster layer's view (nodes, sessions, names) when the node has one.
//!
//! Without a configured token every admin request is refused.

use std::sync::Arc;

use poem_openapi::auth::Bearer;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::{Json, PlainText};
use poem_openapi::{ApiResponse, Object, OpenApi, SecurityScheme};

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
#[derive(Debug, Clone, Object)]
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
    pub last_failure: Option<String>,
    /// Transitions taken by this instance.
    pub transitions_total: u64,
    /// Events this instance refused.
    pub rejected_total: u64,
    /// The most recent steps, oldest first.
    pub recent: Vec<StepDto>,
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

impl AdminApi {
    /// Whether `token` is the configured one (compared in constant time).
    fn authorized(&self, token: &AdminToken) -> Result<(), String> {
        let Some(expected) = self.state.admin.token.as_deref() else {
            return Err("the admin endpoint is disabled: no admin token is configured".into());
        };
        let given = token.0.token.as_bytes();
        let want = expected.as_bytes();
        let same = given.len() == want.len()
            && given
                .iter()
                .zip(want)
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0;
        if same {
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
        format: Query<Option<String>>,
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
        let requested = format.0.unwrap_or_else(|| "dot".into());
        if requested.eq_ignore_ascii_case("svg") {
            return match svg(&diagram.render(Format::Dot)).await {
                Ok(svg) => AdminResponse::Ok(PlainText(svg)),
                Err(why) => err(AdminResponse::Unavailable, "unavailable", why),
            };
        }
        match requested.parse::<Format>() {
            Ok(f) => AdminResponse::Ok(PlainText(diagram.render(f))),
            Err(e) => err(
                AdminResponse::BadRequest,
                "bad_request",
                format!("{e} or svg"),
            ),
        }
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

    /// The cluster layer's view: peers, sessions and names.
    #[oai(path = "/cluster", method = "get")]
    async fn cluster(&self, token: AdminToken) -> AdminResponse<PlainText<String>> {
        if let Err(why) = self.authorized(&token) {
            return err(AdminResponse::Unauthorized, "unauthorized", why);
        }
        match &self.state.admin.cluster_status {
            Some(status) => AdminResponse::Ok(PlainText(status().await)),
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
