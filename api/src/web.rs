//! The web pages the API serves itself: a live candlestick chart and a
//! cluster view, written by hand (HTML, CSS, JavaScript, canvas) and embedded
//! in the binary, so they need no build step, no files at run time and no
//! network beyond this API.
//!
//! * `/` ([`root`]) and `/ui/`: the chart. It lists instruments (`/api/v1/instruments`),
//!   loads history (`/api/v1/ohlcv`), then follows the live stream
//!   (`/api/v1/stream`) from the last loaded bar's open, replacing the bar in
//!   progress in place.
//! * `/ui/cluster`: nodes (`/admin/cluster`), actors with machine, state and
//!   restarts (`/admin/actors`), and each actor's diagram with its current
//!   state highlighted (`/admin/actors/{name}/diagram?format=svg`), refreshed
//!   every few seconds. The admin token comes from the URL fragment
//!   (`#token=…`) or a field, and stays in the tab's `sessionStorage`.
//! * `/ui/assets/{file}`: the scripts and the stylesheet.
//!
//! Every page is sent with a Content-Security-Policy that allows nothing but
//! this origin, and `no-cache` (the assets are small; a new binary must not be
//! shown an old script).

use std::sync::Arc;

use poem::http::{header, Method, StatusCode};
use poem::web::Path;
use poem::{handler, Endpoint, IntoResponse, Request, Response, Route};

/// One embedded file: its name under `/ui/assets/`, media type and body.
struct Asset {
    name: &'static str,
    media_type: &'static str,
    body: &'static str,
}

const CHART_HTML: &str = include_str!("../assets/chart.html");
const CLUSTER_HTML: &str = include_str!("../assets/cluster.html");

const ASSETS: &[Asset] = &[
    Asset {
        name: "chart.js",
        media_type: "text/javascript; charset=utf-8",
        body: include_str!("../assets/chart.js"),
    },
    Asset {
        name: "cluster.js",
        media_type: "text/javascript; charset=utf-8",
        body: include_str!("../assets/cluster.js"),
    },
    Asset {
        name: "style.css",
        media_type: "text/css; charset=utf-8",
        body: include_str!("../assets/style.css"),
    },
];

/// Only this origin; inline styles for the diagrams' SVG; `data:` for the
/// empty favicon.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
                   img-src 'self' data:; connect-src 'self'; base-uri 'none'; \
                   form-action 'none'; frame-ancestors 'none'";

fn send(media_type: &str, body: &'static str) -> Response {
    Response::builder()
        .header(header::CONTENT_TYPE, media_type)
        .header(header::CACHE_CONTROL, "no-cache")
        .header(header::CONTENT_SECURITY_POLICY, CSP)
        .header(header::X_CONTENT_TYPE_OPTIONS, "nosniff")
        .header(header::REFERRER_POLICY, "no-referrer")
        .body(body)
}

/// The chart page.
#[handler]
pub fn chart() -> Response {
    send("text/html; charset=utf-8", CHART_HTML)
}

/// Answers `GET /` with the chart, and passes every other request on to
/// `next`. A middleware (`.around(web::root)`), because the API nested at `/`
/// takes the bare `/` in poem's router before any route `at("/")`.
pub async fn root<E: Endpoint>(next: Arc<E>, req: Request) -> poem::Result<Response> {
    if req.uri().path() == "/" && (req.method() == Method::GET || req.method() == Method::HEAD) {
        return Ok(send("text/html; charset=utf-8", CHART_HTML));
    }
    Ok(next.call(req).await?.into_response())
}

/// The cluster page.
#[handler]
pub fn cluster() -> Response {
    send("text/html; charset=utf-8", CLUSTER_HTML)
}

/// A script or the stylesheet.
#[handler]
fn asset(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|a| a.name == name) {
        Some(a) => send(a.media_type, a.body),
        None => Response::builder()
            .status(StatusCode::NOT_FOUND)
            .content_type("text/plain; charset=utf-8")
            .body(format!("no asset `{name}`")),
    }
}

/// The routes under `/ui`: `/` (the chart), `/cluster`, `/assets/{file}`.
pub fn routes() -> Route {
    Route::new()
        .at("/", chart)
        .at("/cluster", cluster)
        .at("/assets/:name", asset)
}

#[cfg(test)]
mod tests {
    use super::*;
    use poem::test::TestClient;
    use poem::EndpointExt;
    use poem_openapi::payload::PlainText;
    use poem_openapi::{OpenApi, OpenApiService};

    struct Other;

    #[OpenApi]
    impl Other {
        #[oai(path = "/api/v1/x", method = "get")]
        async fn x(&self) -> PlainText<&'static str> {
            PlainText("x")
        }
    }

    /// The pages mounted as `server::routes` mounts them: beside an API
    /// nested at `/`.
    fn app() -> TestClient<poem::endpoint::BoxEndpoint<'static>> {
        let api = OpenApiService::new(Other, "t", "1");
        TestClient::new(
            Route::new()
                .nest("/", api)
                .nest("/ui", routes())
                .around(root)
                .boxed(),
        )
    }

    #[tokio::test]
    async fn every_page_and_asset_is_served_with_its_type() {
        let app = app();
        for (path, media_type, marker) in [
            ("/", "text/html", "id=\"chart\""),
            ("/ui", "text/html", "id=\"chart\""),
            ("/ui/", "text/html", "id=\"chart\""),
            ("/ui/cluster", "text/html", "id=\"diagrams\""),
            ("/ui/assets/chart.js", "text/javascript", "EventSource"),
            ("/ui/assets/cluster.js", "text/javascript", "sessionStorage"),
            ("/ui/assets/style.css", "text/css", "--bg"),
        ] {
            let resp = app.get(path).send().await;
            assert_eq!(resp.0.status(), StatusCode::OK, "{path}");
            resp.assert_header_exist(header::CONTENT_SECURITY_POLICY);
            let content_type = resp.0.headers()[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .to_owned();
            assert!(
                content_type.starts_with(media_type),
                "{path}: {content_type}"
            );
            let body = resp.0.into_body().into_string().await.unwrap();
            assert!(body.contains(marker), "{path}");
        }
        // The API beside the pages still answers.
        app.get("/api/v1/x").send().await.assert_text("x").await;
        app.get("/ui/assets/nope.js")
            .send()
            .await
            .assert_status(StatusCode::NOT_FOUND);
    }

    #[test]
    fn pages_name_only_embedded_assets() {
        for page in [CHART_HTML, CLUSTER_HTML] {
            for reference in page.split("\"/ui/assets/").skip(1) {
                let name = &reference[..reference.find('"').unwrap()];
                assert!(
                    ASSETS.iter().any(|a| a.name == name),
                    "a page links /ui/assets/{name}, which is not embedded"
                );
            }
            assert!(!page.contains("http://") && !page.contains("https://"));
        }
        for a in ASSETS {
            assert!(
                !a.body.contains("http://") && !a.body.contains("https://"),
                "{} reaches outside the API",
                a.name
            );
        }
    }
}
