//! HTTP metrics: every answer counted by route pattern, method and status,
//! and timed (to its headers: a live stream's duration is its client's
//! business). Route labels come from a fixed list ([`route_of`]), never
//! from the raw path, so a caller cannot grow the label set.

use std::sync::Arc;
use std::time::Instant;

use candela_actors::telemetry::{HTTP_REQUESTS, HTTP_SECONDS};
use poem::{Endpoint, IntoResponse, Request, Response};

/// The bounded route label of `path`.
pub fn route_of(path: &str) -> &'static str {
    const EXACT: &[&str] = &[
        "/",
        "/api/v1/ohlcv",
        "/api/v1/instruments",
        "/api/v1/stream",
        "/openapi.json",
        "/health",
        "/ready",
        "/metrics",
    ];
    if let Some(r) = EXACT.iter().find(|r| **r == path) {
        return r;
    }
    for prefix in ["/admin", "/ui", "/docs"] {
        if path == prefix || path.starts_with(&format!("{prefix}/")) {
            return prefix;
        }
    }
    "other"
}

/// The `around` middleware that records [`HTTP_REQUESTS`] and [`HTTP_SECONDS`].
pub async fn http_metrics<E: Endpoint>(next: Arc<E>, req: Request) -> poem::Result<Response> {
    let route = route_of(req.uri().path());
    let method = match req.method().as_str() {
        m @ ("GET" | "POST" | "PUT" | "DELETE" | "HEAD" | "OPTIONS" | "PATCH") => m.to_owned(),
        _ => "other".to_owned(),
    };
    let started = Instant::now();
    let outcome = next.call(req).await.map(IntoResponse::into_response);
    let status = match &outcome {
        Ok(r) => r.status(),
        Err(e) => e.status(),
    };
    metrics::counter!(
        HTTP_REQUESTS,
        "route" => route,
        "method" => method,
        "status" => status.as_u16().to_string()
    )
    .increment(1);
    metrics::histogram!(HTTP_SECONDS, "route" => route).record(started.elapsed().as_secs_f64());
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_a_bounded_set() {
        assert_eq!(route_of("/api/v1/ohlcv"), "/api/v1/ohlcv");
        assert_eq!(route_of("/admin/cluster"), "/admin");
        assert_eq!(route_of("/ui/cluster"), "/ui");
        assert_eq!(route_of("/docs"), "/docs");
        assert_eq!(route_of("/api/v1/ohlcv/x"), "other");
        assert_eq!(route_of("/adminx"), "other");
        assert_eq!(route_of(&"/a".repeat(1000)), "other");
    }
}
