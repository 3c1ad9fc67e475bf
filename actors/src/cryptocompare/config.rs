//! The client's configuration and its secret API key.
//!
//! The key is a secret: [`ApiKey`] prints as `***` through `Debug`, `Display`
//! and `Serialize`, so a configuration can be logged or dumped whole. The only
//! way to read it is [`ApiKey::expose`], which the HTTP code uses to build the
//! `authorization` header and nothing else.

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::error::CryptoCompareError;

/// A CryptoCompare API key. Never printed, never put in a URL.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    /// Wraps a key.
    pub fn new(key: impl Into<String>) -> Self {
        Self(key.into())
    }

    /// The key itself, for the `authorization` header only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The `authorization` header value, `Apikey <key>`, marked sensitive so
    /// that the HTTP stack never prints it.
    pub(crate) fn header_value(&self) -> Result<reqwest::header::HeaderValue, CryptoCompareError> {
        let mut value = reqwest::header::HeaderValue::from_str(&format!("Apikey {}", self.0))
            .map_err(|_| {
                CryptoCompareError::Config("the api key is not a valid header value".into())
            })?;
        value.set_sensitive(true);
        Ok(value)
    }

    /// `text` with every occurrence of the key replaced by `***`: applied to
    /// anything that came from the server before it is logged or kept.
    pub fn redact<'a>(&self, text: &'a str) -> Cow<'a, str> {
        if self.0.is_empty() || !text.contains(self.0.as_str()) {
            Cow::Borrowed(text)
        } else {
            Cow::Owned(text.replace(self.0.as_str(), "***"))
        }
    }
}

impl From<&str> for ApiKey {
    fn from(key: &str) -> Self {
        Self::new(key)
    }
}

impl From<String> for ApiKey {
    fn from(key: String) -> Self {
        Self(key)
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl Serialize for ApiKey {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str("***")
    }
}

impl<'de> Deserialize<'de> for ApiKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(ApiKey)
    }
}

/// Where and how to reach CryptoCompare (or its imitation).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CryptoCompareConfig {
    /// Base address of the REST API (history), without a trailing slash.
    pub rest_url: String,
    /// Address of the WebSocket streamer, path included (`.../v2`).
    pub ws_url: String,
    /// API key; sent only as `authorization: Apikey <key>`. None: anonymous.
    pub api_key: Option<ApiKey>,
    /// A live connection that brought no frame for this long is dead.
    pub stale_after_secs: u64,
    /// Shortest wait before reconnecting after a drop.
    pub reconnect_min_ms: u64,
    /// Longest wait before reconnecting (the back-off's cap).
    pub reconnect_max_ms: u64,
    /// How many times a rate-limited history request is retried.
    pub rest_retries: u32,
    /// First wait before retrying a rate-limited request; doubles per retry.
    pub rest_backoff_ms: u64,
    /// Longest wait between two retries of a history request.
    pub rest_backoff_max_ms: u64,
    /// History requests per second this client sends at most (every clone
    /// shares the budget: backfill, repair and on-demand fetches); 0: no
    /// limit. CryptoCompare's published free limits are 20/s, 300/min and
    /// 3,000/h (`shared/reference/cryptocompare.md`).
    pub rest_per_second: u32,
    /// History requests per minute at most; 0: no limit.
    pub rest_per_minute: u32,
    /// Time limit of one history request, body included.
    pub request_timeout_ms: u64,
    /// Time limit of a TCP (and TLS) connect, and of the WebSocket handshake
    /// up to the welcome frame.
    pub connect_timeout_ms: u64,
    /// Capacity of the live tick channel (back-pressure beyond it).
    pub channel_capacity: usize,
    /// How many recent trade ids per instrument are remembered to drop
    /// replayed trades.
    pub dedup_window: usize,
}

impl Default for CryptoCompareConfig {
    fn default() -> Self {
        Self {
            rest_url: "https://min-api.cryptocompare.com".into(),
            ws_url: "wss://streamer.cryptocompare.com/v2".into(),
            api_key: None,
            stale_after_secs: 60,
            reconnect_min_ms: 5_000,
            reconnect_max_ms: 60_000,
            rest_retries: 5,
            rest_backoff_ms: 1_000,
            rest_backoff_max_ms: 30_000,
            rest_per_second: 20,
            rest_per_minute: 300,
            request_timeout_ms: 30_000,
            connect_timeout_ms: 10_000,
            channel_capacity: 65_536,
            dedup_window: 4_096,
        }
    }
}

impl CryptoCompareConfig {
    /// A configuration pointing at another server (e.g. the imitation), the
    /// rest left at defaults.
    pub fn for_urls(rest_url: impl Into<String>, ws_url: impl Into<String>) -> Self {
        Self {
            rest_url: rest_url.into(),
            ws_url: ws_url.into(),
            ..Self::default()
        }
    }

    /// Applies the environment overrides `CRYPTOCOMPARE_REST_URL`,
    /// `CRYPTOCOMPARE_WS_URL` and `CRYPTOCOMPARE_API_KEY`, where set.
    pub fn with_env_overrides(mut self) -> Self {
        if let Ok(url) = std::env::var("CRYPTOCOMPARE_REST_URL") {
            self.rest_url = url;
        }
        if let Ok(url) = std::env::var("CRYPTOCOMPARE_WS_URL") {
            self.ws_url = url;
        }
        if let Ok(key) = std::env::var("CRYPTOCOMPARE_API_KEY") {
            self.api_key = (!key.is_empty()).then(|| ApiKey::new(key));
        }
        self
    }

    /// Checks the values that would make the clients misbehave.
    pub fn validate(&self) -> Result<(), CryptoCompareError> {
        let bad = |m: &str| Err(CryptoCompareError::Config(m.to_owned()));
        if !(self.rest_url.starts_with("http://") || self.rest_url.starts_with("https://")) {
            return bad("rest_url must start with http:// or https://");
        }
        if !(self.ws_url.starts_with("ws://") || self.ws_url.starts_with("wss://")) {
            return bad("ws_url must start with ws:// or wss://");
        }
        if self.stale_after_secs == 0 {
            return bad("stale_after_secs must be at least 1");
        }
        if self.reconnect_min_ms == 0 {
            return bad("reconnect_min_ms must be at least 1");
        }
        if self.reconnect_min_ms > self.reconnect_max_ms {
            return bad("reconnect_min_ms must not exceed reconnect_max_ms");
        }
        if self.channel_capacity == 0 || self.dedup_window == 0 {
            return bad("channel_capacity and dedup_window must be positive");
        }
        Ok(())
    }

    pub(crate) fn stale_after(&self) -> Duration {
        Duration::from_secs(self.stale_after_secs)
    }

    pub(crate) fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }

    pub(crate) fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_never_prints() {
        let config = CryptoCompareConfig {
            api_key: Some(ApiKey::new("s3cr3t-key")),
            ..CryptoCompareConfig::default()
        };
        let shown = format!(
            "{config:?} {} {}",
            config.api_key.as_ref().unwrap(),
            serde_json::to_string(&config).unwrap()
        );
        assert!(!shown.contains("s3cr3t"), "{shown}");
        assert_eq!(ApiKey::new("k3y").redact("bad k3y here"), "bad *** here");
    }

    #[test]
    fn parses_with_defaults_and_rejects_unknown_fields() {
        let config: CryptoCompareConfig =
            serde_json::from_str(r#"{"api_key":"abc","stale_after_secs":5}"#).unwrap();
        assert_eq!(config.api_key.as_ref().map(ApiKey::expose), Some("abc"));
        assert_eq!(config.stale_after_secs, 5);
        assert_eq!(config.reconnect_min_ms, 5_000);
        config.validate().unwrap();
        assert!(serde_json::from_str::<CryptoCompareConfig>(r#"{"nope":1}"#).is_err());
    }
}
