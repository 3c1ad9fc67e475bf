//! The ops listener every node has (`ops.listen`, loopback by default):
//! `GET /metrics` (Prometheus' text format), `GET /health` (the process is
//! up) and `GET /ready` (this node can do its roles, as JSON naming every
//! check). No token: these three answers hold no secret and no control, and
//! nothing else is served here (the admin endpoints stay behind their token
//! on the API and the cluster status listener).
//!
//! What must never happen: a scrape that blocks on the data plane (the
//! metrics are read from the recorder; only `/ready` asks the store, with a
//! deadline), or a second recorder in one process (installed once,
//! [`recorder`]).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use poem::http::StatusCode;
use poem::listener::{Acceptor, Listener, TcpListener};
use poem::web::Data;
use poem::{get, handler, EndpointExt, Response, Route, Server};
use serde::Serialize;

/// The process's Prometheus recorder, installed on first use (`None` when
/// another recorder was installed first: then `/metrics` says so).
pub fn recorder() -> Option<PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let installed = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Suffix("_seconds".into()),
                    candela_actors::telemetry::LATENCY_BUCKETS,
                )
                .and_then(PrometheusBuilder::install_recorder);
            match installed {
                Ok(handle) => {
                    candela_actors::telemetry::describe();
                    Some(handle)
                }
                Err(error) => {
                    tracing::warn!(%error, "no Prometheus recorder: /metrics will be empty");
                    None
                }
            }
        })
        .clone()
}

/// One readiness check: `Ok(detail)` or `Err(why)`.
pub type Check =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<String, String>> + Send>> + Send + Sync>;

/// Longest wait for one readiness check.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// The outcome of one check, as `/ready` shows it.
#[derive(Debug, Serialize)]
struct CheckResult {
    name: String,
    ok: bool,
    detail: String,
}

/// `/ready`'s body.
#[derive(Debug, Serialize)]
struct Readiness {
    ready: bool,
    node: String,
    checks: Vec<CheckResult>,
}

struct Ctx {
    node: String,
    checks: Vec<(String, Check)>,
    metrics: Option<PrometheusHandle>,
    /// The last readiness answer and when it was made: callers (no token)
    /// within [`READY_REUSE`] get it again, and only one run of the checks
    /// happens at a time, however many ask.
    last_ready: tokio::sync::Mutex<Option<(std::time::Instant, StatusCode, String)>>,
}

/// How long one run of the readiness checks answers every caller.
const READY_REUSE: Duration = Duration::from_secs(1);

#[handler]
fn metrics_text(Data(ctx): Data<&Arc<Ctx>>) -> Response {
    render(ctx.metrics.as_ref())
}

/// The exposition, or 503 when this process has no recorder.
pub fn render(handle: Option<&PrometheusHandle>) -> Response {
    match handle {
        Some(h) => Response::builder()
            .content_type("text/plain; version=0.0.4")
            .body(h.render()),
        None => Response::builder()
            .status(StatusCode::SERVICE_UNAVAILABLE)
            .body("no metrics recorder in this process"),
    }
}

#[handler]
fn health(Data(ctx): Data<&Arc<Ctx>>) -> poem::web::Json<serde_json::Value> {
    poem::web::Json(serde_json::json!({ "status": "up", "node": ctx.node }))
}

#[handler]
async fn ready(Data(ctx): Data<&Arc<Ctx>>) -> Response {
    let mut last = ctx.last_ready.lock().await;
    if let Some((at, status, body)) = last.as_ref() {
        if at.elapsed() < READY_REUSE {
            return json_response(*status, body.clone());
        }
    }
    let (status, body) = run_checks(ctx).await;
    *last = Some((std::time::Instant::now(), status, body.clone()));
    json_response(status, body)
}

fn json_response(status: StatusCode, body: String) -> Response {
    Response::builder()
        .status(status)
        .content_type("application/json")
        .body(body)
}

/// Runs every check (each within [`CHECK_TIMEOUT`], all at once).
async fn run_checks(ctx: &Ctx) -> (StatusCode, String) {
    let runs = ctx.checks.iter().map(|(name, check)| async move {
        let outcome = match tokio::time::timeout(CHECK_TIMEOUT, check()).await {
            Ok(r) => r,
            Err(_) => Err(format!("no answer within {CHECK_TIMEOUT:?}")),
        };
        let (ok, detail) = match outcome {
            Ok(d) => (true, d),
            Err(e) => (false, e),
        };
        CheckResult {
            name: name.clone(),
            ok,
            detail,
        }
    });
    let checks = futures_util::future::join_all(runs).await;
    let body = Readiness {
        ready: checks.iter().all(|c| c.ok),
        node: ctx.node.clone(),
        checks,
    };
    let status = if body.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, serde_json::to_string(&body).unwrap_or_default())
}

/// A small HTTP server of the node (the ops listener, the cluster status
/// endpoint), owned by whoever started it: [`Served::stop`] stops accepting,
/// lets requests in progress finish (within [`STOP_TIMEOUT`]) and waits for
/// the task, so nothing is left running detached at shutdown.
#[must_use = "dropping it stops the server at once"]
pub struct Served {
    /// The bound address.
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

/// The longest a node's small server waits for requests in progress when
/// it stops.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(5);

impl Served {
    /// Serves `app` on `acceptor` until [`Served::stop`]; `what` names it in
    /// the log.
    pub fn spawn<A, E>(acceptor: A, app: E, addr: SocketAddr, what: &'static str) -> Self
    where
        A: Acceptor + 'static,
        E: poem::Endpoint + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let stopped = async {
                let _ = rx.await;
            };
            if let Err(error) = Server::new_with_acceptor(acceptor)
                .run_with_graceful_shutdown(app, stopped, Some(STOP_TIMEOUT))
                .await
            {
                tracing::error!(%error, server = what, "server stopped");
            }
        });
        Served {
            addr,
            stop: Some(tx),
            task,
        }
    }

    /// Stops it and waits for its task (bounded by [`STOP_TIMEOUT`] and a
    /// margin; a task still running then is aborted).
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        let abort = self.task.abort_handle();
        if tokio::time::timeout(STOP_TIMEOUT + Duration::from_secs(1), &mut self.task)
            .await
            .is_err()
        {
            abort.abort();
        }
    }
}

/// Binds `addr` and serves the ops endpoints until stopped (the bound
/// address is in the answer: useful with port 0).
pub async fn serve(
    addr: SocketAddr,
    node: String,
    checks: Vec<(String, Check)>,
) -> std::io::Result<Served> {
    let acceptor = match crate::sockets::take("ops", addr) {
        Some(handed) => poem::listener::TcpAcceptor::from_std(handed)?,
        None => TcpListener::bind(addr).into_acceptor().await?,
    };
    let bound = acceptor
        .local_addr()
        .first()
        .and_then(|a| a.as_socket_addr().copied())
        .unwrap_or(addr);
    let app = Route::new()
        .at("/metrics", get(metrics_text))
        .at("/health", get(health))
        .at("/ready", get(ready))
        .data(Arc::new(Ctx {
            node,
            checks,
            metrics: recorder(),
            last_ready: tokio::sync::Mutex::new(None),
        }));
    let served = Served::spawn(acceptor, app, bound, "ops listener");
    tracing::info!(addr = %bound, "ops listener (/metrics, /health, /ready)");
    Ok(served)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn a_stopped_listener_serves_no_more_and_leaves_no_task() {
        let served = serve(([127, 0, 0, 1], 0).into(), "n".into(), vec![])
            .await
            .unwrap();
        let addr = served.addr;
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        s.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        let task = served.task.abort_handle();
        served.stop().await;
        assert!(task.is_finished(), "the server task outlived stop()");
        assert!(
            tokio::net::TcpStream::connect(addr).await.is_err(),
            "still accepting after stop()"
        );
    }

    #[tokio::test]
    async fn many_callers_of_ready_cost_one_run_of_the_checks() {
        let runs = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&runs);
        let check: Check = Arc::new(move || {
            counted.fetch_add(1, Ordering::SeqCst);
            Box::pin(async {
                tokio::time::sleep(Duration::from_millis(50)).await;
                Ok("fine".to_owned())
            })
        });
        let ctx = Arc::new(Ctx {
            node: "n".into(),
            checks: vec![("store".into(), check)],
            metrics: None,
            last_ready: tokio::sync::Mutex::new(None),
        });
        let app = Route::new().at("/ready", get(ready)).data(ctx);
        let cli = poem::test::TestClient::new(app);
        let answers =
            futures_util::future::join_all((0..50).map(|_| cli.get("/ready").send())).await;
        for a in answers {
            a.assert_status_is_ok();
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);
    }
}
