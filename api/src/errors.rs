//! Error answers of the documented API (`/api/…`, `/admin/…`) as the
//! OpenAPI document says them: a JSON [`ErrorBody`], whoever produced the
//! error. The operations answer their own errors in JSON; this middleware
//! catches the ones the framework answers before an operation runs (a
//! missing or malformed bearer token: 401; a method the path does not
//! have: 405; no such path: 404), which poem writes as `text/plain`. A 401
//! gets `WWW-Authenticate: Bearer`; a 405 gets `Allow` with the methods
//! the document gives the path.
//!
//! What must never happen: a documented path answering an error in another
//! content type than JSON, or a 405 without `Allow`.

use std::sync::Arc;

use poem::http::header::{HeaderValue, ALLOW, CONTENT_TYPE, WWW_AUTHENTICATE};
use poem::http::{Method, StatusCode};
use poem::{Endpoint, IntoResponse, Request, Response};

/// The path templates of the OpenAPI document with their methods.
#[derive(Debug, Clone, Default)]
pub struct PathMethods(Vec<(Vec<String>, Vec<Method>)>);

impl PathMethods {
    /// From the document (`OpenApiService::spec()`'s JSON).
    pub fn from_spec(spec: &str) -> Self {
        let Ok(doc) = serde_json::from_str::<serde_json::Value>(spec) else {
            return Self::default();
        };
        let Some(paths) = doc["paths"].as_object() else {
            return Self::default();
        };
        let mut out = Vec::new();
        for (template, item) in paths {
            let mut methods: Vec<Method> = item
                .as_object()
                .into_iter()
                .flat_map(|o| o.keys())
                .filter_map(|m| Method::from_bytes(m.to_ascii_uppercase().as_bytes()).ok())
                .collect();
            // poem answers HEAD wherever GET is.
            if methods.contains(&Method::GET) && !methods.contains(&Method::HEAD) {
                methods.push(Method::HEAD);
            }
            out.push((segments(template), methods));
        }
        Self(out)
    }

    /// The methods the document gives `path` (empty when it has no such
    /// path).
    pub fn allowed(&self, path: &str) -> Vec<Method> {
        let given = segments(path);
        self.0
            .iter()
            .filter(|(template, _)| {
                template.len() == given.len()
                    && template
                        .iter()
                        .zip(&given)
                        .all(|(t, g)| t.starts_with('{') && !g.is_empty() || t == g)
            })
            .flat_map(|(_, m)| m.iter().cloned())
            .collect()
    }
}

fn segments(path: &str) -> Vec<String> {
    path.trim_end_matches('/')
        .split('/')
        .map(str::to_owned)
        .collect()
}

/// The short code of an error status.
fn code(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST => "bad_request",
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::FORBIDDEN => "forbidden",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::NOT_ACCEPTABLE => "not_acceptable",
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::TOO_MANY_REQUESTS => "too_many_requests",
        StatusCode::SERVICE_UNAVAILABLE => "unavailable",
        StatusCode::GATEWAY_TIMEOUT => "timeout",
        s if s.is_server_error() => "internal",
        _ => "error",
    }
}

/// Whether `path` belongs to the documented API.
fn documented(path: &str) -> bool {
    path.starts_with("/api/") || path.starts_with("/admin/") || path == "/admin"
}

/// The middleware (see the module doc).
pub async fn json_errors<E: Endpoint>(
    next: Arc<E>,
    methods: Arc<PathMethods>,
    req: Request,
) -> poem::Result<Response> {
    let path = req.uri().path().to_owned();
    let response = match next.call(req).await {
        Ok(r) => r.into_response(),
        Err(e) => e.into_response(),
    };
    let status = response.status();
    if !documented(&path) || !(status.is_client_error() || status.is_server_error()) {
        return Ok(response);
    }
    let is_json = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let mut response = if is_json {
        response
    } else {
        let (parts, body) = response.into_parts();
        let text = body.into_string().await.unwrap_or_default();
        let message = if text.trim().is_empty() {
            status.canonical_reason().unwrap_or("error").to_owned()
        } else {
            text.trim().to_owned()
        };
        let body = serde_json::json!({ "error": code(status), "message": message });
        let mut r = Response::from_parts(parts, body.to_string().into());
        r.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        r
    };
    if status == StatusCode::UNAUTHORIZED && !response.headers().contains_key(WWW_AUTHENTICATE) {
        response
            .headers_mut()
            .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    if status == StatusCode::METHOD_NOT_ALLOWED {
        let allowed = methods.allowed(&path);
        let list = allowed
            .iter()
            .map(Method::as_str)
            .collect::<Vec<_>>()
            .join(", ");
        if let Ok(v) = HeaderValue::from_str(&list) {
            response.headers_mut().insert(ALLOW, v);
        }
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_methods_of_a_path_come_from_its_template() {
        let spec = r#"{"paths": {
            "/api/v1/ohlcv": {"get": {}},
            "/admin/actors/{name}/reset": {"post": {}},
            "/admin/dynamic/{instrument}": {"delete": {}}
        }}"#;
        let m = PathMethods::from_spec(spec);
        assert_eq!(m.allowed("/api/v1/ohlcv"), vec![Method::GET, Method::HEAD]);
        assert_eq!(
            m.allowed("/admin/actors/producer%2Fa/reset"),
            vec![Method::POST]
        );
        assert_eq!(
            m.allowed("/admin/dynamic/Coinbase:BTC-USD"),
            vec![Method::DELETE]
        );
        assert!(m.allowed("/admin/actors//reset").is_empty());
        assert!(m.allowed("/nowhere").is_empty());
    }
}
