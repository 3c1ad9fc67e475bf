//! Assembles the routes and serves them.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use poem::listener::TcpAcceptor;
use poem::{handler, web::Data, EndpointExt, Route};
use poem_openapi::OpenApiService;

use candela_actors::datastore::DatastorePool;
use candela_actors::store::InstrumentSummary;

use crate::admin::AdminApi;
use crate::data::DataApi;

/// A boxed future.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Lists the instruments the platform holds.
pub type InstrumentsFn =
    Arc<dyn Fn() -> BoxFuture<Result<Vec<InstrumentSummary>, String>> + Send + Sync>;

/// Checks that the storage answers.
pub type ReadyFn = Arc<dyn Fn() -> BoxFuture<Result<(), String>> + Send + Sync>;

/// Warnings about the storage that `/ready` shows without making the node
/// unready (e.g. TimescaleDB's refresh jobs failing while the node refreshes
/// in their place).
pub type NotesFn = Arc<dyn Fn() -> Vec<String> + Send + Sync>;

/// Where `/ready` takes its warnings from (none by default).
#[derive(Clone, Default)]
pub struct ReadyNotes(pub Option<NotesFn>);

impl ReadyNotes {
    /// The current warnings.
    pub fn get(&self) -> Vec<String> {
        self.0.as_ref().map(|f| f()).unwrap_or_default()
    }
}

impl std::fmt::Debug for ReadyNotes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("ReadyNotes")
            .field(&self.0.as_ref().map(|_| "fn"))
            .finish()
    }
}

/// Renders the process's metrics in Prometheus' text format.
pub type MetricsFn = Arc<dyn Fn() -> String + Send + Sync>;

/// Where `/metrics` takes its text from (none by default: 404).
#[derive(Clone, Default)]
pub struct MetricsText(pub Option<MetricsFn>);

impl std::fmt::Debug for MetricsText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("MetricsText")
            .field(&self.0.as_ref().map(|_| "fn"))
            .finish()
    }
}

/// Settings of the API.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// The largest `limit` a request may ask for.
    pub max_limit: u32,
    /// How long after its end an interval counts as closed in the stream.
    pub stream_grace_secs: i64,
    /// Most live streams served at once (each holds a connection and a
    /// task); beyond, a stream request is answered 503.
    pub max_streams: usize,
    /// Title shown in the docs.
    pub title: String,
    /// Warnings `/ready` adds to its answer.
    pub ready_notes: ReadyNotes,
    /// What `/metrics` serves (the node's Prometheus recorder).
    pub metrics: MetricsText,
    /// Bytes of encoded bars kept for answering `/api/v1/ohlcv`.
    pub memo_bytes: u64,
    /// Bytes of compressed answers kept (gzip, brotli).
    pub compressed_bytes: u64,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            max_limit: 10_000,
            stream_grace_secs: 2,
            max_streams: 4_096,
            title: "candela".into(),
            ready_notes: ReadyNotes::default(),
            metrics: MetricsText::default(),
            memo_bytes: 64 << 20,
            compressed_bytes: 32 << 20,
        }
    }
}

/// Builds the cluster-wide admin view (the node layer supplies it).
pub type ClusterStatusFn = Arc<dyn Fn() -> BoxFuture<crate::admin::ClusterView> + Send + Sync>;

/// What the admin endpoint needs.
#[derive(Default)]
pub struct AdminConfig {
    /// The bearer token; `None` disables the admin endpoint.
    pub token: Option<String>,
    /// The supervisors whose children it shows and resets, by registry name.
    pub supervisors: Vec<String>,
    /// The cluster layer's status, when the node has one.
    pub cluster_status: Option<ClusterStatusFn>,
    /// The dynamic instruments, through the active coordinator.
    pub dynamic: Option<DynamicAdmin>,
}

/// Lists the dynamic instruments.
pub type DynamicListFn = Arc<
    dyn Fn() -> BoxFuture<Result<Vec<candela_actors::store::dynamic::DynamicRecord>, String>>
        + Send
        + Sync,
>;

/// Removes a dynamic instrument; answers whether it was one.
pub type DynamicRemoveFn = Arc<
    dyn Fn(candela_actors::domain::Instrument) -> BoxFuture<Result<bool, String>> + Send + Sync,
>;

/// What the admin endpoint does with dynamic instruments.
#[derive(Clone)]
pub struct DynamicAdmin {
    /// Lists them.
    pub list: DynamicListFn,
    /// Removes one.
    pub remove: DynamicRemoveFn,
}

/// What the API talks to.
pub struct ApiState {
    /// The Datastore pool.
    pub datastore: Arc<DatastorePool>,
    /// Committed bar changes, pushed to the live streams.
    pub feed: Arc<crate::feed::BarHub>,
    /// The versions of the cache's hours this node knows, kept current by
    /// the cache's events (none: every 1-minute answer asks the
    /// Datastore).
    pub mirror: Option<Arc<crate::mirror::Mirror>>,
    /// Permits for live streams (`config.max_streams`).
    pub streams: Arc<tokio::sync::Semaphore>,
    /// Lists instruments.
    pub instruments: InstrumentsFn,
    /// Readiness check.
    pub ready: ReadyFn,
    /// Settings.
    pub config: ApiConfig,
    /// The admin endpoint.
    pub admin: AdminConfig,
}

#[handler]
fn health() -> &'static str {
    "ok"
}

/// The process's metrics (Prometheus' text format), when the node has a
/// recorder; 404 otherwise.
#[handler]
fn metrics_text(state: poem::web::Data<&Arc<ApiState>>) -> poem::Response {
    match &state.config.metrics.0 {
        Some(render) => poem::Response::builder()
            .content_type("text/plain; version=0.0.4")
            .body(render()),
        None => poem::Response::builder()
            .status(poem::http::StatusCode::NOT_FOUND)
            .body("no metrics in this process"),
    }
}

/// The answer of `/ready`: 200 `ready` or 503 `not ready: …`, each followed
/// by one `warning: …` line per note (notes never make the node unready).
fn ready_answer(check: Result<(), String>, notes: &[String]) -> (poem::http::StatusCode, String) {
    let (status, mut body) = match check {
        Ok(()) => (poem::http::StatusCode::OK, "ready".to_owned()),
        Err(err) => (
            poem::http::StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {err}"),
        ),
    };
    for note in notes {
        body.push_str("\nwarning: ");
        body.push_str(note);
    }
    (status, body)
}

#[handler]
async fn ready(state: Data<&Arc<ApiState>>) -> poem::Response {
    let check = (state.ready)().await;
    let (status, body) = ready_answer(check, &state.config.ready_notes.get());
    poem::Response::builder().status(status).body(body)
}

/// Every route of the API: the data API, `/openapi.json`, `/docs`, `/health`,
/// `/ready`, and the web pages (`/`, `/ui/...`).
pub fn routes(
    state: Arc<ApiState>,
    server_url: &str,
) -> impl poem::Endpoint<Output = poem::Response> {
    let api = OpenApiService::new(
        (
            DataApi {
                memo: Arc::new(crate::series::HourMemo::new(state.config.memo_bytes)),
                compressed: Arc::new(crate::negotiate::Compressed::new(
                    state.config.compressed_bytes,
                )),
                state: Arc::clone(&state),
            },
            AdminApi {
                state: Arc::clone(&state),
            },
        ),
        state.config.title.clone(),
        env!("CARGO_PKG_VERSION"),
    )
    .description("OHLCV bars of cryptocurrency trades: history and live, without gaps.")
    .server(server_url);
    let spec = api.spec();
    let document = truthful(&spec, state.config.max_limit);
    // Swagger UI shows the document this node serves, not the static one.
    let docs_html = api.swagger_ui_html().replacen(&spec, &document, 1);
    let docs = Route::new().at(
        "/",
        poem::endpoint::make_sync(move |_| poem::web::Html(docs_html.clone())),
    );
    let methods = Arc::new(crate::errors::PathMethods::from_spec(&document));
    let spec = poem::endpoint::make_sync(move |_| {
        poem::Response::builder()
            .content_type("application/json; charset=utf-8")
            .body(document.clone())
    });
    Route::new()
        .nest("/", api)
        .nest("/docs", docs)
        .at("/openapi.json", spec)
        .at("/health", health)
        .at("/ready", ready)
        .at("/metrics", metrics_text)
        .nest("/ui", crate::web::routes())
        .data(state)
        .around(crate::web::root)
        .around(move |ep, req| crate::errors::json_errors(ep, Arc::clone(&methods), req))
        .around(crate::telemetry::http_metrics)
        .map_to_response()
}

/// The OpenAPI document as this node enforces it: the bounds the code
/// cannot state statically (`limit`'s maximum is `api.max_limit`).
pub fn truthful(spec: &str, max_limit: u32) -> String {
    let Ok(mut doc) = serde_json::from_str::<serde_json::Value>(spec) else {
        return spec.to_owned();
    };
    if let Some(params) = doc["paths"]["/api/v1/ohlcv"]["get"]["parameters"].as_array_mut() {
        for p in params.iter_mut().filter(|p| p["name"] == "limit") {
            p["schema"]["maximum"] = serde_json::json!(max_limit);
        }
    }
    serde_json::to_string_pretty(&doc).unwrap_or_else(|_| spec.to_owned())
}

/// Serves the API on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: std::net::TcpListener,
    state: Arc<ApiState>,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let acceptor = TcpAcceptor::from_std(listener)?;
    let app = routes(state, &format!("http://{addr}"));
    poem::Server::new_with_acceptor(acceptor)
        .run_with_graceful_shutdown(app, shutdown, Some(std::time::Duration::from_secs(5)))
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_are_shown_without_changing_readiness() {
        assert_eq!(
            ready_answer(Ok(()), &[]),
            (poem::http::StatusCode::OK, "ready".to_owned())
        );
        let notes =
            vec!["timescaledb: refresh policies not working (bars_5m: job 1000 failed)".to_owned()];
        assert_eq!(
            ready_answer(Ok(()), &notes),
            (
                poem::http::StatusCode::OK,
                "ready\nwarning: timescaledb: refresh policies not working (bars_5m: job 1000 failed)"
                    .to_owned()
            )
        );
        let (status, body) = ready_answer(Err("pool timed out".into()), &notes);
        assert_eq!(status, poem::http::StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            body.starts_with("not ready: pool timed out\nwarning: "),
            "{body}"
        );
        assert_eq!(
            ReadyNotes(Some(Arc::new(|| vec!["x".to_owned()]))).get(),
            vec!["x".to_owned()]
        );
        assert!(ReadyNotes::default().get().is_empty());
    }
}
