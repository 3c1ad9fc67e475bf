//! Assembles the routes and serves them.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use poem::listener::TcpAcceptor;
use poem::{handler, web::Data, EndpointExt, IntoResponse, Route};
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
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            max_limit: 10_000,
            stream_grace_secs: 2,
            max_streams: 4_096,
            title: "candela".into(),
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

#[handler]
async fn ready(state: Data<&Arc<ApiState>>) -> poem::Response {
    match (state.ready)().await {
        Ok(()) => "ready".into_response(),
        Err(err) => poem::Response::builder()
            .status(poem::http::StatusCode::SERVICE_UNAVAILABLE)
            .body(format!("not ready: {err}")),
    }
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
    let docs = api.swagger_ui();
    let spec = api.spec_endpoint();
    Route::new()
        .nest("/", api)
        .nest("/docs", docs)
        .at("/openapi.json", spec)
        .at("/health", health)
        .at("/ready", ready)
        .nest("/ui", crate::web::routes())
        .data(state)
        .around(crate::web::root)
        .map_to_response()
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
