//! Opening a WebSocket to the streamer with the API key in a header.
//!
//! The upgrade request is sent with `reqwest` (its TLS, its timeouts, and a
//! header marked sensitive) and the upgraded connection is handed to
//! `tokio-tungstenite`. Tungstenite's own client handshake is avoided on
//! purpose: it logs the whole request, `authorization` header included, at
//! trace level.

use reqwest::header::{
    HeaderValue, AUTHORIZATION, CONNECTION, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY,
    SEC_WEBSOCKET_VERSION, UPGRADE,
};
use reqwest::StatusCode;
use tokio_tungstenite::tungstenite::handshake::client::generate_key;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::WebSocketStream;

use super::config::ApiKey;
use super::error::CryptoCompareError;

/// The largest frame or message the live client accepts: CryptoCompare's
/// frames are a few hundred bytes; anything far larger is refused (the
/// connection ends and is dialled again) rather than buffered (the library's
/// default is 64 MiB).
pub const MAX_MESSAGE_BYTES: usize = 1024 * 1024;

fn ws_config() -> WebSocketConfig {
    let mut c = WebSocketConfig::default();
    c.max_message_size = Some(MAX_MESSAGE_BYTES);
    c.max_frame_size = Some(MAX_MESSAGE_BYTES);
    c
}

/// The WebSocket type the live client reads.
pub(crate) type Socket = WebSocketStream<reqwest::Upgraded>;

/// A client for upgrade requests: HTTP/1.1 only (WebSocket needs it).
pub(crate) fn upgrade_client(
    connect_timeout: std::time::Duration,
) -> Result<reqwest::Client, CryptoCompareError> {
    reqwest::Client::builder()
        .http1_only()
        .connect_timeout(connect_timeout)
        .tcp_nodelay(true)
        .build()
        .map_err(CryptoCompareError::Transport)
}

/// `ws://` becomes `http://`, `wss://` becomes `https://`.
fn http_url(ws_url: &str) -> Result<String, CryptoCompareError> {
    if let Some(rest) = ws_url.strip_prefix("wss://") {
        Ok(format!("https://{rest}"))
    } else if let Some(rest) = ws_url.strip_prefix("ws://") {
        Ok(format!("http://{rest}"))
    } else {
        Err(CryptoCompareError::Config(
            "ws_url must start with ws:// or wss://".into(),
        ))
    }
}

/// Connects and upgrades; the caller bounds the time it may take.
pub(crate) async fn connect(
    http: &reqwest::Client,
    ws_url: &str,
    api_key: Option<&ApiKey>,
) -> Result<Socket, CryptoCompareError> {
    let key = generate_key();
    let mut request = http
        .get(http_url(ws_url)?)
        .header(CONNECTION, HeaderValue::from_static("Upgrade"))
        .header(UPGRADE, HeaderValue::from_static("websocket"))
        .header(SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"))
        .header(SEC_WEBSOCKET_KEY, key.as_str());
    if let Some(api_key) = api_key {
        request = request.header(AUTHORIZATION, api_key.header_value()?);
    }
    let response = request
        .send()
        .await
        .map_err(CryptoCompareError::Transport)?;
    match response.status() {
        StatusCode::SWITCHING_PROTOCOLS => {}
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
            return Err(CryptoCompareError::Unauthorized(format!(
                "http status {}",
                response.status().as_u16()
            )))
        }
        status => {
            return Err(CryptoCompareError::Handshake(format!(
                "http status {}",
                status.as_u16()
            )))
        }
    }
    let accept = response
        .headers()
        .get(SEC_WEBSOCKET_ACCEPT)
        .and_then(|v| v.to_str().ok());
    if accept != Some(derive_accept_key(key.as_bytes()).as_str()) {
        return Err(CryptoCompareError::Handshake(
            "missing or wrong sec-websocket-accept".into(),
        ));
    }
    let upgraded = response
        .upgrade()
        .await
        .map_err(CryptoCompareError::Transport)?;
    Ok(WebSocketStream::from_raw_socket(upgraded, Role::Client, Some(ws_config())).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_ws_schemes_to_http() {
        assert_eq!(http_url("wss://a.b/v2").unwrap(), "https://a.b/v2");
        assert_eq!(
            http_url("ws://127.0.0.1:9/v2").unwrap(),
            "http://127.0.0.1:9/v2"
        );
        assert!(http_url("http://x").is_err());
    }
}
